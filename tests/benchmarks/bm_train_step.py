"""Benchmark: one training step (train.trainer.Trainer.step) by backbone precision and memory layout.

A batch of B synthetic images (a sphere template rendered at random azimuths, random pixels) goes
through the whole step: backbone forward, surface rasterisation, observation, contrastive losses,
backward, Adam, texture momentum update and background bank push. Four backbone settings run in the
same process on the same batches, interleaved round by round so that machine load hits them alike:

* ``fp32 NCHW``: float32, contiguous tensors (the baseline, what training did before ``train.amp``);
* ``fp32 channels-last``;
* ``bf16 NCHW``: bfloat16 autocast (``train.amp=bf16``);
* ``bf16 channels-last``: what ``train.amp=auto`` runs where bf16 is native.

Reports the median step time, images/s and the ratio against the baseline. Defaults are the demo's
training settings (``small`` backbone, d=64, 7×64² textures, 128² crops, batch 8).

    python -m tests.benchmarks.bm_train_step [--device cpu] [--backbone small] [--batch 8] [--size 128] [--rounds 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ntdm_cli.geometry.template import make_template
from ntdm_cli.model.backbone import bf16_fast, make_backbone
from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
from ntdm_cli.train import loop
from ntdm_cli.train.trainer import Trainer

SETTINGS = [("fp32 NCHW", False, False), ("fp32 channels-last", False, True), ("bf16 NCHW", True, False),
            ("bf16 channels-last", True, True)]


def make_batch(B: int, H: int, g: torch.Generator) -> dict:
    """B images (B, 3, H, H) of a unit sphere at 3000 mm seen from random azimuths/elevations."""
    az = torch.rand(B, generator=g, dtype=torch.float64) * 6.283
    el = torch.rand(B, generator=g, dtype=torch.float64) * 0.6 - 0.1
    vp = torch.stack([az, el, torch.zeros(B, dtype=torch.float64), torch.full((B,), 2.2, dtype=torch.float64),
                      torch.ones(B, dtype=torch.float64), torch.full((B,), H / 2, dtype=torch.float64),
                      torch.full((B,), H / 2, dtype=torch.float64), torch.full((B,), 3000.0, dtype=torch.float64)], 1)
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(H), indexing="ij")
    mask = ((yy - H / 2) ** 2 + (xx - H / 2) ** 2 < (0.35 * H) ** 2).expand(B, H, H).clone()
    return {"image": torch.rand(B, 3, H, H, generator=g), "category": torch.zeros(B, dtype=torch.long),
            "cad": torch.zeros(B, dtype=torch.long), "viewpoint": vp, "mask": mask, "instance_scale": torch.ones(B, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="small")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--texture", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    dev = torch.device(args.device)

    t = make_template(3).to(dev)
    cfg = loop.TrainConfig(backbone=args.backbone, feature_dim=args.dim, texture_size=args.texture, positives=400,
                           negatives=800, bank_size=1024, batch_size=args.batch)
    g = torch.Generator().manual_seed(0)
    batches = [make_batch(args.batch, args.size, g) for _ in range(args.rounds + 1)]
    runs = {}
    for name, amp, cl in SETTINGS:
        torch.manual_seed(0)
        bb = make_backbone(args.backbone, args.dim).to(dev)
        bb.amp, bb.channels_last = amp, cl
        tex = [NeuralTexture(cfg.num_bins, args.texture, args.dim, generator=torch.Generator().manual_seed(1),
                             device=dev)]
        bank = BackgroundBank(cfg.bank_size, args.dim, generator=torch.Generator().manual_seed(2), device=dev)
        runs[name] = (bb, tex, bank, torch.optim.Adam(bb.parameters(), lr=1e-3), [])
    for r, batch in enumerate(batches):  # round 0 warms every setting up and is not timed
        for name, (bb, tex, bank, opt, times) in runs.items():
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            trainer = Trainer(cfg, bb, tex, bank, torch.zeros(1, 1), {(0, 0): t.verts * 0.5}, t, opt, device=dev)
            parts = trainer.step(batch, torch.Generator().manual_seed(r))
            if dev.type == "cuda":
                torch.cuda.synchronize()
            if r > 0:
                times.append(time.perf_counter() - t0)
            if parts["used"] == 0:
                raise SystemExit(f"{name}: no texel observed in the batch (benchmark set-up broken)")
    base = statistics.median(runs["fp32 NCHW"][4])
    rows = []
    print(f"train_step, backbone {args.backbone}, batch {args.batch} × {args.size}², d={args.dim}, "
          f"{args.device}, {torch.get_num_threads()} threads, bf16 native: {bf16_fast(dev)}")
    for name, (_, _, _, _, times) in runs.items():
        med = statistics.median(times)
        rows.append({"setting": name, "median_s": med, "images_per_s": args.batch / med, "speedup": base / med})
        print(f"  {name:20s} {med * 1000:8.1f} ms/step  {args.batch / med:6.1f} img/s  {base / med:5.2f}× baseline")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backbone": args.backbone, "batch": args.batch, "size": args.size, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
