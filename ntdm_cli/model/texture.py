"""Neural textures with viewing bins (NTDM eq. 4-5) and the background bank.

A category's texture is Θ ∈ R^{b×q×q×d}: b viewing bins, q×q texels, d channels (unit vectors).
Bin b looks along R_b(n): bin 0 is the surface normal n itself, bins 1..b-1 are n tilted by
``tilt`` (60°) towards directions spaced evenly around it (60° apart for 6 bins), expressed in a
tangent frame built from n and the world z axis. The viewing coefficients are
α_b = softmax_b(T · ⟨d, R_b(n)⟩) with d the unit direction from the surface point to the camera.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def bin_directions(num_bins: int = 7, tilt_deg: float = 60.0) -> torch.Tensor:
    """Local bin directions (b, 3) in the tangent frame (t1, t2, n): bin 0 = (0, 0, 1)."""
    dirs = [(0.0, 0.0, 1.0)]
    k = num_bins - 1
    tilt = math.radians(tilt_deg)
    for i in range(k):
        phi = 2 * math.pi * i / k
        dirs.append((math.sin(tilt) * math.cos(phi), math.sin(tilt) * math.sin(phi), math.cos(tilt)))
    return torch.tensor(dirs, dtype=torch.float32)


def tangent_frame(normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Orthonormal tangents (t1, t2) for unit normals (..., 3); t1 ⟂ z unless n ∥ z (then ⟂ x)."""
    z = normals.new_tensor([0.0, 0.0, 1.0]).expand_as(normals)
    x = normals.new_tensor([1.0, 0.0, 0.0]).expand_as(normals)
    ref = torch.where((normals[..., 2:3].abs() > 0.99), x, z)
    t1 = F.normalize(torch.cross(ref, normals, dim=-1), dim=-1)
    t2 = torch.cross(normals, t1, dim=-1)
    return t1, t2


def viewing_coefficients(normals: torch.Tensor, to_camera: torch.Tensor, num_bins: int = 7,
                         temperature: float = 5.0, tilt_deg: float = 60.0) -> torch.Tensor:
    """α (..., b) for unit surface normals (..., 3) and unit directions to the camera (..., 3).

    With one bin, α ≡ 1 (the paper's "single α_b" ablation)."""
    if num_bins == 1:
        return normals.new_ones(normals.shape[:-1] + (1,))
    t1, t2 = tangent_frame(normals)
    local = bin_directions(num_bins, tilt_deg).to(normals)  # (b, 3)
    dirs = local[:, 0, None] * t1[..., None, :] + local[:, 1, None] * t2[..., None, :] + local[:, 2, None] * normals[..., None, :]
    cos = (dirs * to_camera[..., None, :]).sum(-1)  # (..., b)
    return torch.softmax(temperature * cos, dim=-1)


class NeuralTexture:
    """Θ (b, q, q, d) of one category, updated by momentum (EM), never by the optimiser.

    Attributes:
        theta: (b, q, q, d) float32 unit vectors.
        counts: (b, q, q) float32, accumulated α-weighted visibility (0 = never observed).
    """

    def __init__(self, num_bins: int, size: int, dim: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        theta = torch.randn(num_bins, size, size, dim, generator=generator)
        self.theta = F.normalize(theta, dim=-1).to(device)
        self.counts = torch.zeros(num_bins, size, size, device=device)

    @classmethod
    def from_tensors(cls, theta: torch.Tensor, counts: torch.Tensor) -> "NeuralTexture":
        """A texture from stored Θ (b, q, q, d) and counts (b, q, q)."""
        tex = cls.__new__(cls)
        tex.theta, tex.counts = theta.float(), counts.float()
        return tex

    @property
    def num_bins(self) -> int:
        return self.theta.shape[0]

    @property
    def size(self) -> int:
        return self.theta.shape[1]

    @property
    def dim(self) -> int:
        return self.theta.shape[-1]

    def as_image(self) -> torch.Tensor:
        """(1, b·d, q, q) channel-first view for texture sampling (bin-major channels)."""
        b, q, _, d = self.theta.shape
        return self.theta.permute(0, 3, 1, 2).reshape(1, b * d, q, q)

    @torch.no_grad()
    def momentum_update(self, index: torch.Tensor, numer: torch.Tensor, denom: torch.Tensor,
                        momentum: float = 0.9) -> None:
        """Θ_b ← normalize(Θ_b + (1 − m)·a_b·(f̄_b − Θ_b)) at the observed texels.

        Args:
            index: (K,) flat texel indices (y·q + x).
            numer: (b, K, d) Σ over images of α_b · f (surface features) at those texels.
            denom: (b, K) Σ over images of α_b where the texel is visible.
        For one image this is Θ_b ← Θ_b + (1 − m)·α_b·(f − Θ_b): a bin that does not see the texel
        (α_b → 0) keeps its value; texels nobody saw are unchanged."""
        b, q, _, d = self.theta.shape
        flat = self.theta.view(b, q * q, d)
        old = flat[:, index]
        mean = numer / denom.clamp_min(1e-12).unsqueeze(-1)
        rate = ((1 - momentum) * denom.clamp(max=1.0)).unsqueeze(-1)
        new = F.normalize(old + rate * (mean - old), dim=-1)
        new = torch.where((denom > 0).unsqueeze(-1), new, old)
        flat[:, index] = new
        self.counts.view(b, q * q)[:, index] += denom

    @torch.no_grad()
    def refit(self, numer: torch.Tensor, denom: torch.Tensor, prior: float = 1.0) -> None:
        """Θ_b ← normalize(numer_b + prior · Θ_b) where denom_b > 0: the α-weighted mean direction of
        every feature observed at a texel, the current Θ_b counting as ``prior`` observations (it
        decides bins that saw a texel only at a grazing angle).

        Args:
            numer: (b, q², d) Σ over images of α_b · f/|f| at each texel.
            denom: (b, q²) Σ over images of α_b where the texel is visible.
        ``counts`` is left as training accumulated it."""
        b, q, _, d = self.theta.shape
        flat = self.theta.view(b, q * q, d)
        new = F.normalize(numer.to(flat) + prior * flat, dim=-1)
        flat.copy_(torch.where((denom > 0).unsqueeze(-1), new, flat))

    def observed(self) -> torch.Tensor:
        """Flat indices (K,) of the texels any bin has observed (all texels before the first update).

        Cached until ``counts`` changes (the cache is keyed on the tensor's in-place version counter),
        so the loss can ask for it per image and per category at no cost."""
        key = (id(self.counts), self.counts._version)
        cached = getattr(self, "_observed", None)
        if cached is None or cached[0] != key:
            idx = (self.counts.sum(0).reshape(-1) > 0).nonzero().squeeze(1)
            if idx.numel() == 0:
                idx = torch.arange(self.size * self.size, device=self.counts.device)
            self._observed = (key, idx)
        return self._observed[1]

    def combined(self, alpha: torch.Tensor, texel_index: torch.Tensor) -> torch.Tensor:
        """Σ_b α_b Θ_b at flat texel indices: alpha (K, b), texel_index (K,) -> (K, d) unnormalised."""
        flat = self.theta.reshape(self.num_bins, -1, self.dim)  # (b, q², d)
        # a weighted sum over the few bins: einsum would run K tiny matrix products one by one
        return (flat[:, texel_index] * alpha.T.unsqueeze(-1).to(flat.dtype)).sum(0)

    def prototypes(self, pooled: int) -> torch.Tensor:
        """Observed texture features pooled to pooled×pooled per bin, unit length: (P, d).

        Used by the fast classifier (3D-CompNets eq. 7); texels never observed are left out."""
        b, q, _, d = self.theta.shape
        img = self.theta.permute(0, 3, 1, 2) * self.counts.clamp(max=1.0).unsqueeze(1)
        w = self.counts.clamp(max=1.0).unsqueeze(1)
        k = max(1, q // pooled)
        num = F.avg_pool2d(img, k)
        den = F.avg_pool2d(w, k)
        keep = den[:, 0] > 0.05
        protos = F.normalize(num.permute(0, 2, 3, 1)[keep], dim=-1)
        return protos


class BackgroundBank:
    """FIFO of background features (size, d), filled with features of non-object pixels only."""

    def __init__(self, size: int, dim: int, generator: torch.Generator | None = None, device="cpu"):
        self.features = F.normalize(torch.randn(size, dim, generator=generator), dim=-1).to(device)
        self.ptr = 0
        self.filled = 0

    @classmethod
    def from_tensors(cls, features: torch.Tensor, ptr: int, filled: int) -> "BackgroundBank":
        bank = cls.__new__(cls)
        bank.features, bank.ptr, bank.filled = features.float(), int(ptr), int(filled)
        return bank

    @torch.no_grad()
    def push(self, feats: torch.Tensor) -> None:
        """feats: (k, d) new background features; the oldest are replaced."""
        n = self.features.shape[0]
        for start in range(0, feats.shape[0], n):
            chunk = feats[start:start + n]
            k = chunk.shape[0]
            idx = (torch.arange(k, device=chunk.device) + self.ptr) % n
            self.features[idx] = chunk.to(self.features)
            self.ptr = (self.ptr + k) % n
            self.filled = min(n, self.filled + k)

    def active(self) -> torch.Tensor:
        """The filled part of the bank (the random initial features until the first push)."""
        if 0 < self.filled < self.features.shape[0]:
            return self.features[: self.filled]
        return self.features
