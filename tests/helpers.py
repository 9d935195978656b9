"""Shared test inputs."""

from __future__ import annotations

import math

import torch


def smooth_uv_inputs(N: int, C: int, H: int, W: int, dtype=torch.float64, noise: float = 0.3,
                     coverage: float = 0.9, keep: float = 0.9, seed: int = 0):
    """Features (N,C,H,W), a smooth random UV field (N,H,W,2) like a rasterised surface (rotated,
    scaled grid plus noise) and a random mask (N,H,W) that keeps a fraction ``keep`` of pixels."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(H, dtype=dtype), torch.arange(W, dtype=dtype), indexing="ij")
    uvs = []
    for _ in range(N):
        ang = float(torch.rand(1, generator=g)) * 2 * math.pi
        sc = (0.5 + float(torch.rand(1, generator=g))) / max(H, W) * coverage
        u = 0.5 + sc * (math.cos(ang) * (xs - W / 2) - math.sin(ang) * (ys - H / 2))
        v = 0.5 + sc * (math.sin(ang) * (xs - W / 2) + math.cos(ang) * (ys - H / 2))
        uv = torch.stack([u, v], -1) + noise * sc * torch.randn(H, W, 2, generator=g, dtype=dtype)
        uvs.append(uv)
    uv = torch.stack(uvs).clamp(0, 1)
    mask = torch.rand(N, H, W, generator=g) < keep
    features = torch.randn(N, C, H, W, generator=g, dtype=dtype)
    return features, uv, mask


def random_scorer_scene(model, category: str = "car", dim: int = 16, size: int = 16):
    """A scene for testing what a term adds to RenderCompare's loss: ``category``'s deformer of a trained
    ``model`` (frozen), a random texture (7 bins, 32², ``dim`` channels), random unit features
    (1, dim, size, size) and a random bank (8, dim). Returns (deformer, texture, features, bank)."""
    import torch.nn.functional as F

    from ntdm_cli.model.texture import NeuralTexture

    deformer = model.deformers[category].requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    tex = NeuralTexture(7, 32, dim, generator=g)
    feats = F.normalize(torch.randn(1, dim, size, size, generator=g), dim=1)
    bank = F.normalize(torch.randn(8, dim, generator=g), dim=-1)
    return deformer, tex, feats, bank
