"""The model artifact (kind ``model``): backbone weights, neural textures, background bank, the
deformers used, the category list, confusion weights, training curves and (in checkpoints) the
training state needed to resume.

Layout::

    attrs: backbone, feature_dim, num_bins, texture_size, bin_temperature, categories (comma list),
           crop_hw, target_distance, zoom, pose_prior (JSON: each category's viewpoint prior),
           view_classifier (JSON, when the model has one)
    backbone/<state-dict key>            tensors of the feature extractor
    textures/<category>/theta            (b, q, q, d) float32
    textures/<category>/counts           (b, q, q) float32 accumulated visibility
    bank/features (B, d), bank/ptr, bank/filled
    deformers/<category>/...             the category's deformer (geometry.deformer layout)
    categories (C,) str, omega (C, C), curves/<name> (epochs,)
    calibration/{accuracy, confusion (C, C), epoch}      the fast classifier on the calibration split
    calibration/{class_weights (C,), class_temperature,  the class calibration of render-and-compare
                 class_accuracy_raw, class_accuracy,     (infer.classify), fitted after the last epoch
                 class_images, class_losses (N, C),      on N held-out training images
                 class_background_loss (N,), class_labels (N,)}
    calibration/{distance_factor, distance_images,       the distance calibration: what the solver's
                 distance_log_ratios (N,)}               distances are multiplied by (infer.distance_calibrated),
                                                         from the same solves (NaN: not used)
    view/<state-dict key>                the view classifier (model.view_classifier), when trained;
                                         calibration/view_loss (view epochs,) its training curve
    train_state/...                      checkpoints only: epoch, optimizer, scheduler
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ntdm_cli.artifacts import read_artifact, write_artifact
from ntdm_cli.errors import ArtifactError, short
from ntdm_cli.geometry.deformer import Deformer, deformer_from_artifact_data, deformer_to_artifact_data
from ntdm_cli.model.backbone import make_backbone
from ntdm_cli.model.pose_prior import PosePrior, priors_from_json
from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
from ntdm_cli.model.view_classifier import ViewClassifier


@dataclass
class NTDMModel:
    """Everything inference needs. textures/deformers are keyed by category name."""

    backbone_name: str
    backbone: torch.nn.Module
    categories: list[str]
    textures: dict[str, NeuralTexture]
    bank: BackgroundBank
    deformers: dict[str, Deformer]
    bin_temperature: float = 5.0
    omega: torch.Tensor | None = None
    curves: dict[str, np.ndarray] = field(default_factory=dict)
    calibration: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # crop_hw "H,W", target_distance and zoom of the training crops;
    #   pose_prior: the categories' viewpoint priors (model.pose_prior, JSON)
    view: ViewClassifier | None = None  # p(azimuth | image, category) (model.view_classifier), when trained

    @property
    def feature_dim(self) -> int:
        return next(iter(self.textures.values())).dim

    @property
    def num_bins(self) -> int:
        return next(iter(self.textures.values())).num_bins

    @property
    def texture_size(self) -> int:
        return next(iter(self.textures.values())).size

    @property
    def zoom(self) -> float:
        """How many times larger than the dataset's own crops the training objects were (train.zoom;
        1 for models written before it was recorded)."""
        return float(self.extra.get("zoom", 1.0))

    @property
    def hole_gap(self) -> float:
        """The threshold of the holes its training rendered (train.hole_gap; geometry.holes): inference
        renders hypotheses the same way. 0 (the closed mesh) for models written before it existed."""
        return float(self.extra.get("hole_gap", 0.0))

    @property
    def distance_factor(self) -> float:
        """What inference multiplies the answer's camera distance by (calibration/distance_factor: the
        trimmed mean ratio of annotated to solved distance on held-out training images,
        ntdm_cli.calibration); 1 for models written before it was fitted."""
        return float(self.calibration.get("distance_factor", 1.0))

    @property
    def pose_priors(self) -> dict[str, PosePrior]:
        """Each category's viewpoint prior, learned from its training annotations (empty for models
        written before priors were stored)."""
        return priors_from_json(self.extra.get("pose_prior"))

    def to(self, device) -> "NTDMModel":
        self.backbone.to(device)
        for t in self.textures.values():
            t.theta = t.theta.to(device)
            t.counts = t.counts.to(device)
        self.bank.features = self.bank.features.to(device)
        for d in self.deformers.values():
            d.to(device)
        if self.view is not None:
            self.view.to(device)
        return self


def model_data(model: NTDMModel, train_state: dict | None = None) -> tuple[dict, dict]:
    """(datasets, attrs) of the model artifact."""
    data: dict = {
        "backbone": {k: v.detach().cpu() for k, v in model.backbone.state_dict().items()},
        "textures": {c: {"theta": t.theta.cpu(), "counts": t.counts.cpu()} for c, t in model.textures.items()},
        "bank": {"features": model.bank.features.cpu(), "ptr": np.int64(model.bank.ptr),
                 "filled": np.int64(model.bank.filled)},
        "deformers": {c: deformer_to_artifact_data(d) for c, d in model.deformers.items()},
        "categories": list(model.categories),
    }
    if model.omega is not None:
        data["omega"] = model.omega.cpu()
    if model.curves:
        data["curves"] = {k: np.asarray(v, dtype=np.float64) for k, v in model.curves.items()}
    if model.calibration:
        data["calibration"] = {k: np.asarray(v) for k, v in model.calibration.items()}
    if model.view is not None:
        data["view"] = {k: v.detach().cpu() for k, v in model.view.state_dict().items()}
    if train_state is not None:
        data["train_state"] = train_state
    attrs = {"backbone": model.backbone_name, "feature_dim": model.feature_dim, "num_bins": model.num_bins,
             "texture_size": model.texture_size, "bin_temperature": model.bin_temperature,
             "categories": ",".join(model.categories)}
    attrs.update({k: v for k, v in model.extra.items()})
    if model.view is not None:
        attrs["view_classifier"] = json.dumps(model.view.config())
    return data, attrs


def save_model(path, model: NTDMModel, config_yaml: str = "", train_state: dict | None = None) -> Path:
    data, attrs = model_data(model, train_state)
    return write_artifact(path, "model", data, config_yaml=config_yaml, attrs=attrs)


def _load_view(art, path) -> ViewClassifier | None:
    """The stored view classifier (None when the model has none); a damaged one is named."""
    if "view_classifier" not in art.attrs:
        return None
    try:
        view = ViewClassifier(**json.loads(str(art.attrs["view_classifier"])))
        view.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in art["view"].items()})
    except (KeyError, ValueError, RuntimeError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{path}: damaged view classifier (attribute view_classifier, group view/): "
                            f"{exc.__class__.__name__}: {short(' '.join(str(exc).split()), 200)}")
    return view.eval()


def load_model(path, device="cpu", with_state: bool = False):
    """Read a model artifact. Returns the NTDMModel (and the raw train_state dict when asked)."""
    art = read_artifact(path, "model")
    try:
        name = str(art.attrs["backbone"])
        dim = int(art.attrs["feature_dim"])
        backbone = make_backbone(name, dim)
        state = {k: torch.from_numpy(np.asarray(v)) for k, v in art["backbone"].items()}
        backbone.load_state_dict(state)
        backbone.eval()  # inference mode (running BatchNorm statistics); training sets train() itself
        categories = list(art["categories"])
        textures = {c: NeuralTexture.from_tensors(torch.from_numpy(np.asarray(art[f"textures/{c}/theta"])),
                                                  torch.from_numpy(np.asarray(art[f"textures/{c}/counts"])))
                    for c in categories}
        bank = BackgroundBank.from_tensors(torch.from_numpy(np.asarray(art["bank/features"])),
                                           int(art["bank/ptr"]), int(art["bank/filled"]))
        deformers = {c: deformer_from_artifact_data(art[f"deformers/{c}"], where=f"{path}:deformers/{c}")
                     for c in categories}
        priors_from_json(art.attrs.get("pose_prior"))  # a damaged prior is reported here, not mid-inference
        view = _load_view(art, path)
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise ArtifactError(f"{path}: damaged model artifact ({exc.__class__.__name__}: {exc})")
    omega = art.get("omega")
    model = NTDMModel(
        backbone_name=name, backbone=backbone, categories=categories, textures=textures, bank=bank,
        deformers=deformers, bin_temperature=float(art.attrs.get("bin_temperature", 5.0)),
        omega=torch.from_numpy(np.asarray(omega)).float() if omega is not None else None,
        curves=dict(art.get("curves", {}) or {}), calibration=dict(art.get("calibration", {}) or {}),
        extra={k: art.attrs[k] for k in ("crop_hw", "target_distance", "zoom", "pose_prior") if k in art.attrs},
        view=view,
    ).to(device)
    if not 0.5 <= model.distance_factor <= 2.0:  # NaN fails too
        raise ArtifactError(f"{path}: damaged model artifact (calibration/distance_factor "
                            f"{model.distance_factor!r} is not in [0.5, 2])")
    if with_state:
        return model, art.get("train_state"), art
    return model
