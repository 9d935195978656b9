"""``ntdm synth OUT``: write the built-in synthetic benchmark in PASCAL3D+ / Occluded-PASCAL3D+ /
OOD-CV layout (thin wrapper over :func:`ntdm_cli.data.synth.synthesize`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

import typer

from ntdm_cli.cli.common import state
from ntdm_cli.console import out


def synth(
    ctx: typer.Context,
    out_dir: Path = typer.Argument(..., metavar="OUT", help="Output folder (created; an existing one is completed).",
                                   show_default=False),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma-separated: car,bus,aeroplane,sofa,"
                                             "chair,bottle,tvmonitor,boat,bicycle,diningtable,motorbike,train "
                                             "[config synth.categories: car,bus]."),
    per_category: Optional[int] = typer.Option(None, "--per-category", help="i.i.d. images per category "
                                               "(train + val) [200]."),
    size: Optional[int] = typer.Option(None, "--size", help="Image height = width in pixels [256]."),
    occlusion: Optional[str] = typer.Option(None, "--occlusion", help="Occluded copies of the val images: "
                                            "L1,L2,L3 or none [L1,L2,L3]."),
    ood: Optional[str] = typer.Option(None, "--ood", help="OOD-CV splits: all, none or a list of "
                                      "shape,pose,texture,context,weather [all]."),
    ood_per_category: Optional[int] = typer.Option(None, "--ood-per-category", help="Images per nuisance and "
                                                   "category [per-category // 5]."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed [0]."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help="Worker processes [1]."),
) -> None:
    """Generate a procedural PASCAL3D+-layout benchmark: CAD models, images, .mat annotations, amodal
    masks, Image_sets lists, Occluded-PASCAL3D+ copies (L1-L3) and OOD-CV nuisance splits. Deterministic
    for a seed and resumable (finished images are skipped)."""
    from ntdm_cli.data.synth import SynthConfig, parse_levels, parse_nuisances, synthesize

    st = state(ctx)
    cfg: SynthConfig = st.config.get("synth", SynthConfig)
    changes = {}
    if categories is not None:
        changes["categories"] = [c.strip() for c in categories.split(",") if c.strip()]
    if per_category is not None:
        changes["per_category"] = per_category
    if size is not None:
        changes["size"] = size
    if occlusion is not None:
        changes["occlusion"] = parse_levels(occlusion)
    if ood is not None:
        changes["ood"] = parse_nuisances(ood)
    if ood_per_category is not None:
        changes["ood_per_category"] = ood_per_category
    if seed is not None:
        changes["seed"] = seed
    if workers is not None:
        changes["workers"] = workers
    cfg = dataclasses.replace(cfg, **changes)
    cfg.validate()
    st.config.set("synth", cfg)
    summary = synthesize(out_dir, cfg, config_yaml=st.config.to_yaml())
    counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items())
    out.print(f"{summary.root}: {summary.images} images written, {summary.skipped} already there ({counts}); "
              f"{summary.wall_s:.1f} s wall, {summary.cpu_s:.1f} s CPU")
    out.print(f"index: {summary.index_path}")


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
