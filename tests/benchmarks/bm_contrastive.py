"""Benchmark: cost of the contrastive loss vs the number of categories (3D-CompNets scaling).

For C = 10, 50, 100, 200 synthetic categories (textures b×q×q×d with observed texels), one training
image's loss (P positives, M same-category negatives, N sampled texels per other category weighted by ω,
the background bank) is computed forward + backward. ω comes from a synthetic confusion matrix in which
each category is confused with a few others (as a calibrated model's is), thresholded at 0.05.

Reports, per C: median time, contrasted pairs, and the pairs of the naive alternative that contrasts
every positive with every texel of every other category; the time ratio against C = 10 (target: 200
categories ≤ 25× the cost of 10) and the pair reduction at 100 (target ≥ 90%).

    python -m tests.benchmarks.bm_contrastive [--repeats 5] [--q 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
from ntdm_cli.train.em import SurfaceObservation, image_loss
from ntdm_cli.train.losses import omega_from_confusion
from ntdm_cli.train.loop import TrainConfig


def synthetic_confusion(C: int, generator: torch.Generator) -> torch.Tensor:
    """Counts (C, C): mostly correct, each class confused with 1-3 random others."""
    conf = torch.zeros(C, C)
    for y in range(C):
        conf[y, y] = 80
        k = int(torch.randint(1, 4, (1,), generator=generator))
        others = torch.randperm(C, generator=generator)[:k]
        for o in others.tolist():
            if o != y:
                conf[y, o] += float(torch.randint(3, 15, (1,), generator=generator))
        conf[y] += torch.rand(C, generator=generator) * 0.5  # noise below the threshold
    return conf


def run(C: int, q: int, d: int, bins: int, repeats: int, cfg: TrainConfig) -> dict:
    g = torch.Generator().manual_seed(C)
    textures = [NeuralTexture(bins, q, d, generator=g) for _ in range(C)]
    for t in textures:
        t.counts += 1
    bank = BackgroundBank(2560, d, generator=g)
    omega = omega_from_confusion(synthetic_confusion(C, g), 0.05)
    feats = torch.randn(1, d, q, q, generator=g, requires_grad=True)
    alpha = torch.full((1, bins, q, q), 1.0 / bins)
    visible = torch.zeros(1, q, q, dtype=torch.bool)
    visible[0, q // 4: 3 * q // 4, q // 8: 7 * q // 8] = True
    times, pairs = [], 0
    for r in range(repeats + 1):
        t0 = time.perf_counter()
        obs = SurfaceObservation(F.normalize(feats, dim=1), alpha, visible)
        parts = image_loss(obs, 0, 0, textures, bank, omega, cfg, torch.Generator().manual_seed(r))
        parts.total.backward()
        if r:
            times.append(time.perf_counter() - t0)
        pairs = parts.pairs
    texels = bins * q * q
    naive = cfg.positives * (cfg.negatives + 2560 + (C - 1) * texels)
    return {"categories": C, "median_s": statistics.median(times), "pairs": pairs, "naive_pairs": naive,
            "weighted_pairs_with_omega": int((omega[0] > 0).sum())}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--q", type=int, default=64)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--bins", type=int, default=7)
    p.add_argument("--categories", default="10,50,100,200")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    cfg = TrainConfig()  # the real defaults: 1000 positives, 2000 negatives, 32 per other category
    rows = [run(int(c), args.q, args.d, args.bins, args.repeats, cfg) for c in args.categories.split(",")]
    base = rows[0]
    print(f"contrastive loss, 1 image: P={cfg.positives} M={cfg.negatives} N={cfg.class_negatives}/category, "
          f"texture {args.bins}x{args.q}^2x{args.d}, {torch.get_num_threads()} threads")
    print(f"{'C':>5} {'median ms':>10} {'x C=10':>7} {'pairs':>12} {'naive pairs':>14} {'reduction':>10}")
    for r in rows:
        r["time_ratio"] = r["median_s"] / base["median_s"]
        r["reduction"] = 1 - r["pairs"] / r["naive_pairs"]
        print(f"{r['categories']:>5} {r['median_s'] * 1000:>10.1f} {r['time_ratio']:>7.2f} {r['pairs']:>12,} "
              f"{r['naive_pairs']:>14,} {100 * r['reduction']:>9.2f}%")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
