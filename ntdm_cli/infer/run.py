"""``ntdm infer`` as one library call: resolve and prepare the model, build (and shard) the input
stream from image files or a dataset split, check every output before computing, run inference."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

from ntdm_cli.console import info
from ntdm_cli.data.pascal3d import NUISANCES
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.fsutil import check_output, check_output_folder, existing_file, existing_folder
from ntdm_cli.infer.pipeline import Prediction, image_files, inputs_from_dataset, inputs_from_files, run_infer
from ntdm_cli.infer.solver import InferConfig
from ntdm_cli.model.default import resolve_model
from ntdm_cli.model.io import NTDMModel, load_model


def parse_shard(shard: str | None) -> tuple[int, int]:
    """``--shard i/n`` → (i, n); (0, 1) when not given."""
    if not shard:
        return 0, 1
    try:
        i, n = (int(x) for x in shard.split("/"))
    except ValueError:
        raise NtdmUsageError(f"--shard {shard!r}: expected i/n, e.g. 0/4")
    if not (n > 0 and 0 <= i < n):
        raise NtdmUsageError(f"--shard {shard!r}: need 0 ≤ i < n")
    return i, n


def dataset_parts(occlusion: str, nuisance: str | None) -> list[tuple[int, str | None]]:
    """(occlusion level, nuisance) pairs to read: --occlusion 0,1,2,3 and/or --nuisance a,b|all."""
    parts: list[tuple[int, str | None]] = []
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


def parse_bbox(bbox: str | None) -> tuple[float, float, float, float] | None:
    """``--bbox x0,y0,x1,y1`` (pixels) → a tuple; None when not given."""
    if not bbox:
        return None
    try:
        vals = tuple(float(x) for x in bbox.split(","))
    except ValueError:
        raise NtdmUsageError(f"--bbox {bbox!r}: expected x0,y0,x1,y1")
    if len(vals) != 4:
        raise NtdmUsageError(f"--bbox {bbox!r}: expected four numbers x0,y0,x1,y1")
    return vals


def model_crop(model: NTDMModel) -> tuple[int, int]:
    """(H, W) pixels: the crop the model was trained on (its ``crop_hw`` "H,W"; 256×256 when absent)."""
    return tuple(int(x) for x in str(model.extra.get("crop_hw", "256,256")).split(","))


def prepare_model(path: Path, device) -> NTDMModel:
    """The model at ``path`` on ``device`` for inference: backbone in eval mode, deformers frozen."""
    model = load_model(path, device)
    for d in model.deformers.values():
        d.requires_grad_(False)
    model.backbone.eval()
    return model


def infer_command(cfg: InferConfig, images: list[Path] | None, output: Path, device, config_yaml: str = "", *,
                  model_path: Path | None = None, data: Path | None = None, split: str = "val",
                  occlusion: str = "0", nuisance: str | None = None, limit: int | None = None,
                  category: str | None = None, bbox: str | None = None, overlay: Path | None = None,
                  export: Path | None = None, shard: str | None = None) -> tuple[list[Prediction], float]:
    """What ``ntdm infer`` does, its options as arguments. Returns the predictions and the seconds the
    inference took. ``cfg.init_distance`` ≤ 0 is set to the model's training distance."""
    if bool(images) == (data is not None):
        raise NtdmUsageError("give image files/folders or --data DIR, not both (and not neither)")
    if limit is not None and limit <= 0:
        raise NtdmUsageError(f"--limit {limit}: expected a positive number of images per category")
    box = parse_bbox(bbox)
    if box is not None and data is not None:
        raise NtdmUsageError("--bbox applies to image files, not to --data (the annotations give the boxes)")
    choice = resolve_model(model_path, cfg.model)
    model_path = choice.path
    if choice.source != "--model":
        info(f"model {choice.describe()}")
    existing_file(model_path, "--model")
    shard_i, shard_n = parse_shard(shard)
    # every output is checked before the model is loaded or anything is computed
    files = image_files(list(images)) if images else []
    if data is not None:
        existing_folder(data, "--data")
    inputs_named = [("--model", model_path)] + [("IMAGE", f) for f in files]
    check_output(output, "--output", inputs_named)
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
                check_output(path, opt, named)

    if several is not None:
        check_side_outputs(several)
    model = prepare_model(model_path, device)
    crop_hw = model_crop(model)
    if cfg.init_distance <= 0:
        cfg.init_distance = float(model.extra.get("target_distance", 5.0))
    if category is not None and category not in model.categories:
        raise NtdmUsageError(f"--category {category}: the model has no such category (it has {', '.join(model.categories)})")
    if data is not None:  # streamed: only one batch of crops is in memory at a time
        cats = [category] if category else model.categories
        streams, count = [], 0
        for occ, nui in dataset_parts(occlusion, nuisance):
            ds, stream = inputs_from_dataset(data, split, cats, crop_hw, occ, nui, limit,
                                             known_category=category is not None,
                                             zoom=model.zoom)
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
    preds = run_infer(inputs, model, cfg, device, output, overlay, export, config_yaml, attrs, total=total,
                      several=several)
    return preds, time.perf_counter() - t0
