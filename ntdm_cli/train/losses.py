"""Contrastive losses of NTDM (eq. 7-9) with 3D-CompNets' cross-category scaling (eq. 4-5, 7).

For one image of category c with surface features f at P sampled visible texels:

* L_in   = CE over [f·θ_pos, f·θ_neg (same category, farther than τ in UV), f·β (background bank)]
* L_cross = CE over [f·θ_pos, f·θ_m + log ω_{c,c'}] with N texels θ_m sampled per other category c'
  whose confusion weight ω_{c,c'} > 0 (pairs with ω = 0 cost nothing)
* L_ML   = mean(1 − f·θ_pos) (eq. 7 for unit vectors: ½‖f − θ‖² = 1 − f·θ)

all logits scaled by κ = 1 / temperature. Cost per image: P × (M + |B| + N·#{c' : ω > 0}),
linear in the number of categories.

:func:`contrastive_loss` computes one image's loss with plain autograd; it is the oracle of
:func:`batch_contrastive_loss`, which computes a whole batch's in a few passes over its logits
(:class:`SoftmaxFirstCE`: one matmul, an in-place exponential and a sum forward, one matmul backward)
and builds the τ mask from small per-axis tables instead of pairwise UV arithmetic.
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


class SoftmaxFirstCE(torch.autograd.Function):
    """Per-image mean cross-entropy with the target in column 0, fused forward and backward.

    For image u and row p: logits are ``[pos[u, p], κ·f[u, p]·keys[u, j] + bias[u, j]]`` (j < K),
    ``-inf`` where ``mask[u, p, j]``; the loss of image u is the mean over p of
    ``logsumexp(logits) − pos[u, p]``. Autograd on the same expression keeps about ten (U, P, K)
    tensors alive and passes over them about twenty times; this keeps one: the exponentials, shifted by
    a per-row upper bound of the logits (Cauchy–Schwarz: κ‖f‖·max‖key‖ + max bias, or pos) that the
    matmul subtracts through an extra column, so no max pass is needed. Where that bound could
    underflow a row's exponentials (bounds more than 80 apart), the exact row maximum is used.

    Args (forward): pos (U, P) logits of the target; f (U, P, d); keys (U, K, d); bias (U, K) or None,
    logit offsets per key (−inf removes a key); mask (U, P, K') bool or None, True removes the pair
    of row p and key j < K' ≤ K; kappa: the scale κ.
    Returns (U,) losses. Gradients flow to pos, f, keys and bias.
    """

    @staticmethod
    def forward(ctx, pos, f, keys, bias, mask, kappa: float):
        U, P, _ = f.shape
        K = keys.shape[1]
        fn = f.norm(dim=-1)  # (U, P)
        kn = keys.norm(dim=-1).amax(-1) if K else f.new_zeros(U)  # (U,)
        if bias is not None:  # −inf entries remove keys: masked below, kept out of the matmul and the bound
            gone = ~torch.isfinite(bias)  # (U, K)
            if gone.any():
                mask = gone[:, None, :] if mask is None else torch.cat([mask, mask.new_zeros(
                    U, P, K - mask.shape[-1])], -1) | gone[:, None, :]
            bias = bias.masked_fill(gone, 0.0).to(f.dtype)
            bmax = bmin = f.new_zeros(U)
            if K:  # 0 for an image whose keys are all removed
                bmax = bias.masked_fill(gone, float("-inf")).amax(-1).nan_to_num(neginf=0.0)
                bmin = bias.masked_fill(gone, float("inf")).amin(-1).nan_to_num(posinf=0.0)
        else:
            bmax = bmin = f.new_zeros(U)
        reach = kappa * fn * kn[:, None]  # (U, P): |κ·f·key| ≤ reach
        upper = torch.maximum(reach + bmax[:, None], pos)
        lower = torch.minimum(bmin[:, None] - reach, pos)
        exact = bool((upper - lower).amax() > 80.0) if pos.numel() else False
        shift = pos if exact else upper  # (U, P)
        # one matmul gives κ·f·key + bias − shift: f is extended by [−shift, 1], keys by [1, bias]
        col = torch.zeros_like(shift) if exact else -shift
        f_ext = torch.cat([f, col.unsqueeze(-1), torch.ones_like(col).unsqueeze(-1)], -1)
        ones_k = keys.new_ones(U, K, 1)
        k_ext = torch.cat([keys * kappa, ones_k, bias.unsqueeze(-1) if bias is not None else 0 * ones_k], -1)
        s = torch.bmm(f_ext, k_ext.transpose(1, 2))  # (U, P, K)
        if mask is not None:  # it may cover only the first keys
            s[..., :mask.shape[-1]].masked_fill_(mask, float("-inf"))
        if exact:  # the true row maxima (rare: unnormalised inputs)
            shift = torch.maximum(s.amax(-1) if K else pos, pos)
            s.sub_(shift.unsqueeze(-1))
        s.exp_()
        p0 = (pos - shift).exp()  # (U, P)
        z = s.sum(-1) + p0
        loss = (z.log() + shift - pos).mean(-1)
        ctx.save_for_backward(s, z, p0, f, keys)
        ctx.kappa = kappa
        ctx.has_bias = bias is not None
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        s, z, p0, f, keys = ctx.saved_tensors
        kappa = ctx.kappa
        P = f.shape[1]
        w = (grad / P).unsqueeze(-1)  # (U, 1)
        soft = s * (w / z).unsqueeze(-1)  # (U, P, K): d loss / d logit
        g_pos = w * (p0 / z - 1)
        g_f = torch.bmm(soft, keys) * kappa if ctx.needs_input_grad[1] else None
        g_keys = torch.bmm(soft.transpose(1, 2), f) * kappa if ctx.needs_input_grad[2] else None
        g_bias = soft.sum(1) if ctx.has_bias and ctx.needs_input_grad[3] else None
        return g_pos, g_f, g_keys, g_bias, None, None


def tau_mask(pos_index: torch.Tensor, neg_index: torch.Tensor, size: int, tau: float) -> torch.Tensor:
    """Pairs (U, P, M) bool of positive and negative texels closer than τ: ``uv_sq_distance <= tau``
    for flat texel indices pos_index (U, P), neg_index (U, M) of a size×size texture.

    Exact: texel UVs are multiples of 1 / (2·size), so their squared distances are the integers
    dx² + dy² over size², and the test is an integer threshold. Per image the (size, M) tables of
    dx² and dy² to each negative are gathered at the positives' columns and rows: two row gathers, a
    sum and a comparison on int16 (int32 for thresholds above 16383), instead of about ten float
    passes."""
    q = int(size)
    steps = torch.arange(2 * q * q + 1, dtype=torch.float64, device=pos_index.device)
    thr = int((steps / (q * q) <= float(torch.tensor(tau, dtype=torch.float32))).sum()) - 1  # largest dx²+dy² kept
    px, py = pos_index % q, torch.div(pos_index, q, rounding_mode="floor")
    nx, ny = neg_index % q, torch.div(neg_index, q, rounding_mode="floor")
    v = torch.arange(q, device=pos_index.device)
    dx = (v[None, :, None] - nx[:, None, :]).abs()  # (U, q, M)
    dx = torch.minimum(dx, q - dx)
    dy = v[None, :, None] - ny[:, None, :]
    # squares above the threshold only need to stay above it: clamped there, they fit in int16 (and
    # so does their sum) unless the threshold itself is large
    cap = thr + 1
    kind = torch.int16 if 2 * cap <= torch.iinfo(torch.int16).max else torch.int32
    dx2, dy2 = (dx * dx).clamp_max(cap).to(kind), (dy * dy).clamp_max(cap).to(kind)
    u = torch.arange(pos_index.shape[0], device=pos_index.device)[:, None]
    return (dx2[u, px] + dy2[u, py]) <= thr


@dataclass
class BatchLossParts:
    """The losses of the U images of a batch that had a visible texel: ``total`` is their mean (what
    is minimised), inner / cross / ml (U,) each image's parts (detached)."""

    total: torch.Tensor
    inner: torch.Tensor
    cross: torch.Tensor
    ml: torch.Tensor
    pairs: int


def batch_contrastive_loss(f: torch.Tensor, theta_pos: torch.Tensor, pos_index: torch.Tensor,
                           theta_neg: torch.Tensor, neg_index: torch.Tensor, bank: torch.Tensor,
                           class_keys: torch.Tensor, class_log_w: torch.Tensor, texture_size: int, tau: float,
                           temperature: float = 0.07, ml_weight: float = 1.0) -> BatchLossParts:
    """:func:`contrastive_loss` of U images at once (same values to float rounding).

    Args:
        f: (U, P, d) unit surface features (differentiable); theta_pos: (U, P, d) unit texture
            features at the same texels; pos_index: (U, P) their flat texel indices.
        theta_neg: (U, M, d) same-category negatives at flat texel indices neg_index (U, M).
        bank: (B, d) background features, shared by all images.
        class_keys: (U, N, d) the other categories' sampled texels (zero rows where an image has fewer),
            class_log_w: (U, N) log ω of each one's category (−inf on padding rows); N may be 0.
        texture_size: q of the textures; tau: squared UV threshold of the negatives.
    """
    U, P, _ = f.shape
    kappa = 1.0 / temperature
    pos_dot = (f * theta_pos).sum(-1)  # (U, P)
    pos = pos_dot * kappa
    near = tau_mask(pos_index, neg_index, texture_size, tau)  # (U, P, M)
    M = theta_neg.shape[1]
    keys = torch.cat([theta_neg, bank.unsqueeze(0).expand(U, -1, -1)], 1)
    inner = SoftmaxFirstCE.apply(pos, f, keys, None, near, kappa)  # the mask covers the M negatives only
    pairs = int(U * P * M - int(near.sum())) + U * P * bank.shape[0]
    if class_keys.shape[1]:
        cross = SoftmaxFirstCE.apply(pos, f, class_keys, class_log_w, None, kappa)
        pairs += P * int(torch.isfinite(class_log_w).sum())
    else:
        cross = f.new_zeros(U)
    ml = (1 - pos_dot).mean(-1)
    per_image = inner + cross + ml_weight * ml
    return BatchLossParts(total=per_image.mean(), inner=inner.detach(), cross=cross.detach(), ml=ml.detach(),
                          pairs=pairs)


def omega_from_confusion(confusion: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """Grouping weights ω (C, C) from a confusion matrix of counts (rows = ground truth).

    Rows are normalised; the diagonal and entries below ``threshold`` are zero."""
    conf = confusion.double()
    rows = conf.sum(1, keepdim=True).clamp_min(1e-12)
    w = conf / rows
    w.fill_diagonal_(0)
    w[w < threshold] = 0
    return w.float()
