"""Benchmark: fitting the deformer to each synthetic category's training CADs (``ntdm synth``'s catalogue).

Workload: for every category given, the training subtypes of :mod:`ntdm_cli.data.cads` (the held-out
last subtype excluded, as ``ntdm synth`` writes them to ``CAD/<category>``), fitted with the default
``deformer`` config (2562-vertex template, 400 steps) unless overridden. Reports, per CAD, the mean and
95th-percentile symmetric surface distance as % of the CAD's bounding-box diagonal and the own/other
ratio (distance of fitted shape k to the nearest other CAD over its distance to CAD k), then per
category the worst mean %, the smallest ratio and the wall time against the targets.

    python -m tests.benchmarks.bm_fit_categories [--categories bicycle,train] [--steps N] [--threads T]
                                                 [--subdivisions S] [--json out.json]

Targets (as ``bm_fit_deformer``): every CAD within 0.5 % mean distance, ratio >= 2, fit < 2 min on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

from ntdm_cli.data import cads as catalogue
from ntdm_cli.geometry.fit import DeformerConfig
from ntdm_cli.geometry.mesh_io import validate_mesh
from tests.benchmarks.bm_fit_deformer import run as fit_run

TARGET_MEAN_PCT, TARGET_RATIO, TARGET_SECONDS = 0.5, 2.0, 120.0


def training_cads(category: str) -> list:
    """The category's training subtypes as meshes named after the subtype."""
    out = []
    for i in catalogue.train_subtypes(category):
        m = catalogue.build_cad(category, i)
        v, f, _ = m.mesh()
        out.append(validate_mesh(v, f, f"{category}/{i + 1:02d}", name=m.name, quiet=True))
    return out


def run(category: str, cfg: DeformerConfig) -> dict:
    """Fit one category's training CADs (bm_fit_deformer's fit and table) and judge the goals."""
    r = fit_run(cfg, training_cads(category), category, category=category)
    r.pop("deformer")
    ok = r["max_mean_pct"] <= TARGET_MEAN_PCT and r["min_ratio"] >= TARGET_RATIO
    print(f"{category}: {r['seconds']:.0f} s (target < {TARGET_SECONDS:.0f} s on 2 cores) "
          f"-> {'meets' if ok else 'MISSES'} the distance goals")
    return {"category": category, **r, "meets_distance_goals": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--categories", default="bicycle,diningtable,motorbike,train",
                    help="comma-separated categories (default: the four added last)")
    ap.add_argument("--steps", type=int, default=None, help="override deformer.steps")
    ap.add_argument("--threads", type=int, default=None, help="override deformer.threads")
    ap.add_argument("--subdivisions", type=int, default=None, help="override deformer.subdivisions (screening)")
    ap.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    args = ap.parse_args()
    cfg = DeformerConfig()
    for name in ("steps", "threads", "subdivisions"):
        if getattr(args, name) is not None:
            cfg = dataclasses.replace(cfg, **{name: getattr(args, name)})
    cats = catalogue.check_categories(args.categories)
    print(f"template subdivisions {cfg.subdivisions}, MLP {cfg.layers}x{cfg.hidden} ({cfg.conditioning}), "
          f"{cfg.steps} steps, {cfg.threads} thread(s); load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    t0 = time.perf_counter()
    results = [run(c, cfg) for c in cats]
    print(f"\n{'category':12s} {'max mean %':>10s} {'min ratio':>10s} {'seconds':>8s}")
    for r in results:
        print(f"{r['category']:12s} {r['max_mean_pct']:10.3f} {r['min_ratio']:10.2f} {r['seconds']:8.1f}")
    print(f"total {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "config": dataclasses.asdict(cfg),
                                         "loadavg": os.getloadavg()}, indent=2))


if __name__ == "__main__":
    main()
