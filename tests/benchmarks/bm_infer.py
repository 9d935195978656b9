"""Benchmark: render-and-compare latency per image for one category, broken down (init / optimise).

Real-scale geometry and textures: a 2562-vertex deformable mesh with K CAD latents, a 7-bin neural
texture (q=256, d=128 by default), the 144-pose grid × (K + 1) latents scored in chunks, then Adam for
``--steps`` steps (early stopping off, so the figure is the worst case). Features are a random unit
feature map at the crop's stride-8 resolution. Weights are random: the timing does not depend on them.
``--polish-levels N`` also times the same solve with the compass search after Adam
(``infer.polish_levels=N``) against it without, in the same process, and prints the ratio; on random
features few moves improve, so this is the search's least cost (one round of 8 moves per level).
Each timed solve's peak memory is its growth over the memory in use when it starts
(:class:`ntdm_cli.bench.raster.PeakMemory`: VmHWM growth on CPU, max_memory_allocated on CUDA).

    python -m tests.benchmarks.bm_infer [--crop 256] [--steps 300] [--topk 1] [--polish-levels 3]
                                        [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch
import torch.nn.functional as F

from ntdm_cli.bench.raster import PeakMemory
from ntdm_cli.geometry.deformer import Deformer
from ntdm_cli.geometry.template import make_template
from ntdm_cli.infer.solver import InferConfig, RenderCompare, solve
from ntdm_cli.model.texture import NeuralTexture


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--latents", type=int, default=6)
    p.add_argument("--subdivisions", type=int, default=4)
    p.add_argument("--q", type=int, default=256)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--bins", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--topk", type=int, default=1)
    p.add_argument("--polish-levels", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    deformer = Deformer(make_template(args.subdivisions), args.latents).to(dev).requires_grad_(False)
    tex = NeuralTexture(args.bins, args.q, args.d, generator=g, device=dev)
    tex.counts += 1
    bank = F.normalize(torch.randn(256, args.d, generator=g), dim=-1).to(dev)
    h = w = args.crop // 8
    feats = F.normalize(torch.randn(1, args.d, h, w, generator=g), dim=1).to(dev)
    cfg = InferConfig(steps=args.steps, early_stop_patience=10**9, init_distance=5.0, topk=args.topk)
    rc = RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (args.crop / 2, args.crop / 2))
    solve(rc, InferConfig(steps=2, early_stop_patience=10**9, init_distance=5.0), g)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    with PeakMemory(dev) as mem:  # timed from inside (resetting the peak is not the solve's work) to after
        t0 = time.perf_counter()  # the exit, which synchronises CUDA
        res = solve(rc, cfg, torch.Generator().manual_seed(1))
    total = time.perf_counter() - t0
    peak = mem.mib
    hyps = 144 * (args.latents + 1)
    out = {"device": str(dev), "threads": torch.get_num_threads(), "crop": args.crop, "feature_map": [h, w],
           "hypotheses": hyps, "steps": len(res.history), "init_s": res.timing["init"],
           "optimise_s": res.timing["optimise"], "total_s": total,
           "ms_per_step": 1000 * res.timing["optimise"] / max(len(res.history), 1), "peak_extra_mib": peak}
    print(f"infer, one category on {dev} ({out['threads']} threads): crop {args.crop}² → features {h}×{w}, "
          f"mesh {deformer.template.verts.shape[0]} verts, texture {args.bins}×{args.q}²×{args.d}")
    print(f"  init: {hyps} hypotheses scored in {out['init_s']:.2f} s")
    print(f"  optimise: {out['steps']} steps in {out['optimise_s']:.2f} s ({out['ms_per_step']:.1f} ms/step)")
    print(f"  total per image: {total:.2f} s   (paper: 12 s per image on a GPU → {12 / total:.1f}× that), "
          f"peak memory +{peak:.0f} MiB")
    if args.polish_levels > 0:
        polished = dataclasses.replace(cfg, polish_levels=args.polish_levels)
        with PeakMemory(dev) as mem:
            t0 = time.perf_counter()
            solve(rc, polished, torch.Generator().manual_seed(1))
        out["total_polished_s"] = time.perf_counter() - t0
        out["peak_extra_polished_mib"] = mem.mib
        out["polish_ratio"] = out["total_polished_s"] / total
        print(f"  with the compass search ({args.polish_levels} levels, {args.topk} starts): "
              f"{out['total_polished_s']:.2f} s = {out['polish_ratio']:.2f}× without, "
              f"peak memory +{out['peak_extra_polished_mib']:.0f} MiB")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
