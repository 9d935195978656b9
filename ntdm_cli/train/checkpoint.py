"""Training checkpoints: the model artifact plus the optimiser and scheduler state, and resuming from one.

A checkpoint is a model artifact (model.io) with a ``train_state`` group: the epoch reached, the Adam
state per parameter and the scheduler's state. All randomness of training derives from
(seed, epoch, step), so resuming at an epoch boundary reproduces the uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ntdm_cli.errors import NtdmUsageError, short
from ntdm_cli.model.io import load_model, save_model

#: the training curves, one value per epoch
CURVES = ("loss", "inner", "cross", "ml", "calib_accuracy", "lr", "images_per_s")


def optimizer_state(optimizer: torch.optim.Optimizer, scheduler) -> dict:
    """The optimiser's per-parameter tensors and its and the scheduler's settings, as artifact data."""
    sd = optimizer.state_dict()
    state = {str(k): {kk: torch.as_tensor(vv) for kk, vv in v.items()} for k, v in sd["state"].items()}
    return {"optimizer_state": state, "optimizer_groups": json.dumps(sd["param_groups"]),
            "scheduler": json.dumps(scheduler.state_dict())}


def load_optimizer_state(optimizer, scheduler, st: dict) -> None:
    """Restore what :func:`optimizer_state` stored."""
    groups = json.loads(st["optimizer_groups"])
    state = {int(k): {kk: torch.from_numpy(np.asarray(vv)) for kk, vv in v.items()}
             for k, v in (st.get("optimizer_state") or {}).items()}
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(json.loads(st["scheduler"]))


def snapshot(trainer, path: Path, config_yaml: str, epoch: int | None = None) -> None:
    """Write the trainer's model to ``path``; with ``epoch``, as a checkpoint resumable at that epoch."""
    state = None
    if epoch is not None:
        state = {"epoch": np.int64(epoch), **optimizer_state(trainer.optimizer, trainer.scheduler)}
    save_model(path, trainer.model(with_history=True), config_yaml, train_state=state)


def resume(trainer, path: Path) -> int:
    """Load checkpoint ``path`` into ``trainer`` (backbone, textures, bank, ω, optimiser, scheduler,
    curves, fast-classifier calibration); returns the epoch to continue from. Refuses a checkpoint
    trained with other categories or model dimensions."""
    cfg, cats = trainer.cfg, trainer.categories
    model, state, _ = load_model(path, trainer.device, with_state=True)
    if state is None:
        raise NtdmUsageError(f"--resume {path}: not a checkpoint (no train_state)")
    theirs = {"categories": ",".join(model.categories), "train.texture_size": model.texture_size,
              "train.backbone": model.backbone_name, "train.feature_dim": model.feature_dim,
              "train.num_bins": model.num_bins, "train.zoom": model.zoom}
    ours = {"categories": ",".join(cats), "train.texture_size": cfg.texture_size, "train.backbone": cfg.backbone,
            "train.feature_dim": cfg.feature_dim, "train.num_bins": cfg.num_bins, "train.zoom": float(cfg.zoom)}
    differ = [f"{k} is {theirs[k]} there, {ours[k]} here" for k in ours if str(theirs[k]) != str(ours[k])]
    if differ:
        raise NtdmUsageError(f"--resume {short(path)}: the checkpoint was trained with other settings "
                             f"({'; '.join(differ)})")
    trainer.backbone.load_state_dict(model.backbone.state_dict())
    trainer.textures = [model.textures[c] for c in cats]
    trainer.bank = model.bank
    trainer.omega = model.omega if model.omega is not None else trainer.omega
    load_optimizer_state(trainer.optimizer, trainer.scheduler, state)
    trainer.curves = {k: list(np.asarray(v).tolist()) for k, v in model.curves.items()}
    trainer.calibration = {k: v for k, v in model.calibration.items() if not k.startswith(("class_", "loss_"))}
    for k in CURVES:
        trainer.curves.setdefault(k, [])
    return int(state["epoch"])
