"""Contrastive losses of NTDM (eq. 7-9) with 3D-CompNets' cross-category scaling (eq. 4-5, 7).

For one image of category c with surface features f at P sampled visible texels:

* L_in   = CE over [f·θ_pos, f·θ_neg (same category, farther than τ in UV), f·β (background bank)]
* L_cross = CE over [f·θ_pos, f·θ_m + log ω_{c,c'}] with N texels θ_m sampled per other category c'
  whose confusion weight ω_{c,c'} > 0 (pairs with ω = 0 cost nothing)
* L_ML   = mean(1 − f·θ_pos) (eq. 7 for unit vectors: ½‖f − θ‖² = 1 − f·θ)

all logits scaled by κ = 1 / temperature. Cost per image: P × (M + |B| + N·#{c' : ω > 0}),
linear in the number of categories.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LossParts:
    total: torch.Tensor
    inner: torch.Tensor
    cross: torch.Tensor
    ml: torch.Tensor
    pairs: int  # number of (feature, negative) pairs contrasted


def texel_uv(index: torch.Tensor, size: int) -> torch.Tensor:
    """Texel centres (K, 2) in [0, 1] for flat indices into a size×size texture (row-major, y·q + x)."""
    y = torch.div(index, size, rounding_mode="floor")
    x = index - y * size
    return torch.stack([(x + 0.5) / size, (y + 0.5) / size], -1)


def uv_sq_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Squared UV distance (Ka, Kb) with u wrapping around (the azimuthal seam of the sphere)."""
    du = (a[:, None, 0] - b[None, :, 0]).abs()
    du = torch.minimum(du, 1 - du)
    dv = a[:, None, 1] - b[None, :, 1]
    return du * du + dv * dv


def sample_indices(candidates: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """k indices drawn uniformly (with replacement when fewer candidates) from a 1-D index tensor."""
    n = candidates.numel()
    if n == 0:
        return candidates
    if n >= k:
        perm = torch.randperm(n, generator=generator)[:k]
    else:
        perm = torch.randint(n, (k,), generator=generator)
    return candidates[perm.to(candidates.device)]


def contrastive_loss(
    f: torch.Tensor,
    theta_pos: torch.Tensor,
    pos_uv: torch.Tensor,
    theta_neg: torch.Tensor,
    neg_uv: torch.Tensor,
    bank: torch.Tensor,
    class_negs: list[tuple[torch.Tensor, float]],
    tau: float,
    temperature: float = 0.07,
    ml_weight: float = 1.0,
) -> LossParts:
    """Loss of one image.

    Args:
        f: (P, d) unit surface features at the sampled visible texels (differentiable).
        theta_pos: (P, d) unit texture features at those texels (view-combined), no gradient.
        pos_uv: (P, 2) their UVs; theta_neg: (M, d) same-category texture features, neg_uv: (M, 2).
        bank: (B, d) background features.
        class_negs: [(θ (N, d), ω)] per other category with ω > 0.
        tau: squared-UV-distance threshold: negatives closer than this to a positive are masked out.
    """
    kappa = 1.0 / temperature
    pos = (f * theta_pos).sum(-1, keepdim=True)  # (P, 1)
    neg = f @ theta_neg.T  # (P, M)
    near = uv_sq_distance(pos_uv, neg_uv) <= tau
    neg = neg.masked_fill(near, float("-inf"))
    logits_in = torch.cat([pos, neg, f @ bank.T], 1) * kappa
    target = torch.zeros(f.shape[0], dtype=torch.long, device=f.device)
    inner = F.cross_entropy(logits_in, target)
    pairs = int((~near).sum().item()) + f.shape[0] * bank.shape[0]
    if class_negs:
        cls = torch.cat([f @ t.T + torch.log(torch.tensor(w, dtype=f.dtype, device=f.device)) * temperature
                         for t, w in class_negs], 1)
        logits_cross = torch.cat([pos, cls], 1) * kappa
        cross = F.cross_entropy(logits_cross, target)
        pairs += f.shape[0] * sum(t.shape[0] for t, _ in class_negs)
    else:
        cross = f.new_zeros(())
    ml = (1 - pos).mean()
    return LossParts(total=inner + cross + ml_weight * ml, inner=inner.detach(), cross=cross.detach(),
                     ml=ml.detach(), pairs=pairs)


def omega_from_confusion(confusion: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """Grouping weights ω (C, C) from a confusion matrix of counts (rows = ground truth).

    Rows are normalised; the diagonal and entries below ``threshold`` are zero."""
    conf = confusion.double()
    rows = conf.sum(1, keepdim=True).clamp_min(1e-12)
    w = conf / rows
    w.fill_diagonal_(0)
    w[w < threshold] = 0
    return w.float()
