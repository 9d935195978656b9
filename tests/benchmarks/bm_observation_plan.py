"""Benchmark: a training step with the observation precomputed (train.observation) against the dense path.

With a fixed (cached) body, what a step does per batch is: the trained head on the cached body maps,
the surface observation, the contrastive losses, backward, Adam and the texture update. The dense path
rasterises the ground-truth meshes on the observation grid, upsamples the feature map
``observe_upsample`` times and runs image_to_surface on it (and its backward); the planned path applies
each image's precomputed sparse matrix (:func:`ntdm_cli.train.observation.observe_planned`). Both run
in the same process on the same batches, interleaved round by round, with the same weights at the start
of each round. Also reports the one-off cost of building the plans and their size.

Defaults: the ``cpu`` and zoomed demo presets' step (EfficientNet-Lite0 body fixed, 256² crops, a
32² feature map observed on a 4× grid, d=64, 7×64² textures, batch 8).

    python -m tests.benchmarks.bm_observation_plan [--size 256] [--batch 8] [--up 4] [--rounds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from ntdm_cli.geometry.template import make_template
from ntdm_cli.model.backbone import make_backbone
from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
from ntdm_cli.train import loop
from ntdm_cli.train.trainer import Trainer
from tests.benchmarks.bm_train_step import make_batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--up", type=int, default=4)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--texture", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    t = make_template(3)
    cfg = loop.TrainConfig(backbone="effnet-lite0", feature_dim=args.dim, texture_size=args.texture, positives=400,
                           negatives=800, bank_size=1024, batch_size=args.batch, observe_upsample=args.up)
    torch.manual_seed(0)
    backbone = make_backbone("effnet-lite0", args.dim)
    backbone.load_pretrained()
    backbone.freeze(-1)
    backbone.train()
    textures = [NeuralTexture(cfg.num_bins, args.texture, args.dim, generator=torch.Generator().manual_seed(1))]
    bank = BackgroundBank(cfg.bank_size, args.dim, generator=torch.Generator().manual_seed(2))
    start = Trainer(cfg, backbone, textures, bank, torch.zeros(1, 1), {(0, 0): t.verts * 0.5}, t,
                    torch.optim.Adam(backbone.head_parameters(), lr=1e-3))
    g = torch.Generator().manual_seed(0)
    batches, plan_s, plan_bytes = [], [], []
    with torch.no_grad():
        for _ in range(args.rounds + 1):
            batch = make_batch(args.batch, args.size, g)
            batch["viewpoint"][:, 3] = 3000 * 0.5 / (0.35 * args.size)  # the sphere fills its mask (radius 0.35 · size)
            batch["body"] = backbone.prefix(batch.pop("image"))
            hw = tuple(batch["body"][0].shape[-2:])
            t0 = time.perf_counter()
            plans = start.observation_plans(batch, hw)
            plan_s.append(time.perf_counter() - t0)
            plan_bytes += [p.nbytes() for p in plans]
            batches.append((batch, plans))
    times: dict[str, list[float]] = {"dense": [], "planned": []}
    used = {}
    for r, (batch, plans) in enumerate(batches):  # round 0 warms both up and is not timed
        for name in times:
            trainer = copy.deepcopy(start)
            trainer.optimizer = torch.optim.Adam(trainer.backbone.head_parameters(), lr=1e-3)
            b = dict(batch, plans=plans) if name == "planned" else batch
            t0 = time.perf_counter()
            parts = trainer.step(b, torch.Generator().manual_seed(r))
            if r > 0:
                times[name].append(time.perf_counter() - t0)
            used[name] = parts["loss"]
            if parts["used"] == 0:
                raise SystemExit("no texel observed in the batch (benchmark set-up broken)")
    base = statistics.median(times["dense"])
    print(f"train step with a fixed effnet-lite0 body, batch {args.batch} × {args.size}², observation grid "
          f"{args.up}× the feature map, d={args.dim}, q={args.texture}, {torch.get_num_threads()} threads")
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"path": name, "median_s": med, "images_per_s": args.batch / med, "speedup": base / med})
        print(f"  {name:8s} {med * 1000:8.1f} ms/step  {args.batch / med:6.1f} img/s  {base / med:5.2f}× dense"
              f"  (last loss {used[name]:.4f})")
    build = statistics.median(plan_s[1:]) / args.batch
    mib = statistics.mean(plan_bytes) / 2**20
    print(f"  plans: built once in {build * 1000:.1f} ms per image, {mib:.3f} MiB per image")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"batch": args.batch, "size": args.size, "up": args.up, "rows": rows,
                       "plan_build_s_per_image": build, "plan_mib_per_image": mib}, f, indent=1)


if __name__ == "__main__":
    main()
