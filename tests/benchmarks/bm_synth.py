"""Benchmark: ``ntdm synth`` throughput (issue 5: 1000 images of 256² in under 2 minutes on 2 cores).

Workload: 5 categories × 200 i.i.d. images at 256² (no occluded copies, no OOD), generated with
``--workers`` processes into a fresh folder; the baseline is the same generator with one worker on
the first 10% of the images, run in the same process, so the reported speed-up is a ratio measured on
the same machine and load. Wall and CPU time (this process + workers) are reported, because the CPU is
shared with other jobs on the benchmark machines. A second, small run measures occluded copies + OOD.

    python -m tests.benchmarks.bm_synth [--images 1000] [--size 256] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

from ntdm_cli.data.synth import SynthConfig, synthesize

CATS = ["car", "bus", "aeroplane", "chair", "sofa"]


def run(root: Path, per_category: int, size: int, workers: int, occlusion=(), ood=(), seed=0):
    cfg = SynthConfig(categories=CATS, per_category=per_category, size=size, occlusion=list(occlusion), ood=list(ood),
                      seed=seed, workers=workers)
    s = synthesize(root, cfg)
    return {"images": s.images, "wall_s": s.wall_s, "cpu_s": s.cpu_s, "images_per_s": s.images / max(s.wall_s, 1e-9),
            "cpu_s_per_image": s.cpu_s / max(s.images, 1)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1000)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    os.environ.setdefault("NTDM_NO_PROGRESS", "1")
    per_cat = max(1, args.images // len(CATS))
    tmp = Path(tempfile.mkdtemp(prefix="bm_synth_"))
    try:
        base = run(tmp / "base", max(1, per_cat // 10), args.size, 1)
        main_run = run(tmp / "main", per_cat, args.size, args.workers)
        extra = run(tmp / "extra", max(2, per_cat // 20), args.size, args.workers, occlusion=(1, 2, 3),
                    ood=("shape", "pose", "texture", "context", "weather"))
        resume = run(tmp / "main", per_cat, args.size, args.workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"size": args.size, "categories": CATS, "workers": args.workers, "cpus": os.cpu_count(),
           "baseline_1_worker": base, "main": main_run, "occlusion_and_ood": extra, "resume_all_skipped": resume,
           "speedup_vs_baseline": main_run["images_per_s"] / max(base["images_per_s"], 1e-9)}
    print(f"baseline (1 worker): {base['images']} images in {base['wall_s']:.1f} s = {base['images_per_s']:.1f} img/s, "
          f"{base['cpu_s_per_image'] * 1000:.0f} ms CPU/image")
    print(f"main ({args.workers} workers): {main_run['images']} images of {args.size}² in {main_run['wall_s']:.1f} s wall, "
          f"{main_run['cpu_s']:.1f} s CPU = {main_run['images_per_s']:.1f} img/s "
          f"(x{res['speedup_vs_baseline']:.2f} vs 1 worker)")
    print(f"with occlusion L1-L3 + 5 OOD splits: {extra['images']} images in {extra['wall_s']:.1f} s = "
          f"{extra['images_per_s']:.1f} img/s, {extra['cpu_s_per_image'] * 1000:.0f} ms CPU/image")
    print(f"resume of a finished folder: {resume['wall_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
