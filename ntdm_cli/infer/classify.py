"""Classification from the per-category render-and-compare losses, and its calibration.

The class of an image is the category whose optimised loss (eq. 10) is lowest (NTDM sec. 3.4).
Equivalently, it is the category with the most *evidence* E_c = L_bg − L_c, where L_bg is the loss of
the object-absent hypothesis (every pixel background: 1 − mean max_β f·β, the same for every category
of an image). E_c ≥ 0 is what the category's mesh explains better than clutter.

The evidence of different categories is not on one scale: a better-fitted texture or a larger template
earns more of it on every image, so without calibration the category that wins close calls moves from
one training to the next, and one category can absorb others. Calibration fits one
gain per category w_c and a temperature T on held-out training images (the calibration split) by
multinomial logistic regression::

    p(c | x) = softmax_c(w_c · E_c(x) / T),    class = argmax_c w_c · E_c(x)

A gain rather than an offset: under occlusion every category's evidence shrinks, and a gain shrinks its
correction with it, where an additive offset would come to dominate the little evidence left and hand
occluded images to the category with the largest offset (see the method notes in docs/).
Gains have geometric mean 1; T is in loss units.
"""

from __future__ import annotations

import numpy as np
import torch

from ntdm_cli.errors import NtdmUsageError


def background_loss(bg_scores: torch.Tensor) -> torch.Tensor:
    """L_bg (B,): the loss (eq. 10) of the object-absent hypothesis, 1 − mean over pixels of max_β f·β.

    Args:
        bg_scores: (B, h, w) background scores (infer.solver.background_scores; zeros for the ablation
            without a background model, which gives L_bg = 1)."""
    return 1 - bg_scores.mean((1, 2))


def fit_class_calibration(losses: np.ndarray, bg_loss: np.ndarray, labels: np.ndarray, reg: float = 1e-2,
                          steps: int = 600) -> dict:
    """Per-category evidence gains and a temperature from solved calibration images.

    Args:
        losses: (N, C) float, optimised loss of every category on each image (all finite).
        bg_loss: (N,) float, each image's object-absent loss L_bg.
        labels: (N,) int in [0, C), the true category of each image.
        reg: L2 weight on the log gains (keeps categories with few or no calibration images near 1 and
            the fit stable when a split separates perfectly).
    Returns:
        dict(class_weights (C,) float64, geometric mean 1; class_temperature float (loss units);
        class_accuracy_raw / class_accuracy: in-sample accuracy of argmin L and of argmax w·E;
        class_images: N)."""
    L = np.asarray(losses, dtype=np.float64)
    bg = np.asarray(bg_loss, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if L.ndim != 2 or y.shape != (L.shape[0],) or bg.shape != (L.shape[0],):
        raise NtdmUsageError(f"calibration: losses (N, C), bg_loss (N,) and labels (N,) expected, got {L.shape}, "
                             f"{bg.shape} and {y.shape}")
    N, C = L.shape
    if N and not (np.isfinite(L).all() and np.isfinite(bg).all()):
        raise NtdmUsageError("calibration: every category must be solved on every calibration image (non-finite loss)")
    if N and (y.min() < 0 or y.max() >= C):
        raise NtdmUsageError(f"calibration: labels must be in [0, {C})")
    raw = np.float64((L.argmin(1) == y).mean()) if N else np.float64(float("nan"))
    out = {"class_weights": np.ones(C), "class_temperature": np.float64(0.01), "class_images": np.int64(N),
           "class_accuracy_raw": raw, "class_accuracy": raw}
    if N == 0 or C < 2:
        return out
    evidence = bg[:, None] - L
    spread = float(evidence.std())
    if not spread > 0:  # every category explains every image equally: nothing to calibrate
        return out
    x = torch.tensor(evidence / spread)
    target = torch.tensor(y)
    log_w = torch.zeros(C, dtype=torch.float64, requires_grad=True)
    t = torch.zeros((), dtype=torch.float64, requires_grad=True)  # T = 0.05 + softplus(t): bounded below
    opt = torch.optim.Adam([log_w, t], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        T = 0.05 + torch.nn.functional.softplus(t)
        nll = torch.nn.functional.cross_entropy(x * log_w.exp() / T, target)
        (nll + reg * (log_w * log_w).sum()).backward()
        opt.step()
    with torch.no_grad():
        weights = (log_w - log_w.mean()).exp().numpy()
        T = float((0.05 + torch.nn.functional.softplus(t)) * spread * np.exp(-float(log_w.mean())))
    out.update(class_weights=weights, class_temperature=np.float64(T),
               class_accuracy=np.float64(((evidence * weights).argmax(1) == y).mean()))
    return out


def classify(losses: dict[str, float], bg_loss: float, categories: list[str],
             calibration: dict | None) -> tuple[str, dict[str, float]]:
    """The class of one image and the probability of each category tried.

    Args:
        losses: optimised loss of each category tried ({name: loss}).
        bg_loss: the image's object-absent loss L_bg (:func:`background_loss`).
        categories: the model's categories (the order of ``calibration['class_weights']``).
        calibration: the model's calibration dict; without ``class_weights`` (or None) the class is the
            plain argmin of the losses (all gains 1) and the probabilities use T = 0.01.
    Returns:
        (category, {name: probability over the tried categories})."""
    names = list(losses)
    E = bg_loss - np.array([losses[c] for c in names], dtype=np.float64)
    weights = np.ones(len(names))
    T = 0.01
    if calibration is not None and "class_weights" in calibration:
        table = np.asarray(calibration["class_weights"], dtype=np.float64)
        weights = np.array([table[categories.index(c)] for c in names])
        T = float(calibration.get("class_temperature", T))
    score = np.where(np.isfinite(E), weights * E, -np.inf)
    if not np.isfinite(score).any():  # nothing solved to a finite loss: no preference
        return names[0], {c: 1.0 / len(names) for c in names}
    best = int(np.argmax(score))
    p = np.exp((score - score[best]) / T)
    p /= p.sum()
    return names[best], dict(zip(names, p.tolist()))


def fit_with_data(losses: np.ndarray, bg_loss: np.ndarray, labels) -> dict:
    """:func:`fit_class_calibration` plus the data it was fitted on (class_losses (N, C),
    class_background_loss (N,), class_labels (N,)), so the fit can be inspected or redone."""
    labels = np.asarray(labels, dtype=np.int64)
    fit = fit_class_calibration(losses, bg_loss, labels)
    fit.update(class_losses=np.asarray(losses, dtype=np.float64),
               class_background_loss=np.asarray(bg_loss, dtype=np.float64), class_labels=labels)
    return fit
