"""Classification from the per-category render-and-compare losses, and its calibration.

The class of an image is the category whose optimised loss (eq. 10) is lowest (NTDM sec. 3.4). The
losses of different categories are not on one scale: a well-fitted texture lowers its category's loss
on every image, a larger template explains more pixels, so the category that wins close calls moves
from one training to the next (README Results: sofa, then chair, collapsed into bus).

Calibration fits one offset per category b_c and a temperature T on held-out training images (the
calibration split) by multinomial logistic regression on the negative losses::

    p(c | x) = softmax_c(−(L_c(x) − b_c) / T)

and the calibrated class is argmin_c L_c(x) − b_c. Offsets and T are in loss units; offsets sum to 0.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ntdm_cli.errors import NtdmUsageError


def fit_loss_calibration(losses: np.ndarray, labels: np.ndarray, reg: float = 1e-2, steps: int = 600) -> dict:
    """Per-category loss offsets and a temperature from solved calibration images.

    Args:
        losses: (N, C) float, optimised loss of every category on each image (all finite).
        labels: (N,) int in [0, C), the true category of each image.
        reg: L2 weight on the offsets, in units of the losses' spread (keeps categories with few or
            no calibration images near 0 and the fit stable when a split separates perfectly).
    Returns:
        dict(loss_offsets (C,) float64 summing to 0, loss_temperature float (loss units),
        loss_accuracy_raw / loss_accuracy: in-sample accuracy of argmin L and argmin L − b,
        loss_images: N)."""
    L = np.asarray(losses, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if L.ndim != 2 or y.shape != (L.shape[0],):
        raise NtdmUsageError(f"calibration: losses (N, C) and labels (N,) expected, got {L.shape} and {y.shape}")
    N, C = L.shape
    if N and not np.isfinite(L).all():
        raise NtdmUsageError("calibration: every category must be solved on every calibration image (non-finite loss)")
    if N and (y.min() < 0 or y.max() >= C):
        raise NtdmUsageError(f"calibration: labels must be in [0, {C})")
    raw = np.float64((L.argmin(1) == y).mean()) if N else np.float64(float("nan"))
    out = {"loss_offsets": np.zeros(C), "loss_temperature": np.float64(1.0), "loss_images": np.int64(N),
           "loss_accuracy_raw": raw, "loss_accuracy": raw}
    if N == 0 or C < 2:
        return out
    centred = L - L.mean(1, keepdims=True)  # each image's own level cancels in the softmax
    spread = float(centred.std())
    if not spread > 0:  # every category explains every image equally: nothing to calibrate
        return out
    x = torch.tensor(centred / spread)
    target = torch.tensor(y)
    b = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = 0.05 + softplus(t): bounded below
    opt = torch.optim.Adam([b, t], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        T = 0.05 + torch.nn.functional.softplus(t)
        nll = torch.nn.functional.cross_entropy(-(x - b) / T, target)
        (nll + reg * (b * b).sum()).backward()
        opt.step()
    with torch.no_grad():
        offsets = ((b - b.mean()) * spread).numpy()
        T = float((0.05 + torch.nn.functional.softplus(t)) * spread)
    out.update(loss_offsets=offsets, loss_temperature=np.float64(T),
               loss_accuracy=np.float64(((L - offsets).argmin(1) == y).mean()))
    return out


def classify(losses: dict[str, float], categories: list[str], calibration: dict | None) -> tuple[str, dict[str, float]]:
    """The class of one image and the probability of each category tried.

    Args:
        losses: optimised loss of each category tried ({name: loss}).
        categories: the model's categories (the order of ``calibration['loss_offsets']``).
        calibration: the model's calibration dict; without ``loss_offsets`` (or None) the class is
            the plain argmin of the losses and the probabilities use T = 0.01.
    Returns:
        (category, {name: probability over the tried categories})."""
    names = list(losses)
    L = np.array([losses[c] for c in names], dtype=np.float64)
    offsets = np.zeros(len(names))
    T = 0.01
    if calibration is not None and "loss_offsets" in calibration:
        table = np.asarray(calibration["loss_offsets"], dtype=np.float64)
        offsets = np.array([table[categories.index(c)] for c in names])
        T = float(calibration.get("loss_temperature", T))
    score = L - offsets
    score = np.where(np.isfinite(score), score, math.inf)
    if not np.isfinite(score).any():  # nothing solved to a finite loss: no preference
        return names[0], {c: 1.0 / len(names) for c in names}
    best = int(np.argmin(score))
    z = -(score - score[best]) / T
    p = np.exp(z)
    p /= p.sum()
    return names[best], dict(zip(names, p.tolist()))


def solve_category_losses(model, inputs: list, cfg, device, label: str = "calibrate classes") -> np.ndarray:
    """The optimised loss of every category on each input: (N, C) float64, C = model.categories.

    Args:
        model: NTDMModel (backbone in eval mode).
        inputs: InferInput list, preprocessed like inference inputs (the model's union crop).
        cfg: InferConfig of the inference the losses are for (its shortlist is ignored: every
            category is solved)."""
    import dataclasses

    from ntdm_cli.console import progress
    from ntdm_cli.infer.pipeline import infer_batch

    cfg = dataclasses.replace(cfg, shortlist=0, calibrated=False)
    generator = torch.Generator().manual_seed(0)
    matrix = np.full((len(inputs), len(model.categories)), np.nan)
    with progress() as prog:
        task = prog.add_task(label, total=len(inputs), info="")
        for s in range(0, len(inputs), cfg.batch_images):
            chunk = inputs[s:s + cfg.batch_images]
            for j, p in enumerate(infer_batch(chunk, model, cfg, device, generator)):
                matrix[s + j] = [p.category_losses[c] for c in model.categories]
            prog.update(task, advance=len(chunk))
    return matrix


def fit_with_matrix(matrix: np.ndarray, labels) -> dict:
    """:func:`fit_loss_calibration` plus the data it was fitted on (loss_matrix, loss_labels)."""
    labels = np.asarray(labels, dtype=np.int64)
    fit = fit_loss_calibration(matrix, labels)
    fit.update(loss_matrix=np.asarray(matrix, dtype=np.float64), loss_labels=labels)
    return fit
