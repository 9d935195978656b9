"""Backbones: the output contract at each stride, and training observes the surface at the backbone's stride."""

import pytest
import torch
import torch.nn.functional as F

from ntdm_cli.errors import NtdmError
from ntdm_cli.model.backbone import SmallBackbone, feature_stride, make_backbone


@pytest.mark.parametrize("name,stride", [("small", 8), ("small-s4", 4)])
def test_small_backbones_output_contract(name, stride):
    """(N, 3, H, W) -> (N, d, H/s, W/s) unit features, s = feature_stride(backbone)."""
    torch.manual_seed(0)
    b = make_backbone(name, 16).eval()
    assert feature_stride(b) == stride
    with torch.no_grad():
        f = b(torch.rand(2, 3, 96, 64))
    assert f.shape == (2, 16, 96 // stride, 64 // stride)
    assert torch.allclose(f.norm(dim=1), torch.ones(2, 96 // stride, 64 // stride), atol=1e-5)
    # the two strides share one parameter layout (a checkpoint of one loads into the other)
    assert make_backbone("small", 16).state_dict().keys() == make_backbone("small-s4", 16).state_dict().keys()


def test_small_backbone_rejects_other_strides():
    with pytest.raises(NtdmError, match="stride must be 4 or 8"):
        SmallBackbone(dim=8, stride=2)


@pytest.mark.parametrize("name", ["small", "small-s4"])
def test_train_step_observes_the_silhouette_at_the_backbone_stride(monkeypatch, name):
    """The surface observed in a training step lies on the object in the image: its mask matches the
    annotated silhouette pooled to the observation grid (a wrong stride would scale it by 2)."""
    from ntdm_cli.model.surface import rasterize_surface
    from ntdm_cli.geometry.template import make_template
    from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
    from ntdm_cli.render import Viewpoint
    from ntdm_cli.train import loop
    from ntdm_cli.train import trainer as trainer_module

    t = make_template(2)
    B, H = 2, 64
    vp = torch.tensor([[0.7 * k, 0.2, 0.0, 150.0, 1.0, 32.0, 32.0, 3000.0] for k in range(B)], dtype=torch.float64)
    verts = t.verts.unsqueeze(0).expand(B, -1, -1).contiguous()
    full = rasterize_surface(verts, t.faces, t.verts_uvs, t.faces_uvs, Viewpoint.from_rows(vp, "cpu"), (H, H), 1.0, 7, 5.0)
    batch = {"image": torch.rand(B, 3, H, H, generator=torch.Generator().manual_seed(0)),
             "category": torch.zeros(B, dtype=torch.long), "cad": torch.zeros(B, dtype=torch.long), "viewpoint": vp,
             "mask": full.mask.clone(), "instance_scale": torch.ones(B, 3)}
    seen = []
    real_observe = trainer_module.observe

    def spy(features, uv, mask, alpha, size):
        seen.append(mask.clone())
        return real_observe(features, uv, mask, alpha, size)

    monkeypatch.setattr(trainer_module, "observe", spy)
    torch.manual_seed(0)
    cfg = loop.TrainConfig(backbone=name, feature_dim=8, texture_size=16, positives=32, negatives=64, bank_size=32,
                           observe_upsample=2)
    backbone = make_backbone(name, 8)
    tex = [NeuralTexture(7, 16, 8, generator=torch.Generator().manual_seed(1))]
    bank = BackgroundBank(32, 8, generator=torch.Generator().manual_seed(2))
    opt = torch.optim.Adam(backbone.parameters(), lr=1e-3)
    trainer = trainer_module.Trainer(cfg, backbone, tex, bank, torch.zeros(1, 1), {(0, 0): t.verts}, t, opt,
                                     device="cpu")
    trainer.step(batch, torch.Generator().manual_seed(3))
    obs = seen[0]
    n = H // feature_stride(backbone) * 2
    assert obs.shape == (B, n, n)
    pooled = F.adaptive_avg_pool2d(full.mask.float().unsqueeze(1), (n, n))[:, 0] > 0.5
    iou = (obs & pooled).sum() / (obs | pooled).sum()
    assert iou > 0.85, float(iou)


def test_amp_modes():
    """train.amp: off never, bf16 always, auto where bf16 is native; anything else is a usage error."""
    from ntdm_cli.errors import NtdmUsageError
    from ntdm_cli.model.backbone import bf16_fast, resolve_amp

    cpu = torch.device("cpu")
    assert resolve_amp("off", cpu) is False and resolve_amp("bf16", cpu) is True
    assert resolve_amp("auto", cpu) is bf16_fast(cpu)
    with pytest.raises(NtdmUsageError, match="train.amp"):
        resolve_amp("fp16", cpu)


@pytest.mark.parametrize("name", ["small", "small-s4", "resnet50-ext"])
def test_bf16_autocast_and_channels_last_keep_the_features(name):
    """The fast paths compute the same function: channels-last is float32-exact, bfloat16 autocast
    stays within a few thousandths of cosine; the output is float32, contiguous, unit length."""
    torch.manual_seed(0)
    b = make_backbone(name, 16).eval()
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        b.channels_last, b.amp = False, False
        ref = b(x)
        b.channels_last = True
        cl = b(x)
        b.amp = True
        half = b(x)
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)
    for f in (cl, half):
        assert f.dtype == torch.float32 and f.is_contiguous()
        assert torch.allclose(f.norm(dim=1), torch.ones(()), atol=1e-5)
    cos = (half * ref).sum(1)  # both unit length
    assert cos.mean() > 0.995 and cos.min() > 0.95, (float(cos.mean()), float(cos.min()))


def test_bf16_training_gradients_follow_float32():
    """One backward pass under bfloat16 autocast gives parameter gradients pointing where float32's do."""
    torch.manual_seed(0)
    b = make_backbone("small", 16)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    target = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    grads = {}
    for amp in (False, True):
        b.zero_grad()
        b.amp = amp
        (b(x) * target).sum().backward()
        grads[amp] = torch.cat([p.grad.flatten() for p in b.parameters()])
    cos = torch.nn.functional.cosine_similarity(grads[False], grads[True], dim=0)
    assert cos > 0.98, float(cos)


def test_evaluating_restores_mode_and_precision():
    from ntdm_cli.model.backbone import evaluating

    b = make_backbone("small", 8).train()
    b.amp = True
    with evaluating(b):
        assert not b.training and b.amp is False
    assert b.training and b.amp is True
