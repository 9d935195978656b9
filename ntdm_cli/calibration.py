"""Class calibration: the classifier's per-category evidence gains, fitted on solved training images.

Sits above train and infer (it drives inference on the training set's calibration split): after the
last epoch, ``ntdm train-textures`` solves ``train.class_calib_images`` images per category for every
category by render-and-compare, exactly as ``ntdm infer`` would, and fits the gains of
infer.classify on the loss matrices. The fitted entries are stored with the model (model.io).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from ntdm_cli.console import progress
from ntdm_cli.infer.classify import fit_with_data
from ntdm_cli.infer.pipeline import infer_batch, input_from_sample
from ntdm_cli.infer.solver import InferConfig
from ntdm_cli.model.backbone import evaluating
from ntdm_cli.train.distributed import all_gather_rows, broadcast_buffers, rank_and_world


def solve_category_losses(model, inputs: list, cfg, device,
                          label: str = "calibrate classes") -> tuple[np.ndarray, np.ndarray]:
    """The optimised loss of every category on each input and each input's object-absent loss.

    Args:
        model: NTDMModel (backbone in eval mode).
        inputs: InferInput list, preprocessed like inference inputs (the model's union crop).
        cfg: InferConfig of the inference the losses are for (its shortlist is ignored: every
            category is solved).
    Returns:
        losses (N, C) float64 (C = model.categories), bg_loss (N,) float64."""
    cfg = dataclasses.replace(cfg, shortlist=0, calibrated=False)
    generator = torch.Generator().manual_seed(0)
    matrix = np.full((len(inputs), len(model.categories)), np.nan)
    bg = np.full(len(inputs), np.nan)
    with progress() as prog:
        task = prog.add_task(label, total=len(inputs), info="")
        for s in range(0, len(inputs), cfg.batch_images):
            chunk = inputs[s:s + cfg.batch_images]
            for j, p in enumerate(infer_batch(chunk, model, cfg, device, generator)):
                matrix[s + j] = [p.category_losses[c] for c in model.categories]
                bg[s + j] = p.background_loss
            prog.update(task, advance=len(chunk))
    return matrix, bg


def calibrate_class_losses(trainer, dataset, calib: list[int], infer_cfg: InferConfig | None = None) -> dict:
    """Fit the classifier's per-category evidence gains (infer.classify) on the first
    ``trainer.cfg.class_calib_images`` images per category of the calibration split ``calib`` (hash
    order) of ``dataset`` (train.data.TrainingSet), each solved for every category by render-and-compare
    as ``ntdm infer`` would with ``infer_cfg`` (default settings when None). Under torchrun every
    process solves its share of the images and the loss matrices are gathered, so each process fits
    the same gains. Returns the calibration entries (class_weights (C,), class_temperature,
    class_accuracy_raw, class_accuracy, class_images, class_losses (N, C), class_background_loss (N,),
    class_labels (N,))."""
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
        local, local_bg = solve_category_losses(model, inputs, infer_cfg, device)
    local = np.concatenate([local, local_bg[:, None]], 1)  # (n, C + 1): losses, then L_bg
    if world > 1:  # rank r solved chosen[r::world]: gather the shares back into chosen's order
        parts = all_gather_rows(torch.from_numpy(local).to(device))
        matrix = np.empty((len(chosen), len(cats) + 1))
        for r, part in enumerate(parts):
            matrix[r::world] = part.cpu().numpy()
    else:
        matrix = local
    return fit_with_data(matrix[:, :-1], matrix[:, -1], [dataset.cat_index[i] for i in chosen])


def class_calibrator(infer_cfg: InferConfig | None = None):
    """The ``class_calibration`` stage of train.loop.train_textures, solving with ``infer_cfg``."""

    def calibrate(trainer, dataset, calib: list[int]) -> dict:
        return calibrate_class_losses(trainer, dataset, calib, infer_cfg)

    return calibrate
