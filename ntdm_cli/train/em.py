"""One EM step of NTDM training (sec. 3.3): image features → surface (image_to_surface) → contrastive
loss against the neural textures (M-step of the backbone) and momentum update of the textures (E-step).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
from ntdm_cli.ops import image_to_surface
from ntdm_cli.train.losses import (BatchLossParts, LossParts, batch_contrastive_loss, contrastive_loss,
                                  sample_indices, texel_uv)


@dataclass
class SurfaceObservation:
    """Image features carried onto the surface of the ground-truth mesh.

    Attributes:
        features: (N, d, q, q) surface features (differentiable w.r.t. the image features).
        alpha: (N, b, q, q) viewing coefficients averaged onto the texels.
        visible: (N, q, q) bool.
    """

    features: torch.Tensor
    alpha: torch.Tensor
    visible: torch.Tensor


def observe(features: torch.Tensor, uv: torch.Tensor, mask: torch.Tensor, alpha: torch.Tensor,
            texture_size: int) -> SurfaceObservation:
    """features (N, d, h, w) image features; uv (N, h, w, 2), mask (N, h, w), alpha (N, h, w, b) from
    rasterising the mesh at the ground-truth pose at the feature-map resolution."""
    d = features.shape[1]
    stacked = torch.cat([features, alpha.detach().permute(0, 3, 1, 2).to(features.dtype)], 1)
    surface, _, visible = image_to_surface(stacked, uv.detach().to(features.dtype), mask, texture_size)
    return SurfaceObservation(surface[:, :d], surface[:, d:], visible)


@dataclass
class ImageDraws:
    """The texels one image's contrastive loss contrasts, as flat texel indices: pos (P,) visible
    texels (the positives), neg (M,) same-category texels (the negatives), and per other category with
    ω > 0 its index, sampled texels (N,) and ω."""

    pos: torch.Tensor
    neg: torch.Tensor
    others: list[tuple[int, torch.Tensor, float]]


def draw_texels(obs: SurfaceObservation, i: int, category: int, textures: list[NeuralTexture],
                omega: torch.Tensor, cfg, generator: torch.Generator) -> ImageDraws | None:
    """The random draws of image i (of category index ``category``) from ``generator``, in a fixed
    order: positives among its visible texels, negatives among the texture's observed texels (all
    texels while fewer are observed than ``cfg.negatives``), then ``cfg.class_negatives`` observed texels
    of each other category with ω > 0. None when nothing is visible (nothing is drawn)."""
    q = textures[category].size
    vis_idx = obs.visible[i].reshape(-1).nonzero().squeeze(1)
    if vis_idx.numel() == 0:
        return None
    pos = sample_indices(vis_idx, cfg.positives, generator)
    observed = textures[category].observed()
    pool = observed if observed.numel() >= cfg.negatives else torch.arange(q * q, device=pos.device)
    neg = sample_indices(pool, cfg.negatives, generator)
    others = []
    for other, w in enumerate(omega[category].tolist()):
        if other == category or w <= 0:
            continue
        others.append((other, sample_indices(textures[other].observed(), cfg.class_negatives, generator), float(w)))
    return ImageDraws(pos, neg, others)


def image_loss(obs: SurfaceObservation, i: int, category: int, textures: list[NeuralTexture],
               bank: BackgroundBank, omega: torch.Tensor, cfg, generator: torch.Generator) -> LossParts | None:
    """Contrastive loss of image i (of category index ``category``); None when nothing is visible.
    The per-image oracle of :func:`batch_loss`."""
    dr = draw_texels(obs, i, category, textures, omega, cfg, generator)
    if dr is None:
        return None
    tex = textures[category]
    q = tex.size
    f = F.normalize(obs.features[i].reshape(obs.features.shape[1], -1)[:, dr.pos].T, dim=-1)  # (P, d)
    a = obs.alpha[i].reshape(obs.alpha.shape[1], -1)[:, dr.pos].T.detach()  # (P, b)
    theta_pos = F.normalize(tex.combined(a, dr.pos), dim=-1)
    a_mean = a.mean(0, keepdim=True)
    theta_neg = F.normalize(tex.combined(a_mean.expand(dr.neg.numel(), -1), dr.neg), dim=-1)
    class_negs = []
    for other, idx, w in dr.others:
        otex = textures[other]
        ones = torch.full((idx.numel(), otex.num_bins), 1.0 / otex.num_bins, device=idx.device)
        class_negs.append((F.normalize(otex.combined(ones, idx), dim=-1), w))
    return contrastive_loss(f, theta_pos, texel_uv(dr.pos, q), theta_neg, texel_uv(dr.neg, q), bank.active(),
                            class_negs, tau=cfg.tau, temperature=cfg.temperature, ml_weight=cfg.ml_weight)


def batch_loss(obs: SurfaceObservation, categories: list[int], textures: list[NeuralTexture],
               bank: BackgroundBank, omega: torch.Tensor, cfg,
               generator: torch.Generator) -> tuple[BatchLossParts | None, list[int]]:
    """The contrastive losses of a batch's images computed together (train.losses.batch_contrastive_loss):
    the same draws from ``generator`` and the same values as :func:`image_loss` image by image, with
    the gathers of features, viewing coefficients and texture rows done once per batch and category.

    All textures have one size, as a model's do (``train.texture_size``).
    Returns the parts of the images with a visible texel (None if there is none) and their indices."""
    draws = [draw_texels(obs, i, c, textures, omega, cfg, generator) for i, c in enumerate(categories)]
    used = [i for i, dr in enumerate(draws) if dr is not None]
    if not used:
        return None, used
    dev = obs.features.device
    U, d, nb = len(used), obs.features.shape[1], obs.alpha.shape[1]
    rows = torch.tensor(used, device=dev)
    pos = torch.stack([draws[i].pos for i in used])  # (U, P)
    neg = torch.stack([draws[i].neg for i in used])  # (U, M)
    # texel-major views (N, q², d) and (N, q², b): free for the observations train.observation makes
    feats = obs.features.permute(0, 2, 3, 1).reshape(obs.features.shape[0], -1, d)
    alpha = obs.alpha.detach().permute(0, 2, 3, 1).reshape(obs.alpha.shape[0], -1, nb)
    f = F.normalize(feats[rows[:, None], pos], dim=-1)  # (U, P, d)
    a = alpha[rows[:, None], pos].transpose(1, 2)  # (U, b, P)
    theta_pos = f.new_empty(f.shape)
    theta_neg = f.new_empty(U, neg.shape[1], d)
    cats = torch.tensor([categories[i] for i in used], device=dev)
    for c in cats.unique().tolist():  # one texture per category: a batch usually holds one
        k = (cats == c).nonzero().squeeze(1)
        flat = textures[c].theta.reshape(nb, -1, d)  # (b, q², d)
        theta_pos[k] = (flat[:, pos[k]] * a[k].permute(1, 0, 2).unsqueeze(-1)).sum(0)  # Σ_b α_b Θ_b
        theta_neg[k] = (flat[:, neg[k]] * a[k].mean(-1).T[:, :, None, None]).sum(0)
    theta_pos, theta_neg = F.normalize(theta_pos, dim=-1), F.normalize(theta_neg, dim=-1)
    ncls = max(sum(idx.numel() for _, idx, _ in draws[i].others) for i in used)
    class_keys = f.new_zeros(U, ncls, d)
    class_log_w = f.new_full((U, ncls), float("-inf"))
    for u, i in enumerate(used):
        at = 0
        for other, idx, w in draws[i].others:
            flat = textures[other].theta.reshape(textures[other].num_bins, -1, d)
            class_keys[u, at:at + idx.numel()] = F.normalize(flat[:, idx].mean(0), dim=-1)  # uniform α
            class_log_w[u, at:at + idx.numel()] = torch.log(torch.tensor(w, dtype=f.dtype))
            at += idx.numel()
    parts = batch_contrastive_loss(f, theta_pos, pos, theta_neg, neg, bank.active(), class_keys, class_log_w,
                                   textures[0].size, tau=cfg.tau, temperature=cfg.temperature, ml_weight=cfg.ml_weight)
    return parts, used


@torch.no_grad()
def update_textures(obs: SurfaceObservation, categories: list[int], textures: list[NeuralTexture],
                    momentum: float, distributed: bool = False) -> None:
    """E-step: momentum update of each category's texture from this batch's visible texels.

    With ``distributed``, numerators and denominators are summed over all processes first, so every
    process applies the same update."""
    for c, tex in enumerate(textures):
        rows = [i for i, cat in enumerate(categories) if cat == c]
        sums = texel_sums(obs, rows, tex.num_bins)
        if distributed:  # every process joins the sums, also with no image of the category
            numer, denom = full_texel_sums(sums, tex)
            dist.all_reduce(numer)
            dist.all_reduce(denom)
            index = (denom.sum(0) > 0).nonzero().squeeze(1)
            sums = (index, numer[:, index], denom[:, index]) if index.numel() else None
        if sums is not None:
            tex.momentum_update(*sums, momentum)


def full_texel_sums(sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None, tex: NeuralTexture
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`texel_sums` scattered over all texels of ``tex``: numer (b, q², d), denom (b, q²) (zeros
    where nothing was seen)."""
    b, q, d = tex.num_bins, tex.size, tex.dim
    numer = torch.zeros(b, q * q, d, device=tex.theta.device)
    denom = torch.zeros(b, q * q, device=tex.theta.device)
    if sums is not None:
        index, n, w = sums
        numer[:, index] = n.to(numer)
        denom[:, index] = w.to(denom)
    return numer, denom


def texel_sums(obs: SurfaceObservation, rows: list[int], num_bins: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """What images ``rows`` of ``obs`` (one category) say about its texture: the flat indices (K,) of
    the texels any of them sees, numer (b, K, d) = Σ_images α_b · f/|f| and denom (b, K) = Σ_images α_b
    over the images that see each texel. None when none is seen."""
    if not rows:
        return None
    N, d = obs.features.shape[:2]
    dev = obs.features.device
    # texel-major views (N, q², d) and (N, q², b): free for the observations train.observation makes
    feats = obs.features.detach().permute(0, 2, 3, 1).reshape(N, -1, d)
    alpha = obs.alpha.detach().permute(0, 2, 3, 1).reshape(N, feats.shape[1], -1)
    r = torch.tensor(rows, device=dev)
    vis = obs.visible[r].reshape(len(rows), -1)  # (R, q²)
    index = vis.any(0).nonzero().squeeze(1)  # the texels any image of the category sees
    if index.numel() == 0:
        return None
    f = F.normalize(feats[r[:, None], index], dim=-1)  # (R, K, d)
    w = alpha[r[:, None], index] * vis[:, index, None]  # (R, K, b)
    numer = torch.zeros(num_bins, index.numel(), d, device=dev, dtype=f.dtype)
    for k in range(len(rows)):  # one fused multiply-add per image beats a (R, b, K, d) product
        numer.addcmul_(w[k].T.unsqueeze(-1), f[k].unsqueeze(0))
    return index, numer, w.sum(0).T


def background_features(features: torch.Tensor, object_mask: torch.Tensor, per_image: int,
                        generator: torch.Generator) -> torch.Tensor:
    """Up to ``per_image`` features per image from pixels at least one feature cell away from the
    object: features (N, d, h, w), object_mask (N, h, w) bool (rendered silhouette ∪ annotated mask).
    Returns (k, d)."""
    grown = F.max_pool2d(object_mask.float().unsqueeze(1), 3, stride=1, padding=1)[:, 0] > 0
    out = []
    for i in range(features.shape[0]):
        free = (~grown[i]).reshape(-1).nonzero().squeeze(1)
        if free.numel() == 0:
            continue
        pick = free[torch.randperm(free.numel(), generator=generator)[:per_image].to(free.device)]
        out.append(features[i].reshape(features.shape[1], -1)[:, pick].T)
    if not out:
        return features.new_zeros(0, features.shape[1])
    return torch.cat(out).detach()
