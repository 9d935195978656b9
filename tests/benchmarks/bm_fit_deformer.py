"""Benchmark: fitting the deformer to 10 CAD-like meshes with the real-scale config, and exporting.

Workload (issue 4): the 10 procedural vehicle CADs of ``tests/cad_fixtures.py`` (part soups with
wheels, thin parts and concavities), the 2562-vertex template and the default ``deformer`` config.
Reports wall and CPU time (split into prepare / optimise / evaluate), the per-CAD mean and
95th-percentile symmetric surface distance as % of the CAD's bounding-box diagonal, the own/other
ratio (distance of fitted shape k to the nearest other CAD over its distance to CAD k), and the time
of exporting one latent as OBJ (load artifact + evaluate + write). With ``--baseline concat`` the
same fit is repeated with the textbook concatenation conditioning and reported as a ratio.

    python -m tests.benchmarks.bm_fit_deformer [--steps N] [--threads T] [--baseline concat] [--json out.json]

Targets: every CAD within 0.5 % mean distance, ratio >= 2, fit < 2 min on 2 CPU cores, export < 1 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ntdm_cli.artifacts import write_artifact
from ntdm_cli.geometry.deformer import deformer_to_artifact_data
from ntdm_cli.geometry.export import ExportRequest, export_obj
from ntdm_cli.geometry.fit import DeformerConfig, fit_deformer
from tests.cad_fixtures import make_cads


def run(cfg: DeformerConfig, cads, label: str, category: str = "vehicle") -> dict:
    """Fit ``cads`` with ``cfg``, print the per-CAD table (mean / p95 % of the diagonal, other/own
    ratio and the nearest other CAD) and the worst figures against the targets; returns them."""
    r = fit_deformer(cads, cfg, category=category)
    e = r.errors
    print(f"\n[{label}] fit: {r.seconds:.1f} s wall, {r.cpu_seconds:.1f} s CPU "
          f"(prepare {r.timings['prepare']:.1f} s, optimise {r.timings['optimise']:.1f} s for {cfg.steps} steps, "
          f"evaluate {r.timings['evaluate']:.1f} s); torch threads {cfg.threads or torch.get_num_threads()}")
    print(f"{'CAD':16s} {'mean %':>8s} {'p95 %':>8s} {'mean':>9s} {'other/own':>10s}  nearest other")
    for k, name in enumerate(e.names):
        others = [(e.cross[k, j], e.names[j]) for j in range(len(e.names)) if j != k]
        nearest = min(others)[1] if others else "-"
        print(f"{name:16s} {e.mean_pct[k]:8.3f} {e.p95_pct[k]:8.3f} {e.mean[k]:9.5f} {e.own_other_ratio[k]:10.2f}  {nearest}")
    print(f"max mean % {e.mean_pct.max():.3f} (target <= 0.5), min other/own {e.own_other_ratio.min():.2f} "
          f"(target >= 2)")
    return {"label": label, "seconds": r.seconds, "cpu_seconds": r.cpu_seconds, "timings": r.timings,
            "names": e.names, "mean_pct": e.mean_pct.tolist(), "p95_pct": e.p95_pct.tolist(),
            "own_other_ratio": e.own_other_ratio.tolist(), "cross": e.cross.tolist(),
            "max_mean_pct": float(e.mean_pct.max()), "min_ratio": float(e.own_other_ratio.min()),
            "deformer": r.deformer}


def time_export(deformer, repeats: int = 5) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        p = write_artifact(Path(tmp) / "d.h5", "deformer", deformer_to_artifact_data(deformer))
        export_obj(p, Path(tmp) / "w.obj", ExportRequest(latent="0"))  # warm-up (imports)
        times = []
        for k in range(repeats):
            t0 = time.perf_counter()
            export_obj(p, Path(tmp) / f"{k}.obj", ExportRequest(latent=str(k % deformer.num_latents)))
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=None, help="override deformer.steps")
    ap.add_argument("--threads", type=int, default=None, help="override deformer.threads")
    ap.add_argument("--cads", type=int, default=10)
    ap.add_argument("--baseline", choices=["none", "concat"], default="none")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    cfg = DeformerConfig()
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, steps=args.steps)
    if args.threads is not None:
        cfg = dataclasses.replace(cfg, threads=args.threads)
    cads = make_cads(args.cads)
    print(f"fitting {len(cads)} CADs, template subdivisions {cfg.subdivisions}, MLP {cfg.layers}x{cfg.hidden} "
          f"({cfg.conditioning}), {cfg.steps} steps")
    results = [run(cfg, cads, cfg.conditioning)]
    t_export = time_export(results[0]["deformer"])
    print(f"export-obj of one latent (load artifact + evaluate + write OBJ): {t_export * 1000:.0f} ms (target < 1 s)")
    if args.baseline == "concat":
        results.append(run(dataclasses.replace(cfg, conditioning="concat"), cads, "concat"))
        a, b = results
        print(f"\nlinear vs concat: CPU time ratio {b['cpu_seconds'] / a['cpu_seconds']:.2f}x, "
              f"max mean % {max(a['mean_pct']):.3f} vs {max(b['mean_pct']):.3f}")
    if args.json:
        for r in results:
            r.pop("deformer")
        args.json.write_text(json.dumps({"results": results, "export_seconds": t_export,
                                         "config": dataclasses.asdict(cfg)}, indent=2))


if __name__ == "__main__":
    main()
