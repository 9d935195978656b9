"""Observation plans: the surface observation of a training image as one fixed sparse matrix.

A training step carries the feature map (N, d, h, w) onto the texture of the ground-truth mesh: the
features are bilinearly upsampled ``train.observe_upsample`` (u) times and transformed by
image_to_surface with the rasterised UVs. Both steps are linear in the features, and with a fixed body
everything else — mesh, pose, silhouette, occluder cells — is fixed per training image (and cached
occluded variant). So the whole observation is a sparse (q², h·w) matrix per image, computed once
(:func:`plan_observations`) and applied every epoch (:func:`observe_planned`): no rasterisation, no
(N, d, h·u, w·u) upsampled map and no image_to_surface pass in the step, forward or backward.
``observe_planned`` gives what ``train.em.observe`` gives on the upsampled features (to float
rounding; tests/test_train.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ntdm_cli.ops import image_to_surface_weights
from ntdm_cli.train.em import SurfaceObservation


@dataclass
class ObservationPlan:
    """The observation of one image: ``surface[:, texel[e]] += weight[e] · features[:, pixel[e]]``.

    Attributes:
        texel: (E,) flat texel index y·q + x; pixel: (E,) flat feature-map index i·w + j (int16 when
            they fit, else int32; each (texel, pixel) pair once); weight: (E,) float32.
        visible: (V,) flat indices of the texels observed; alpha: (V, b) float32 viewing coefficients
            averaged onto them.
        on_object: (h, w) bool, feature cells that the silhouette touches (a cell of the fine grid on
            the object), as the step's background sampling needs them.
    """

    texel: torch.Tensor
    pixel: torch.Tensor
    weight: torch.Tensor
    visible: torch.Tensor
    alpha: torch.Tensor
    on_object: torch.Tensor

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.texel, self.pixel, self.weight, self.visible,
                                                          self.alpha, self.on_object))


def _upsample_taps(size: int, up: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each of the size·up fine positions of ``F.interpolate(..., mode="bilinear",
    align_corners=False)`` along one axis: its two source cells (lo, hi) and the weight of hi."""
    dst = torch.arange(size * up, device=device, dtype=torch.float64)
    src = ((dst + 0.5) / up - 0.5).clamp(min=0)
    lo = src.floor().long()
    hi = torch.where(lo < size - 1, lo + 1, lo)
    return lo, hi, (src - lo).float()


def object_cells(mask: torch.Tensor, up: int) -> torch.Tensor:
    """Feature cells (N, h, w) bool that a silhouette (N, h·up, w·up) on the observation grid touches."""
    return F.max_pool2d(mask.float().unsqueeze(1), up)[:, 0] > 0 if up > 1 else mask


def _index_dtype(n: int) -> torch.dtype:
    return torch.int16 if n <= torch.iinfo(torch.int16).max else torch.int32


@torch.no_grad()
def plan_observations(uv: torch.Tensor, seen: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor,
                      coarse_hw: tuple[int, int], texture_size: int) -> list[ObservationPlan]:
    """The observation plans of a batch rasterised on the fine grid.

    Args:
        uv: (N, H, W, 2) texture coordinates on the fine grid (H = h·u, W = w·u); seen: (N, H, W) bool,
            the cells observed (silhouette minus occluder); alpha: (N, H, W, b) viewing coefficients;
            mask: (N, H, W) bool silhouette; coarse_hw: (h, w) the feature map's size.
        texture_size: q.
    Returns one plan per image."""
    N, H, W = seen.shape
    h, w = coarse_hw
    up = H // h
    q = int(texture_size)
    n, texel, fine, weight, total = image_to_surface_weights(uv, seen, q)
    total = total.reshape(N, q * q)
    # alpha onto the texels with the same weights (train.em.observe stacks it with the features)
    alpha_flat = alpha.reshape(N * H * W, -1)
    alpha_tex = torch.zeros(N * q * q, alpha.shape[-1], dtype=alpha.dtype, device=alpha.device)
    alpha_tex.index_add_(0, n * q * q + texel, alpha_flat[n * H * W + fine] * weight[:, None].to(alpha.dtype))
    # compose with the bilinear upsampling: fine cell (I, J) reads 4 coarse cells
    ylo, yhi, yl = _upsample_taps(h, up, uv.device)
    xlo, xhi, xl = _upsample_taps(w, up, uv.device)
    I, J = fine // W, fine % W
    taps = [(ylo[I], xlo[J], (1 - yl[I]) * (1 - xl[J])), (ylo[I], xhi[J], (1 - yl[I]) * xl[J]),
            (yhi[I], xlo[J], yl[I] * (1 - xl[J])), (yhi[I], xhi[J], yl[I] * xl[J])]
    n4 = n.repeat(4)
    key = (n4 * (q * q) + texel.repeat(4)) * (h * w) + torch.cat([r * w + c for r, c, _ in taps])
    val = torch.cat([weight * tw.to(weight.dtype) for _, _, tw in taps])
    keep = val != 0
    key, val = key[keep], val[keep]
    uniq, inverse = torch.unique(key, return_inverse=True)
    summed = torch.zeros(uniq.numel(), dtype=val.dtype, device=val.device).index_add_(0, inverse, val)
    img = torch.div(uniq, q * q * h * w, rounding_mode="floor")
    rest = uniq - img * (q * q * h * w)
    tex_of, pix_of = torch.div(rest, h * w, rounding_mode="floor"), rest % (h * w)
    on_object = object_cells(mask, up)
    counts = torch.bincount(img, minlength=N).tolist()
    bounds = [0] + torch.tensor(counts).cumsum(0).tolist()
    ti, pi = _index_dtype(q * q), _index_dtype(h * w)
    plans = []
    for k in range(N):
        a, b = bounds[k], bounds[k + 1]
        vis = (total[k] > 0).nonzero().squeeze(1)
        plans.append(ObservationPlan(tex_of[a:b].to(ti), pix_of[a:b].to(pi), summed[a:b].float(), vis.to(ti),
                                     alpha_tex.view(N, q * q, -1)[k, vis].float(), on_object[k].clone()))
    return plans


def observe_planned(features: torch.Tensor, plans: list[ObservationPlan], texture_size: int) -> SurfaceObservation:
    """The surface observation (train.em.SurfaceObservation) of features (N, d, h, w) by the plans of
    its N images; differentiable in the features."""
    N, d, h, w = features.shape
    q = int(texture_size)
    dev = features.device
    rows = torch.cat([p.texel.to(dev, torch.long) + k * q * q for k, p in enumerate(plans)])
    cols = torch.cat([p.pixel.to(dev, torch.long) + k * h * w for k, p in enumerate(plans)])
    weight = torch.cat([p.weight.to(dev) for p in plans]).to(features.dtype)
    flat = features.permute(0, 2, 3, 1).reshape(N * h * w, d)
    surface = flat.new_zeros(N * q * q, d).index_add(0, rows, flat.index_select(0, cols) * weight[:, None])
    b = plans[0].alpha.shape[1] if plans else 0
    alpha = features.new_zeros(N, q * q, b)
    visible = torch.zeros(N, q * q, dtype=torch.bool, device=dev)
    for k, p in enumerate(plans):
        vis = p.visible.to(dev, torch.long)
        alpha[k, vis] = p.alpha.to(dev, features.dtype)
        visible[k, vis] = True
    return SurfaceObservation(surface.view(N, q, q, d).permute(0, 3, 1, 2), alpha.view(N, q, q, b).permute(0, 3, 1, 2),
                              visible.view(N, q, q))
