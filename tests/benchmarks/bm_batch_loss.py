"""Benchmark: a training batch's contrastive losses image by image (train.em.image_loss, the oracle)
against all at once (train.em.batch_loss with the fused train.losses.SoftmaxFirstCE), forward and
backward, in one process, interleaved round by round.

The batch is what a demo step sees: B images of one category observed as train.observation does
(texel-major surface features), P positives, M negatives, the background bank, N texels of each of
the other categories; the defaults are configs/demo.yaml's (6 categories, d 64, 7 bins, 64² textures).
Reports the median time per batch of each path and their ratio, and the largest difference of the
losses and of the feature gradients between them.

    python -m tests.benchmarks.bm_batch_loss [--batch 8] [--rounds 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
from ntdm_cli.train.em import SurfaceObservation, batch_loss, image_loss
from ntdm_cli.train.settings import TrainConfig


def make_inputs(B: int, q: int, d: int, bins: int, categories: int, cfg: TrainConfig, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    textures = [NeuralTexture(bins, q, d, generator=g) for _ in range(categories)]
    for t in textures:
        t.counts[:, q // 8: 7 * q // 8, q // 16: 15 * q // 16] += 1
    bank = BackgroundBank(cfg.bank_size, d, generator=g)
    surface = torch.randn(B, q, q, d, generator=g)  # texel-major, as train.observation.observe_planned
    alpha = torch.softmax(torch.randn(B, q, q, bins, generator=g), -1)
    visible = torch.rand(B, q, q, generator=g) < 0.35  # about 1400 visible texels of 4096
    omega = torch.ones(categories, categories) - torch.eye(categories)
    return textures, bank, surface, alpha.permute(0, 3, 1, 2), visible, omega


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--q", type=int, default=64)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cfg = TrainConfig(feature_dim=args.d, texture_size=args.q, positives=400, negatives=800, bank_size=1024)
    textures, bank, surface, alpha, visible, omega = make_inputs(args.batch, args.q, args.d, 7, 6, cfg)
    cats = [0] * args.batch
    feats = surface.clone().requires_grad_()

    def per_image():
        obs = SurfaceObservation(feats.permute(0, 3, 1, 2), alpha, visible)
        g = torch.Generator().manual_seed(1)
        parts = [pt for pt in (image_loss(obs, i, c, textures, bank, omega, cfg, g) for i, c in enumerate(cats))
                 if pt is not None]
        loss = sum(pt.total for pt in parts) / len(parts)
        (grad,) = torch.autograd.grad(loss, feats)
        return loss.detach(), grad

    def batched():
        obs = SurfaceObservation(feats.permute(0, 3, 1, 2), alpha, visible)
        parts, _ = batch_loss(obs, cats, textures, bank, omega, cfg, torch.Generator().manual_seed(1))
        (grad,) = torch.autograd.grad(parts.total, feats)
        return parts.total.detach(), grad

    ref, new = per_image(), batched()
    times = {"per-image": [], "batched": []}
    for _ in range(args.rounds):
        for name, fn in (("per-image", per_image), ("batched", batched)):
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {"batch": args.batch, "threads": torch.get_num_threads(), "median_s": med,
           "speedup": med["per-image"] / med["batched"], "loss_diff": float((ref[0] - new[0]).abs()),
           "grad_max_diff": float((ref[1] - new[1]).abs().max()), "grad_max": float(ref[1].abs().max())}
    print(f"contrastive losses of a batch of {args.batch} (P={cfg.positives}, M={cfg.negatives}, bank "
          f"{cfg.bank_size}, {cfg.class_negatives} texels x 5 other categories), forward + backward, "
          f"{out['threads']} threads")
    for k, v in med.items():
        print(f"  {k:<10} {1000 * v:8.1f} ms")
    print(f"  speed-up {out['speedup']:.2f}x; |loss diff| {out['loss_diff']:.2e}; max |grad diff| "
          f"{out['grad_max_diff']:.2e} (max |grad| {out['grad_max']:.2e})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
