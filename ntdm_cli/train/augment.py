"""Occluder augmentation for training (``train.occlude``): background patches pasted over the object.

The paper trains on unoccluded images only; its robustness to occlusion comes from the clutter model
at inference. With ``train.occlude = p`` a fraction p of the training images get one or two elliptical
occluders centred on the object. They are filled with another image of the batch: its unpadded part,
resized to the crop and shifted by half a crop, so its object (centred by the preprocessing) moves to
the corners and the occluder mostly shows that image's background, sometimes a part of another object
in front (both happen in real scenes).

The occluded pixels are left out of the surface observation (no texel is trained on them), and
occluder pixels that show the other image's *background* may enter the background bank. Object
features so learn (a) not to depend on the context that an occluder replaces and (b) to differ from
what an occluder looks like. The occluders are deliberately unlike the synthetic benchmark's own
L1-L3 occluders (procedural textures), so the occluded splits still measure unseen occluders.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _unpadded(image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The part of a crop that is not black padding, resized back to the crop: image (3, H, W),
    mask (H, W) bool → same shapes."""
    H, W = mask.shape
    valid = image.amax(0) > 0
    rows, cols = valid.any(1).nonzero().squeeze(1), valid.any(0).nonzero().squeeze(1)
    if rows.numel() == 0:
        return image, mask
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if (y0, y1, x0, x1) == (0, H, 0, W):
        return image, mask
    img = F.interpolate(image[None, :, y0:y1, x0:x1], size=(H, W), mode="bilinear", align_corners=False)[0]
    msk = F.interpolate(mask[None, None, y0:y1, x0:x1].float(), size=(H, W), mode="nearest")[0, 0] > 0.5
    return img, msk


def paste_occluders(images: torch.Tensor, masks: torch.Tensor, prob: float, max_cover: float,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Paste background occluders over the objects.

    Args:
        images: (B, 3, H, W) float32 in [0, 1].
        masks: (B, H, W) bool, annotated amodal object masks (an image with an empty or full mask is
            left alone, and is no donor).
        prob: probability in [0, 1] that an image is occluded.
        max_cover: largest target fraction of the object covered, in (0, 1); the target is drawn
            uniformly in [0.1·max_cover, max_cover] and approached with at most two ellipses.
        generator: CPU generator (all randomness comes from it).

    Returns:
        images' (B, 3, H, W) with occluders pasted (a new tensor; ``images`` is not modified),
        occluder (B, H, W) bool, the pasted pixels (on and off the object), and
        occluder_background (B, H, W) bool, the pasted pixels that show the donor's background.
    """
    B, _, H, W = images.shape
    out = images.clone()
    occ = torch.zeros(B, H, W, dtype=torch.bool, device=images.device)
    occ_bg = torch.zeros_like(occ)
    if prob <= 0 or B < 2:
        return out, occ, occ_bg
    donors_ok = [bool(masks[j].any()) and not bool(masks[j].all()) for j in range(B)]
    dev = images.device  # masks are built where the images are: no host copy per image
    ys = torch.arange(H, dtype=torch.float32, device=dev).view(H, 1) + 0.5
    xs = torch.arange(W, dtype=torch.float32, device=dev).view(1, W) + 0.5
    for i in range(B):
        if float(torch.rand((), generator=generator)) >= prob or not donors_ok[i]:
            continue
        donors = [j for j in range(B) if j != i and donors_ok[j]]
        if not donors:
            continue
        j = donors[int(torch.randint(len(donors), (), generator=generator))]
        obj = masks[i]
        area = float(obj.sum())
        target = float(max_cover * (0.1 + 0.9 * torch.rand((), generator=generator)))
        size = math.sqrt(area)
        shape = torch.zeros(H, W, dtype=torch.bool, device=dev)
        oy, ox = obj.nonzero(as_tuple=True)
        for _ in range(2):
            if float((shape & obj).sum()) / area >= target:
                break
            k = int(torch.randint(oy.numel(), (), generator=generator))
            cy, cx = float(oy[k]) + 0.5, float(ox[k]) + 0.5
            r = torch.rand(3, generator=generator)
            ang = float(r[0]) * math.pi
            aspect = 0.4 + 1.2 * float(r[1])
            dy, dx = ys - cy, xs - cx
            u = dx * math.cos(ang) + dy * math.sin(ang)
            v = -dx * math.sin(ang) + dy * math.cos(ang)
            lo, hi = 0.02 * size, 1.5 * size
            for _ in range(10):  # bisection on the ellipse radius for the target coverage
                mid = (lo + hi) / 2
                ell = (u / (mid * aspect)) ** 2 + (v * aspect / mid) ** 2 <= 1.0
                cov = float(((shape | ell) & obj).sum()) / area
                if cov < target:
                    lo = mid
                else:
                    hi = mid
            shape |= (u / (lo * aspect)) ** 2 + (v * aspect / lo) ** 2 <= 1.0
        donor, donor_mask = _unpadded(images[j], masks[j])
        shift = (H // 2, W // 2)
        fill = torch.roll(donor, shift, (1, 2))
        shape = shape & (fill.amax(0) > 0)  # never paste black padding
        out[i][:, shape] = fill[:, shape]
        occ[i] = shape
        occ_bg[i] = shape & ~torch.roll(donor_mask, shift, (0, 1))
    return out, occ, occ_bg


def occluder_cells(occluder: torch.Tensor, occluder_background: torch.Tensor, feature_hw: tuple[int, int],
                   upsample: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a training step does with pasted occluders, at its own resolutions.

    Args:
        occluder, occluder_background: (B, H, W) bool, as returned by :func:`paste_occluders`.
        feature_hw: (h, w) of the feature map; upsample: the surface-observation grid's factor over it.
    Returns:
        hidden (B, h·upsample, w·upsample) bool: observation cells more than half covered (no texel is
        observed there), and background (B, h, w) bool: feature cells at least 3/4 covered by an
        occluder that shows background (they may enter the background bank)."""
    h, w = feature_hw
    hidden = F.adaptive_avg_pool2d(occluder.float().unsqueeze(1), (h * upsample, w * upsample))[:, 0] > 0.5
    background = F.adaptive_avg_pool2d(occluder_background.float().unsqueeze(1), (h, w))[:, 0] >= 0.75
    return hidden, background
