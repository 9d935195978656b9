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
