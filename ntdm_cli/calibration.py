"""Calibration on solved training images: the classifier's per-category evidence gains and the
answers' distance factor.

Sits above train and infer (it drives inference on the training set's calibration split): after the
last epoch, ``ntdm train-textures`` solves ``train.class_calib_images`` images per category for every
category by render-and-compare, exactly as ``ntdm infer`` would, and fits the gains of
infer.classify on the loss matrices. From the same solves it fits the distance factor: the loss
never charges a hypothesis for covering background (a covered pixel scores max(f·f′, background)),
so the solved camera distance comes out a few per cent short and the silhouette too large; the
(trimmed) mean ratio of annotated to solved distance over the answers with the right class and pose
corrects it (infer.distance_calibrated). The fitted entries are stored with the model (model.io).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch

from ntdm_cli.console import progress
from ntdm_cli.infer.classify import fit_with_data
from ntdm_cli.infer.pipeline import infer_batch, input_from_sample
from ntdm_cli.infer.solver import InferConfig
from ntdm_cli.metrics import PI_6, viewpoint_error
from ntdm_cli.model.backbone import evaluating
from ntdm_cli.train.distributed import all_gather_rows, broadcast_buffers, rank_and_world


def distance_log_ratio(pred) -> float:
    """log(annotated / solved camera distance) of a prediction (infer.pipeline.Prediction) whose input
    is annotated, when its class is the annotated one and its pose is within π/6 of the annotation
    (a wrong pose's distance says nothing about the bias); NaN otherwise. Both distances are in the
    crop frame."""
    ann = pred.inp.annotation
    if ann is None or pred.category != ann.category:
        return float("nan")
    best = pred.result.best
    angles = [float(best.azimuth[0]), float(best.elevation[0]), float(best.theta[0])]
    if float(viewpoint_error(angles, [ann.azimuth, ann.elevation, ann.theta])[0]) >= PI_6:
        return float("nan")
    return math.log(ann.distance / float(best.distance[0]))


def fit_distance_factor(log_ratios, min_images: int = 3, trim: float = 0.1) -> dict:
    """The distance calibration entries from the log-ratios (N,) of :func:`distance_log_ratio` (NaN:
    unused): distance_factor = exp of their mean with the ``trim`` fraction cut off each end (the bias
    is one-sided, so the ratios are skewed and a median of a few dozen under-reads it; the trim keeps a
    stray distance out), 1 when fewer than ``min_images`` are finite; distance_images = how many were
    used; distance_log_ratios = the input."""
    r = np.asarray(log_ratios, dtype=np.float64).reshape(-1)
    used = np.sort(r[np.isfinite(r)])
    cut = int(trim * len(used))
    factor = float(np.exp(used[cut:len(used) - cut].mean())) if len(used) >= min_images else 1.0
    return {"distance_factor": np.float64(factor), "distance_images": np.int64(len(used)),
            "distance_log_ratios": r}


def solve_category_losses(model, inputs: list, cfg, device,
                          label: str = "calibrate classes") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The optimised loss of every category on each input, each input's object-absent loss, and the
    distance log-ratio of each input's answer (:func:`distance_log_ratio`).

    Args:
        model: NTDMModel (backbone in eval mode).
        inputs: InferInput list, preprocessed like inference inputs (the model's union crop).
        cfg: InferConfig of the inference the losses are for (its shortlist is ignored: every
            category is solved; the answers are not distance-calibrated, whatever the model holds).
    Returns:
        losses (N, C) float64 (C = model.categories), bg_loss (N,) float64, log_ratio (N,) float64."""
    cfg = dataclasses.replace(cfg, shortlist=0, calibrated=False, distance_calibrated=False)
    generator = torch.Generator().manual_seed(0)
    matrix = np.full((len(inputs), len(model.categories)), np.nan)
    bg = np.full(len(inputs), np.nan)
    ratio = np.full(len(inputs), np.nan)
    with progress() as prog:
        task = prog.add_task(label, total=len(inputs), info="")
        for s in range(0, len(inputs), cfg.batch_images):
            chunk = inputs[s:s + cfg.batch_images]
            for j, p in enumerate(infer_batch(chunk, model, cfg, device, generator)):
                matrix[s + j] = [p.category_losses[c] for c in model.categories]
                bg[s + j] = p.background_loss
                ratio[s + j] = distance_log_ratio(p)
            prog.update(task, advance=len(chunk))
    return matrix, bg, ratio


def calibrate_class_losses(trainer, dataset, calib: list[int], infer_cfg: InferConfig | None = None) -> dict:
    """Fit the classifier's per-category evidence gains (infer.classify) on the first
    ``trainer.cfg.class_calib_images`` images per category of the calibration split ``calib`` (hash
    order) of ``dataset`` (train.data.TrainingSet), each solved for every category by render-and-compare
    as ``ntdm infer`` would with ``infer_cfg`` (default settings when None). Under torchrun every
    process solves its share of the images and the loss matrices are gathered, so each process fits
    the same gains. Returns the calibration entries (class_weights (C,), class_temperature,
    class_accuracy_raw, class_accuracy, class_images, class_losses (N, C), class_background_loss (N,),
    class_labels (N,)) and the distance calibration's (:func:`fit_distance_factor`)."""
    cats, backbone, device = trainer.categories, trainer.backbone, trainer.device
    infer_cfg = infer_cfg if infer_cfg is not None else InferConfig()
    if infer_cfg.init_distance <= 0:  # as `ntdm infer`: start at the training distance
        infer_cfg = dataclasses.replace(infer_cfg, init_distance=float(dataset.target_distance))
    chosen: list[int] = []
    for c in range(len(cats)):
        chosen += [i for i in calib if dataset.cat_index[i] == c][: trainer.cfg.class_calib_images]
    rank, world = rank_and_world()
    mine = chosen[rank::world]
    broadcast_buffers(backbone)
    for c in cats:
        trainer.deformers[c].requires_grad_(False)  # fixed during training too (shapes precomputed)
    model = trainer.model()
    inputs = [input_from_sample(dataset.dataset[i], dataset.crop_hw, dataset.target_distance) for i in mine]
    with evaluating(backbone), torch.enable_grad():  # the pose solver differentiates the loss
        local, local_bg, local_ratio = solve_category_losses(model, inputs, infer_cfg, device)
    local = np.concatenate([local, local_bg[:, None], local_ratio[:, None]], 1)  # (n, C + 2): losses, L_bg, log-ratio
    if world > 1:  # rank r solved chosen[r::world]: gather the shares back into chosen's order
        parts = all_gather_rows(torch.from_numpy(local).to(device))
        matrix = np.empty((len(chosen), len(cats) + 2))
        for r, part in enumerate(parts):
            matrix[r::world] = part.cpu().numpy()
    else:
        matrix = local
    entries = fit_with_data(matrix[:, :-2], matrix[:, -2], [dataset.cat_index[i] for i in chosen])
    entries.update(fit_distance_factor(matrix[:, -1]))
    return entries


def class_calibrator(infer_cfg: InferConfig | None = None):
    """The ``class_calibration`` stage of train.loop.train_textures, solving with ``infer_cfg``."""

    def calibrate(trainer, dataset, calib: list[int]) -> dict:
        return calibrate_class_losses(trainer, dataset, calib, infer_cfg)

    return calibrate
