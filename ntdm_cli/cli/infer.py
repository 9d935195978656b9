"""``ntdm infer``: pose, shape, class and masks of the object in each image, by render-and-compare."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import List, Optional

import typer

from ntdm_cli.cli.common import existing_file, existing_folder, output_file_ok, state
from ntdm_cli.console import info, out
from ntdm_cli.errors import NtdmUsageError


def _parse_shard(shard: Optional[str]) -> tuple[int, int]:
    if not shard:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise NtdmUsageError(f"--shard {shard!r}: expected i/n, e.g. 0/4")
    if not (n > 0 and 0 <= i < n):
        raise NtdmUsageError(f"--shard {shard!r}: need 0 ≤ i < n")
    return i, n


def _dataset_parts(occlusion: str, nuisance: Optional[str]) -> list[tuple[int, Optional[str]]]:
    """(occlusion level, nuisance) pairs to read: --occlusion 0,1,2,3 and/or --nuisance a,b|all."""
    from ntdm_cli.data.pascal3d import NUISANCES

    parts: list[tuple[int, Optional[str]]] = []
    if nuisance:
        names = list(NUISANCES) if nuisance == "all" else [n for n in nuisance.split(",") if n]
        bad = [n for n in names if n not in NUISANCES]
        if bad:
            raise NtdmUsageError(f"--nuisance {bad[0]!r}: expected {', '.join(NUISANCES)} or all")
        parts += [(0, n) for n in names]
        if occlusion in ("", "0") or occlusion is None:
            return parts
    try:
        levels = sorted({int(x) for x in occlusion.split(",") if x != ""})
    except ValueError:
        raise NtdmUsageError(f"--occlusion {occlusion!r}: expected levels 0-3, e.g. 0,1,2,3")
    if any(lv not in (0, 1, 2, 3) for lv in levels):
        raise NtdmUsageError(f"--occlusion {occlusion!r}: levels are 0-3")
    return [(lv, None) for lv in levels] + parts


def _parse_bbox(bbox: Optional[str]):
    if not bbox:
        return None
    try:
        vals = tuple(float(x) for x in bbox.split(","))
    except ValueError:
        raise NtdmUsageError(f"--bbox {bbox!r}: expected x0,y0,x1,y1")
    if len(vals) != 4:
        raise NtdmUsageError(f"--bbox {bbox!r}: expected four numbers x0,y0,x1,y1")
    return vals


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
    from ntdm_cli.fsutil import check_output_folder
    from ntdm_cli.infer.pipeline import image_files, inputs_from_dataset, inputs_from_files, run_infer
    from ntdm_cli.model.default import resolve_model
    from ntdm_cli.model.io import load_model

    st = state(ctx)
    cfg = st.config.get("infer")
    for name, value in (("steps", steps), ("topk", topk), ("shortlist", shortlist), ("init", init)):
        if value is not None:
            setattr(cfg, name, value)
    cfg.fix_shape |= fix_shape
    cfg.no_background |= no_background
    cfg.single_bin |= single_bin
    cfg.validate()
    if bool(images) == (data is not None):
        raise NtdmUsageError("give image files/folders or --data DIR, not both (and not neither)")
    if limit is not None and limit <= 0:
        raise NtdmUsageError(f"--limit {limit}: expected a positive number of images per category")
    box = _parse_bbox(bbox)
    if box is not None and data is not None:
        raise NtdmUsageError("--bbox applies to image files, not to --data (the annotations give the boxes)")
    choice = resolve_model(model_path, cfg.model)
    model_path = choice.path
    if choice.source != "--model":
        info(f"model {choice.describe()}")
    existing_file(model_path, "--model")
    shard_i, shard_n = _parse_shard(shard)
    # every output is checked before the model is loaded or anything is computed
    files = image_files(list(images)) if images else []
    if data is not None:
        existing_folder(data, "--data")
    inputs_named = [("--model", model_path)] + [("IMAGE", f) for f in files]
    output_file_ok(output, "--output", inputs_named)
    folders_named = [("IMAGE", p) for p in images or [] if p.is_dir()] + ([("--data", data)] if data else [])
    several = len(files[shard_i::shard_n]) != 1 if data is None else None

    def check_side_outputs(several: bool) -> None:
        for opt, path in (("--overlay", overlay), ("--export", export)):
            if path is None:
                continue
            named = inputs_named + [("--output", output)]
            if several:
                check_output_folder(path, opt, named + folders_named)
            else:
                output_file_ok(path, opt, named)

    if several is not None:
        check_side_outputs(several)
    device = st.torch_device()
    model = load_model(model_path, device)
    for d in model.deformers.values():
        d.requires_grad_(False)
    model.backbone.eval()
    crop_hw = tuple(int(x) for x in str(model.extra.get("crop_hw", "256,256")).split(","))
    if cfg.init_distance <= 0:
        cfg.init_distance = float(model.extra.get("target_distance", 5.0))
    if category is not None and category not in model.categories:
        raise NtdmUsageError(f"--category {category}: the model has no such category (it has {', '.join(model.categories)})")
    if data is not None:  # streamed: only one batch of crops is in memory at a time
        cats = [category] if category else model.categories
        streams, count = [], 0
        for occ, nui in _dataset_parts(occlusion, nuisance):
            ds, stream = inputs_from_dataset(data, split, cats, crop_hw, occ, nui, limit,
                                             known_category=category is not None)
            streams.append(stream)
            count += len(ds)
        inputs = itertools.islice(itertools.chain.from_iterable(streams), shard_i, None, shard_n)
        total = len(range(shard_i, count, shard_n))
        several = total > 1
        check_side_outputs(several)
    else:
        inputs = inputs_from_files(files[shard_i::shard_n], crop_hw, category, box)
        total = len(inputs)
    if total == 0:
        raise NtdmUsageError("no images to process")
    attrs = {"model": str(model_path), "data_root": str(data or ""), "split": split if data else "",
             "shard": f"{shard_i}/{shard_n}"}
    t0 = time.perf_counter()
    preds = run_infer(inputs, model, cfg, device, output, overlay, export, st.config.to_yaml(), attrs, total=total,
                      several=several)
    total = time.perf_counter() - t0
    out.print(f"wrote {output}: {len(preds)} images in {total:.1f} s ({total / len(preds):.2f} s/image)")
    if len(preds) == 1:
        p = preds[0]
        v = p.viewpoint
        out.print(f"{p.image_id}: {p.category}  azimuth {v['azimuth']:.3f}  elevation {v['elevation']:.3f}  "
                  f"theta {v['theta']:.3f}  distance {v['distance']:.2f}  loss {p.result.loss:.3f}")


def register(app: typer.Typer) -> None:
    app.command("infer")(infer_cmd)
