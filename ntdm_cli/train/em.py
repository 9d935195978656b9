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
from ntdm_cli.train.losses import LossParts, contrastive_loss, sample_indices, texel_uv


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


def image_loss(obs: SurfaceObservation, i: int, category: int, textures: list[NeuralTexture],
               bank: BackgroundBank, omega: torch.Tensor, cfg, generator: torch.Generator) -> LossParts | None:
    """Contrastive loss of image i (of category index ``category``); None when nothing is visible."""
    tex = textures[category]
    q = tex.size
    vis_idx = obs.visible[i].reshape(-1).nonzero().squeeze(1)
    if vis_idx.numel() == 0:
        return None
    pos = sample_indices(vis_idx, cfg.positives, generator)
    f = obs.features[i].reshape(obs.features.shape[1], -1)[:, pos].T  # (P, d)
    f = F.normalize(f, dim=-1)
    a = obs.alpha[i].reshape(obs.alpha.shape[1], -1)[:, pos].T.detach()  # (P, b)
    theta_pos = F.normalize(tex.combined(a, pos), dim=-1)
    a_mean = a.mean(0, keepdim=True)
    observed = tex.observed()
    pool = observed if observed.numel() >= cfg.negatives else torch.arange(q * q, device=pos.device)
    neg = sample_indices(pool, cfg.negatives, generator)
    theta_neg = F.normalize(tex.combined(a_mean.expand(neg.numel(), -1), neg), dim=-1)
    class_negs = []
    for other, w in enumerate(omega[category].tolist()):
        if other == category or w <= 0:
            continue
        otex = textures[other]
        idx = sample_indices(otex.observed(), cfg.class_negatives, generator)
        ones = torch.full((idx.numel(), otex.num_bins), 1.0 / otex.num_bins, device=pos.device)
        class_negs.append((F.normalize(otex.combined(ones, idx), dim=-1), float(w)))
    return contrastive_loss(f, theta_pos, texel_uv(pos, q), theta_neg, texel_uv(neg, q), bank.active(),
                            class_negs, tau=cfg.tau, temperature=cfg.temperature, ml_weight=cfg.ml_weight)


@torch.no_grad()
def update_textures(obs: SurfaceObservation, categories: list[int], textures: list[NeuralTexture],
                    momentum: float, distributed: bool = False) -> None:
    """E-step: momentum update of each category's texture from this batch's visible texels.

    With ``distributed``, numerators and denominators are summed over all processes first, so every
    process applies the same update."""
    feats = F.normalize(obs.features.detach(), dim=1)
    for c, tex in enumerate(textures):
        rows = [i for i, cat in enumerate(categories) if cat == c]
        b, q = tex.num_bins, tex.size
        if distributed:
            numer = torch.zeros(b, q * q, tex.dim, device=tex.theta.device)
            denom = torch.zeros(b, q * q, device=tex.theta.device)
            for i in rows:
                w = obs.alpha[i].reshape(b, -1) * obs.visible[i].reshape(1, -1)
                numer += w.unsqueeze(-1) * feats[i].reshape(tex.dim, -1).T.unsqueeze(0)
                denom += w
            dist.all_reduce(numer)
            dist.all_reduce(denom)
            index = (denom.sum(0) > 0).nonzero().squeeze(1)
            if index.numel():
                tex.momentum_update(index, numer[:, index], denom[:, index], momentum)
            continue
        if not rows:
            continue
        union = torch.zeros(q * q, dtype=torch.bool, device=tex.theta.device)
        for i in rows:
            union |= obs.visible[i].reshape(-1)
        index = union.nonzero().squeeze(1)
        if index.numel() == 0:
            continue
        numer = torch.zeros(b, index.numel(), tex.dim, device=tex.theta.device)
        denom = torch.zeros(b, index.numel(), device=tex.theta.device)
        for i in rows:
            w = obs.alpha[i].reshape(b, -1)[:, index] * obs.visible[i].reshape(1, -1)[:, index]
            numer += w.unsqueeze(-1) * feats[i].reshape(tex.dim, -1)[:, index].T.unsqueeze(0)
            denom += w
        tex.momentum_update(index, numer, denom, momentum)


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
