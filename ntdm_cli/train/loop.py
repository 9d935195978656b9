"""``ntdm train-textures``: backbone + neural textures by contrastive EM (CoKe), scaled as 3D-CompNets.

Single process or multi-process data parallel under ``torchrun`` (gloo on CPU, nccl on GPU): the
backbone is wrapped in DistributedDataParallel, texture updates are summed over processes before they
are applied and background features are gathered, so every process holds the same textures and bank.
All randomness derives from (seed, epoch, step), so resuming from an epoch checkpoint reproduces the
uninterrupted run. The parts: train.trainer (the state and one EM step), train.checkpoint (snapshot,
resume), train.distributed (process-group helpers), train.data (the training set and its batches).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ntdm_cli.console import info, progress
from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.geometry.deformer import Deformer, load_deformer
from ntdm_cli.model.backbone import feature_stride
from ntdm_cli.model.pose_prior import PosePrior, priors_to_json
from ntdm_cli.train import checkpoint as ckpt
from ntdm_cli.train.cache import BodyCache
from ntdm_cli.train.data import TrainingSet, collate
from ntdm_cli.train.distributed import broadcast_buffers, init_distributed, rank_and_world
from ntdm_cli.train.losses import omega_from_confusion
from ntdm_cli.train.settings import TrainConfig  # noqa: F401  (the ``train`` section)
from ntdm_cli.train.trainer import Trainer, seeded
from ntdm_cli.train.view import fit_view_classifier, view_inputs

#: the class calibration run after the last epoch: (trainer, training set, calibration indices) → the
#: calibration entries the model stores (see ntdm_cli.calibration.class_calibrator)
ClassCalibration = Callable[[Trainer, TrainingSet, list], dict]


def _category_of(deformer: Deformer, path: Path) -> str:
    name = getattr(deformer, "category", "") or ""
    if name:
        return str(name)
    return path.name.split(".")[0]


def load_deformers(paths: list[Path], device) -> dict[str, Deformer]:
    """The deformer of each category (by its stored category, else the file's stem), all on one template."""
    out: dict[str, Deformer] = {}
    for p in paths:
        d = load_deformer(p)
        cat = _category_of(d, p)
        if cat in out:
            raise NtdmUsageError(f"--deformers: two deformers for category '{cat}' ({p})")
        out[cat] = d.to(device).eval()
    if not out:
        raise NtdmUsageError("--deformers matched no file")
    faces = [d.template.faces.shape for d in out.values()]
    if len(set(faces)) != 1:
        raise NtdmUsageError("--deformers: all deformers must share one template (same subdivisions)")
    return out


def _run_epoch(trainer: Trainer, dataset: TrainingSet, train_rows: list[int], epoch: int, cache, prog, task,
               rank: int, world: int) -> tuple[dict, int, int, int, float]:
    """One epoch of EM steps on this process's share of the batches. Returns the summed loss parts,
    the number of steps, images and images with a visible texel, and the start time."""
    cfg = trainer.cfg
    perm = torch.randperm(len(train_rows), generator=seeded(cfg.seed, 1, epoch)).tolist()
    batches = dataset.batches([train_rows[i] for i in perm], cfg.batch_size, seeded(cfg.seed, 3, epoch))
    batches = batches + batches[: (-len(batches)) % world]  # equal shares keep DDP in step
    batches = batches[rank::world]
    if cache is not None:
        shown = seeded(cfg.seed, 4, epoch, rank)  # which images show their occluded variant this epoch
        loader = (cache.batch(rows, shown) for rows in batches)
    else:
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=cfg.workers,
                                             collate_fn=collate, persistent_workers=False)
    sums = {"loss": 0.0, "inner": 0.0, "cross": 0.0, "ml": 0.0}
    nb, t0, nimg, nused = 0, time.perf_counter(), 0, 0
    for step, batch in enumerate(loader):
        parts = trainer.step(batch, seeded(cfg.seed, 2, epoch, step, rank))
        for k in sums:
            sums[k] += parts[k]
        nb += 1
        nimg += parts["images"]
        nused += parts["used"]
        rate = nimg * world / max(time.perf_counter() - t0, 1e-9)
        prog.update(task, advance=1, info=f"ep {epoch + 1}/{cfg.epochs} loss {parts['loss']:.3f} "
                    f"(in {parts['inner']:.2f} cross {parts['cross']:.2f} ml {parts['ml']:.2f}) {rate:.1f} img/s")
    return sums, nb, nimg, nused, t0


def _calibrate(trainer: Trainer, dataset: TrainingSet, rows: list[int], epoch: int) -> float:
    """Fast-classifier accuracy on the calibration ``rows``, stored as the trainer's calibration; ω
    follows its confusion matrix. Returns the accuracy (nan without calibration images)."""
    acc, confusion = trainer.calibrate(dataset, rows)
    trainer.calibration = {"accuracy": np.float64(acc), "confusion": confusion.numpy(), "epoch": np.int64(epoch)}
    if rows and confusion.sum() > 0:
        trainer.omega = omega_from_confusion(confusion, trainer.cfg.omega_threshold)
    return acc


def refit_textures(trainer: Trainer, dataset: TrainingSet, rows: list[int], cache: BodyCache | None, prog,
                   rank: int = 0, world: int = 1) -> None:
    """After the last epoch: every texture re-estimated from the training ``rows`` shown without
    occluders under the final network (Trainer.refit_texture), then the background bank refilled with
    their background features. Reads the cached body maps where ``cache`` holds them, else the images."""
    cfg = trainer.cfg
    if world > 1:  # each process's last step updated its own BatchNorm statistics: use rank 0's, as written
        broadcast_buffers(trainer.backbone)
    per_cat: dict[int, list[int]] = {}
    for i in rows:
        per_cat.setdefault(dataset.cat_index[i], []).append(i)
    batches = {c: [r[s:s + cfg.batch_size] for s in range(0, len(r), cfg.batch_size)][rank::world]
               for c, r in per_cat.items()}
    task = prog.add_task("refit textures", total=sum(len(b) for b in batches.values()),
                         info="mean feature per texel under the final network")

    def shown(category: int):
        mine = batches.get(category, [])
        if cache is not None:
            loader = (cache.batch(b, occluded=False) for b in mine)
        else:
            loader = torch.utils.data.DataLoader(dataset, batch_sampler=mine, num_workers=cfg.workers,
                                                 collate_fn=collate) if mine else []
        for b, batch in zip(mine, loader):
            yield b, batch
            prog.update(task, advance=1)

    parts = [trainer.refit_texture(c, shown(c)) for c in range(len(trainer.textures))]
    trainer.refill_bank(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))


def pose_priors(dataset: TrainingSet, rows: list[int], temperature: float) -> dict[str, PosePrior]:
    """Each category's viewpoint prior (model.pose_prior) from the annotations of the training ``rows``."""
    views: dict[str, list[tuple[float, float]]] = {}
    for i in rows:
        e = dataset.dataset.entries[i]
        vp = e.record_object.viewpoint
        views.setdefault(e.category, []).append((vp["elevation"], vp["theta"]))  # radians
    return {c: PosePrior.fit([v[0] for v in vs], [v[1] for v in vs], temperature) for c, vs in views.items()}


def train_textures(data_root: Path, deformer_paths: list[Path], out: Path, cfg: TrainConfig, device: torch.device,
                   config_yaml: str = "", resume: Path | None = None, pretrained: Path | None = None,
                   categories: list[str] | None = None, checkpoint: Path | None = None,
                   class_calibration: ClassCalibration | None = None) -> dict:
    """Train backbone and textures; write the model artifact to ``out`` (checkpoints to ``checkpoint``,
    default ``<out>.ckpt.h5``). Returns a summary (epochs, final losses, calibration accuracy).

    After the last epoch, with ``cfg.refit_textures``, the textures and the bank are re-estimated under
    the final network (:func:`refit_textures`; the checkpoints keep the momentum textures, so training
    can go on from them) and the fast classifier is calibrated again. With ``cfg.view_epochs`` > 0 the
    view classifier (model.view_classifier) is fitted on the final network's features. Then, when
    ``cfg.class_calib_images`` > 0, ``class_calibration`` (the command passes
    ntdm_cli.calibration.class_calibrator) fits the classifier's per-category evidence gains on the
    calibration split and its entries are stored with the model. Resuming a checkpoint that is already
    at ``cfg.epochs`` skips training and only redoes the refit (when on) and these calibrations."""
    distributed = init_distributed(device)
    rank, world = rank_and_world()
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    deformers = load_deformers(deformer_paths, device)
    cats = [c for c in (categories or sorted(deformers))]
    missing = [c for c in cats if c not in deformers]
    if missing:
        raise NtdmUsageError(f"--categories: no deformer for {', '.join(missing)}")
    dataset = TrainingSet(data_root, cats, "train", limit=cfg.limit_per_category or None, zoom=cfg.zoom)
    split = dataset.split(cfg.calib_fraction)
    for c in cats:  # CAD indices must exist in the deformers
        n_cad = deformers[c].num_latents
        bad = {e.record_object.cad_index for e in dataset.dataset.entries if e.category == c} - set(range(n_cad))
        if bad:
            raise NtdmError(f"{data_root}: {c} images use CAD index {min(bad) + 1} but its deformer has {n_cad} CADs")
    extra = {"crop_hw": f"{dataset.crop_hw[0]},{dataset.crop_hw[1]}",
             "target_distance": float(dataset.target_distance), "zoom": float(cfg.zoom), "hole_gap": float(cfg.hole_gap),
             "pose_prior": priors_to_json(pose_priors(dataset, split.train, cfg.temperature))}
    trainer, frozen = Trainer.build(cfg, cats, deformers, device, pretrained, rank, extra)
    start_epoch = 0
    checkpoint = checkpoint or out.with_name(out.name + ".ckpt.h5")
    if resume is not None:
        start_epoch = ckpt.resume(trainer, resume)
        if start_epoch > cfg.epochs:
            raise NtdmUsageError(f"--resume {resume}: the checkpoint is at epoch {start_epoch}, past "
                                 f"train.epochs={cfg.epochs} (raise --epochs to train on)")
        if rank == 0:
            info(f"resuming from {resume} at epoch {start_epoch}")
    if distributed:
        trainer.wrap_distributed()
    trainer.backbone.train()

    steps_per_epoch = math.ceil(len(dataset.batches(split.train, cfg.batch_size, seeded(cfg.seed, 0))) / world)
    cache = None
    if frozen and start_epoch < cfg.epochs:  # with occluders: their cached variants, or the images to paste on
        cache = BodyCache(trainer.backbone, dataset, split.train, cfg.batch_size, device, cfg.workers,
                          occlude=cfg.occlude, variants=cfg.occluder_variants, occlude_max=cfg.occlude_max,
                          upsample=cfg.observe_upsample, seed=cfg.seed, planner=trainer.observation_plans)
    curves = trainer.curves
    with progress() as prog:
        task = prog.add_task("train-textures", total=(cfg.epochs - start_epoch) * steps_per_epoch, info="")
        for epoch in range(start_epoch, cfg.epochs):
            sums, nb, nimg, nused, t0 = _run_epoch(trainer, dataset, split.train, epoch, cache, prog, task, rank, world)
            if nused == 0:
                h, w = (x // feature_stride(trainer.backbone) for x in dataset.crop_hw)
                raise NtdmError(f"{data_root}: no object texels were visible in any training image of epoch "
                                f"{epoch + 1}; the crop {dataset.crop_hw} gives a {h}×{w} feature map, too coarse "
                                "for the texture (use larger images)")
            for k in sums:
                curves[k].append(sums[k] / max(nb, 1))
            curves["lr"].append(trainer.optimizer.param_groups[0]["lr"])
            curves["images_per_s"].append(nimg * world / max(time.perf_counter() - t0, 1e-9))
            trainer.scheduler.step()
            last = epoch + 1 == cfg.epochs
            if (epoch + 1) % cfg.calib_every == 0 or last:
                curves["calib_accuracy"].append(_calibrate(trainer, dataset, split.calib, epoch + 1))
            else:
                curves["calib_accuracy"].append(float("nan"))
            if rank == 0:
                ckpt.snapshot(trainer, checkpoint, config_yaml, epoch=epoch + 1)
            if distributed:
                dist.barrier()
        if cfg.refit_textures and cfg.epochs > 0:  # the written model's textures, not the checkpoint's
            refit_textures(trainer, dataset, split.train, cache, prog, rank, world)
            _calibrate(trainer, dataset, split.calib, cfg.epochs)
    if cfg.view_epochs > 0 and cfg.epochs > 0:  # before the class calibration, which solves with it
        trainer.view, view_curve = fit_view_classifier(
            view_inputs(trainer.backbone, dataset, split.train, device, occlude=cfg.view_occlude,
                        occlude_max=cfg.occlude_max, seed=cfg.seed, mirror=cfg.view_mirror),
            len(cats), bins=cfg.view_bins, width=cfg.view_width, epochs=cfg.view_epochs,
            temperature=cfg.temperature, seed=cfg.seed, device=device)
        trainer.calibration["view_loss"] = np.asarray(view_curve)
    class_cal: dict = {}
    if cfg.class_calib_images > 0 and split.calib and class_calibration is not None:  # every process solves its share
        class_cal = class_calibration(trainer, dataset, split.calib)
        trainer.calibration.update(class_cal)
    if rank == 0:
        ckpt.snapshot(trainer, out, config_yaml)
    summary = {"epochs": cfg.epochs, "images": len(split.train), "calibration_images": len(split.calib),
               "final_loss": curves["loss"][-1] if curves["loss"] else float("nan"),
               "calib_accuracy": float(trainer.calibration.get("accuracy", float("nan"))), "categories": cats,
               "chance": 1.0 / len(cats), "rank": rank, "world": world,
               "class_calib_images": int(class_cal.get("class_images", 0)),
               "class_accuracy_raw": float(class_cal.get("class_accuracy_raw", float("nan"))),
               "class_accuracy": float(class_cal.get("class_accuracy", float("nan"))),
               "distance_factor": float(class_cal.get("distance_factor", 1.0)),
               "distance_images": int(class_cal.get("distance_images", 0)),
               "view_loss": float(trainer.calibration["view_loss"][-1]) if "view_loss" in trainer.calibration else float("nan")}
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return summary
