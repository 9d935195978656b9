"""``ntdm infer``: pose, shape, class and masks of the object in each image, by render-and-compare."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from ntdm_cli.cli.common import state
from ntdm_cli.console import out


def infer_cmd(
    ctx: typer.Context,
    images: List[Path] = typer.Argument(None, help="Image files or folders (or use --data)."),
    model_path: Optional[Path] = typer.Option(None, "--model", "-m", help="Model artifact from train-textures "
                                              "[default: $NTDM_MODEL, then infer.model, then the user default; "
                                              "see `ntdm models`]."),
    output: Path = typer.Option(Path("predictions.h5"), "-o", "--output", help="Predictions artifact to write."),
    data: Optional[Path] = typer.Option(None, "--data", help="PASCAL3D+-layout dataset root instead of images."),
    split: str = typer.Option("val", "--split", help="train | val (with --data)."),
    occlusion: str = typer.Option("0", "--occlusion", help="Occlusion levels, e.g. 0 or 0,1,2,3 (with --data)."),
    nuisance: Optional[str] = typer.Option(None, "--nuisance", help="OOD-CV nuisances, e.g. shape,pose or all (with --data)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many images per category (with --data)."),
    category: Optional[str] = typer.Option(None, "--category", help="Known category: skip classification."),
    bbox: Optional[str] = typer.Option(None, "--bbox", help="x0,y0,x1,y1 object box in the image (files only)."),
    overlay: Optional[Path] = typer.Option(None, "--overlay", help="PNG overlay (one image) or folder (several)."),
    export: Optional[Path] = typer.Option(None, "--export", help="OBJ of the predicted mesh (one image) or folder."),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n: process every n-th image starting at i."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Optimisation steps (infer.steps)."),
    topk: Optional[int] = typer.Option(None, "--topk", help="Multi-start hypotheses (infer.topk)."),
    shortlist: Optional[int] = typer.Option(None, "--shortlist", help="Optimise only the fast classifier's top K categories."),
    fix_shape: bool = typer.Option(False, "--fix-shape", help="Ablation: average shape, latent fixed."),
    no_background: bool = typer.Option(False, "--no-background", help="Ablation: no background model."),
    single_bin: bool = typer.Option(False, "--single-bin", help="Ablation: one viewing bin."),
    init: Optional[str] = typer.Option(None, "--init", help="Latent initialisation: grid | random | average."),
) -> None:
    """Estimate pose, shape, class and amodal/visible/occluded masks; write predictions (+ overlays, meshes)."""
    from ntdm_cli.infer.run import infer_command

    st = state(ctx)
    cfg = st.config.get("infer")
    for name, value in (("steps", steps), ("topk", topk), ("shortlist", shortlist), ("init", init)):
        if value is not None:
            setattr(cfg, name, value)
    cfg.fix_shape |= fix_shape
    cfg.no_background |= no_background
    cfg.single_bin |= single_bin
    cfg.validate()
    preds, total = infer_command(cfg, list(images) if images else None, output, st.torch_device(),
                                 st.config.to_yaml(), model_path=model_path, data=data, split=split,
                                 occlusion=occlusion, nuisance=nuisance, limit=limit, category=category, bbox=bbox,
                                 overlay=overlay, export=export, shard=shard)
    out.print(f"wrote {output}: {len(preds)} images in {total:.1f} s ({total / len(preds):.2f} s/image)")
    if len(preds) == 1:
        p = preds[0]
        v = p.viewpoint
        out.print(f"{p.image_id}: {p.category}  azimuth {v['azimuth']:.3f}  elevation {v['elevation']:.3f}  "
                  f"theta {v['theta']:.3f}  distance {v['distance']:.2f}  loss {p.result.loss:.3f}")


def register(app: typer.Typer) -> None:
    app.command("infer")(infer_cmd)
