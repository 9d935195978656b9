"""Occluder augmentation (train.occlude): what is pasted, where, and what training does with it."""

import torch

from ntdm_cli.train.augment import paste_occluders


def _batch(B=4, H=48, W=64, pad=8):
    g = torch.Generator().manual_seed(3)
    images = torch.rand(B, 3, H, W, generator=g) * 0.9 + 0.05
    images[:, :, :, :pad] = 0  # black crop padding on the left
    ys, xs = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    masks = ((ys - H / 2) ** 2 / 15 ** 2 + (xs - W / 2) ** 2 / 20 ** 2 <= 1).expand(B, H, W).clone()
    return images, masks


def test_off_is_identity_and_draws_nothing():
    images, masks = _batch()
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    out, occ, occ_bg = paste_occluders(images, masks, 0.0, 0.7, g)
    assert torch.equal(out, images) and not occ.any() and not occ_bg.any()
    assert torch.equal(g.get_state(), state)  # runs without occlusion stay bit-identical


def test_occluders_cover_the_object_with_unpadded_donor_content():
    images, masks = _batch()
    before = images.clone()
    out, occ, occ_bg = paste_occluders(images, masks, 1.0, 0.7, torch.Generator().manual_seed(0))
    assert torch.equal(images, before)  # input untouched
    cover = [(occ[i] & masks[i]).sum().item() / masks[i].sum().item() for i in range(len(images))]
    assert all(0.0 < c <= 0.75 for c in cover), cover
    assert torch.equal(out[~occ.unsqueeze(1).expand_as(out)], images[~occ.unsqueeze(1).expand_as(images)])
    changed = (out != images).any(1)
    assert (changed & ~occ).sum() == 0  # only occluder pixels change
    assert (out.amax(1)[occ] > 0).all()  # no black padding pasted
    assert (occ_bg & ~occ).sum() == 0 and occ_bg.sum() > 0


def test_deterministic_for_a_seed_and_skips_images_without_a_mask():
    images, masks = _batch()
    masks[1] = False
    a = paste_occluders(images, masks, 1.0, 0.5, torch.Generator().manual_seed(7))
    b = paste_occluders(images, masks, 1.0, 0.5, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not a[1][1].any()  # no object, no occluder


def test_train_step_observes_no_texel_through_an_occluder(monkeypatch):
    """With train.occlude=1 the surface observation of train_step only keeps unoccluded object pixels."""
    import torch.nn.functional as F

    from ntdm_cli.geometry.template import make_template
    from ntdm_cli.model.backbone import make_backbone
    from ntdm_cli.model.surface import rasterize_surface
    from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
    from ntdm_cli.render import Viewpoint
    from ntdm_cli.train import loop
    from ntdm_cli.train import trainer as trainer_module

    t = make_template(2)
    B, H = 4, 64
    vp = torch.tensor([[0.3 * k, 0.2, 0.0, 150.0, 1.0, 32.0, 32.0, 3000.0] for k in range(B)], dtype=torch.float64)
    verts = t.verts.unsqueeze(0).expand(B, -1, -1).contiguous()
    full = rasterize_surface(verts, t.faces, t.verts_uvs, t.faces_uvs, Viewpoint.from_rows(vp, "cpu"), (H, H), 1.0, 7, 5.0)
    batch = {"image": torch.rand(B, 3, H, H, generator=torch.Generator().manual_seed(0)) * 0.9 + 0.05,
             "category": torch.zeros(B, dtype=torch.long), "cad": torch.zeros(B, dtype=torch.long), "viewpoint": vp,
             "mask": full.mask.clone(), "instance_scale": torch.ones(B, 3)}
    seen = {}
    real_observe = trainer_module.observe

    def spy(features, uv, mask, alpha, size):
        seen[key] = mask.clone()
        return real_observe(features, uv, mask, alpha, size)

    monkeypatch.setattr(trainer_module, "observe", spy)
    for key in ("plain", "occluded"):
        torch.manual_seed(0)
        cfg = loop.TrainConfig(backbone="small", feature_dim=8, texture_size=16, positives=32, negatives=64, bank_size=32,
                          occlude=1.0 if key == "occluded" else 0.0)
        backbone = make_backbone("small", 8)
        tex = [NeuralTexture(7, 16, 8, generator=torch.Generator().manual_seed(1))]
        bank = BackgroundBank(32, 8, generator=torch.Generator().manual_seed(2))
        opt = torch.optim.Adam(backbone.parameters(), lr=1e-3)
        trainer = trainer_module.Trainer(cfg, backbone, tex, bank, torch.zeros(1, 1), {(0, 0): t.verts}, t, opt,
                                         device="cpu")
        trainer.step(batch, torch.Generator().manual_seed(3))
    plain, occluded = seen["plain"], seen["occluded"]
    assert (occluded & ~plain).sum() == 0  # never more than the silhouette
    assert 0 < occluded.sum() < 0.95 * plain.sum()  # the occluders hid part of it, not all
    # the hidden part is where occluders were pasted: redo the paste with the step's first draws
    from ntdm_cli.train.augment import paste_occluders

    _, occ, _ = paste_occluders(batch["image"], batch["mask"], 1.0, cfg.occlude_max, torch.Generator().manual_seed(3))
    occ_fine = F.adaptive_avg_pool2d(occ.float().unsqueeze(1), plain.shape[-2:])[:, 0] > 0.5
    assert torch.equal(occluded, plain & ~occ_fine)
