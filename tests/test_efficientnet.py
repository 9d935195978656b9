"""The ImageNet-pretrained EfficientNet-Lite: weights, names, padding and input scaling proven on real
photos; checkpoint errors; the ntdm backbone built on it (output contract, frozen body, gradients)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ntdm_cli.errors import NtdmError
from ntdm_cli.model.backbone import EffNetLiteBackbone, make_backbone
from ntdm_cli.model.efficientnet import (EfficientNetLite, checkpoint_path, load_checkpoint, pretrained_classifier,
                                         same_padding)

skimage_data = pytest.importorskip("skimage.data")


def _photo(name: str) -> torch.Tensor:
    """A scikit-image sample photo as (1, 3, 224, 224) float in [0, 1]."""
    im = getattr(skimage_data, name)()[..., :3]
    x = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None].float() / 255
    return F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)


@pytest.fixture(scope="module", params=["lite0", "lite1", "lite2"])
def classifier(request):
    return pretrained_classifier(request.param)


@pytest.mark.parametrize("photo, classes", [("chelsea", range(281, 286)), ("coffee", [967])])
def test_imagenet_classifier_names_real_photos(classifier, photo, classes):
    """Our module with the shipped checkpoint puts a cat among the cat classes (281-285) and an
    espresso at class 967, with high confidence: only right names, padding, scaling and (Lite1/2)
    width and depth scaling do that."""
    with torch.no_grad():
        p = classifier(_photo(photo)).softmax(-1)[0]
    top = int(p.argmax())
    assert top in classes, (classifier.variant, photo, top, float(p.max()))
    assert float(p[list(classes)].sum()) > 0.6


def test_lite_variants_scale_width_and_depth_as_their_checkpoints():
    """Lite1 deepens stages 1-5 (21 blocks, Lite0's widths), Lite2 also widens them (×1.1, rounded to
    multiples of 8); stem and first/last stage repeats are fixed."""
    widths = {v: EfficientNetLite(v, head=False).block_channels for v in ("lite0", "lite1", "lite2")}
    assert len(widths["lite0"]) == 16 and len(widths["lite1"]) == len(widths["lite2"]) == 21
    assert sorted(set(widths["lite1"])) == sorted(set(widths["lite0"])) == [16, 24, 40, 80, 112, 192, 320]
    assert sorted(set(widths["lite2"])) == [16, 24, 48, 88, 120, 208, 352]


def test_same_padding_matches_tensorflow():
    """TF "same": output ceil(H/s); the odd padding pixel goes after (bottom/right)."""
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = same_padding(x, 3, 2)  # total pad 1: none before, one after
    assert y.shape == (1, 1, 5, 5) and torch.equal(y[0, 0, :4, :4], x[0, 0]) and y[0, 0, 4].abs().sum() == 0
    y = same_padding(x, 5, 2)  # total pad 3: one before, two after
    assert y.shape == (1, 1, 7, 7) and torch.equal(y[0, 0, 1:5, 1:5], x[0, 0])
    y = same_padding(torch.zeros(1, 1, 5, 5), 3, 1)
    assert y.shape == (1, 1, 7, 7)


def test_checkpoint_with_a_missing_or_misshaped_tensor_is_one_clear_error(tmp_path):
    state = torch.load(checkpoint_path("lite0"), map_location="cpu", weights_only=True)
    missing = dict(state)
    del missing["_blocks.3._depthwise_conv.weight"]
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(NtdmError, match=r"missing\.pth: checkpoint has no tensor '_blocks\.3\._depthwise_conv\.weight'"):
        load_checkpoint(EfficientNetLite("lite0"), tmp_path / "missing.pth")
    bad = dict(state)
    bad["_bn0.weight"] = torch.zeros(31)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(NtdmError, match=r"bad\.pth: tensor '_bn0\.weight' has shape \(31,\), expected \(32,\)"):
        load_checkpoint(EfficientNetLite("lite0"), tmp_path / "bad.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(NtdmError, match="junk.pth: cannot read"):
        load_checkpoint(EfficientNetLite("lite0"), tmp_path / "junk.pth")


def test_pretrained_backbone_output_contract_and_gradients():
    """(N, d, H/8, W/8), float32, unit length; the loss gradient reaches the head, not a frozen body,
    whose BatchNorm statistics stay as pretrained in training mode."""
    b = make_backbone("effnet-lite0", 24)
    assert isinstance(b, EffNetLiteBackbone) and b.stride == 8
    assert b.load_pretrained() == sum(1 for _ in b.body_parameters()) + 3 * (1 + len(
        [m for m in b._blocks.modules() if isinstance(m, torch.nn.BatchNorm2d)]))  # + running stats and counts
    b.freeze_body()
    b.train()
    before = {k: v.clone() for k, v in b.state_dict().items() if "running" in k and not k.startswith("fuse")}
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    f = b(x)
    assert f.shape == (2, 24, 12, 16) and f.dtype == torch.float32
    assert torch.allclose(f.norm(dim=1), torch.ones(()), atol=1e-5)
    f.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in b.head_parameters())
    assert all(p.grad is None for p in b.body_parameters())
    for k, v in before.items():
        assert torch.equal(b.state_dict()[k], v), k
    # the cached path (body once, head per step) is the same function
    with torch.no_grad():
        torch.testing.assert_close(b(b.body(x)), b(x))


def test_partly_frozen_body_trains_its_last_blocks_from_the_cached_prefix():
    """freeze(8): the stem and blocks 0-7 are fixed (no gradient, BatchNorm in eval mode), blocks 8-10
    and the head learn; forward on the cached prefix output equals forward on the images; a prefix
    that would not contain the stride-8 block is refused."""
    b = make_backbone("effnet-lite0", 16)
    b.load_pretrained()
    b.freeze(8)
    b.train()
    assert b.frozen and not b._blocks[7]._bn1.training and b._blocks[8]._bn1.training
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    s8, mid = b.prefix(x)
    assert s8.shape == (2, 40, 8, 8) and mid.shape[1] == b._blocks[7]._bn2.num_features
    b.eval()
    with torch.no_grad():
        torch.testing.assert_close(b((s8, mid)), b(x))
    b.train()
    b((s8, mid)).sum().backward()
    assert all(p.grad is None for p in b._blocks[7].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in b._blocks[8].parameters())
    with pytest.raises(NtdmError, match="frozen_blocks"):
        b.freeze(3)


def test_folded_body_pass_equals_the_plain_one_and_is_only_used_when_nothing_trains():
    """The fixed body's pass with BatchNorm folded into the convolutions (channels-last) gives the
    plain pass's maps to float rounding, on odd image sizes too (TensorFlow padding), including the
    running statistics loaded from the checkpoint; a body that trains keeps the plain pass, so its
    gradients still reach the blocks' BatchNorms."""
    b = make_backbone("effnet-lite0", 16)
    b.load_pretrained()
    b.freeze_body()
    b.eval()
    x = torch.rand(2, 3, 75, 98, generator=torch.Generator().manual_seed(3))
    assert b._can_fold(len(b._blocks))
    with torch.no_grad():
        folded = b.prefix(x)
    b.fold_batchnorm = False  # the plain pass, same weights
    with torch.no_grad():
        plain = b.prefix(x)
    b.fold_batchnorm = True
    for f, p in zip(folded, plain):
        assert f.shape == p.shape and f.is_contiguous()
        torch.testing.assert_close(f, p, rtol=1e-4, atol=1e-4 * p.abs().max().item())
    b.freeze(0)  # fine-tuning: the body trains
    b.train()
    assert not b._can_fold(len(b._blocks))
    b.eval()
    assert not b._can_fold(len(b._blocks))  # eval mode but the parameters want gradients
    with torch.no_grad():
        assert b._can_fold(len(b._blocks))
    b(x).sum().backward()
    assert b._blocks[0]._bn1.weight.grad is not None and b._blocks[0]._bn1.weight.grad.abs().sum() > 0
