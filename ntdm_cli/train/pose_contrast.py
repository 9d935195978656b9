"""Pose contrast: train the features on the comparison that inference makes.

Inference (sec. 3.4) picks the pose whose rendered neural texture explains the feature map best: a
hypothesis scores Σ over its covered cells of relu(f·r − bg), with f the image feature, r the rendered
texture feature and bg the best background-bank match of that cell (``infer.solver.RenderCompare``).
The contrastive losses of NTDM (``train.losses``) train each visible texel's feature on its own;
nothing asks that, summed over a silhouette, the annotated pose beats a wrong one. Where it does not,
inference fails although the search is perfect (``ntdm eval``'s *model failures*).

This loss scores, per training image, the annotated pose and J wrong poses (azimuth turned by 30° to
180° either way, elevation and in-plane rotation jittered) with inference's formula on the training
feature map, and applies cross-entropy with the annotated pose as the target. Its gradient reaches the
features (the head); the textures stay E-step momentum averages and the background scores act as a
fixed bar (both detached).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ntdm_cli.model.surface import rasterize_surface, render_covered
from ntdm_cli.render import Viewpoint


def wrong_poses(viewpoint: torch.Tensor, count: int, generator: torch.Generator, min_azimuth_deg: float = 30.0,
                elevation_deg: float = 20.0, theta_deg: float = 10.0) -> torch.Tensor:
    """``count`` wrong poses per annotated one.

    Args:
        viewpoint: (B, 8) viewpoint rows (conventions.VP_KEYS order: azimuth, elevation, theta in radians,
            distance, focal, px, py, viewport).
        count: J, wrong poses per row.
        generator: the random draws.
        min_azimuth_deg: the azimuth turns by U(min, 180)° with a random sign.
        elevation_deg, theta_deg: elevation and theta move by U(−x, x)°; elevation stays within ±90°.
    Returns (B, J, 8) rows; distance, focal, principal point and viewport as annotated."""
    B = viewpoint.shape[0]
    u = torch.rand(B, count, 4, generator=generator).to(viewpoint.device, viewpoint.dtype)
    lo = math.radians(min_azimuth_deg)
    turn = (lo + (math.pi - lo) * u[..., 0]) * torch.where(u[..., 1] < 0.5, -1.0, 1.0)
    out = viewpoint[:, None, :].repeat(1, count, 1)
    out[..., 0] = out[..., 0] + turn
    out[..., 1] = (out[..., 1] + math.radians(elevation_deg) * (2 * u[..., 2] - 1)).clamp(-math.pi / 2, math.pi / 2)
    out[..., 2] = out[..., 2] + math.radians(theta_deg) * (2 * u[..., 3] - 1)
    return out


def pose_scores(features: torch.Tensor, verts: torch.Tensor, template, viewpoints: torch.Tensor,
                theta: torch.Tensor, bank: torch.Tensor, stride: float, bin_temperature: float) -> torch.Tensor:
    """Inference's evidence for P poses of each image, per covered cell of the first pose.

    Args:
        features: (B, d, h, w) unit image features (differentiable).
        verts: (B, V, 3) the object's mesh (object frame) of each image.
        template: geometry.template.Template (faces, UVs).
        viewpoints: (B, P, 8) viewpoint rows; pose 0 is the one the scores are normalised by.
        theta: (b, q, q, d) the category's neural texture (all B images of one category).
        bank: (M, d) background features.
        stride: image pixels per feature cell; bin_temperature: the viewing bins' temperature.
    Returns (B, P): Σ over each pose's covered cells of relu(f·r − bg), divided by the number of cells
    pose 0 covers (at least 1). Differentiable in ``features`` only."""
    B, d, h, w = features.shape
    P = viewpoints.shape[1]
    hw = h * w
    rows = viewpoints.reshape(B * P, -1)
    surf = rasterize_surface(verts.repeat_interleave(P, 0), template.faces, template.verts_uvs, template.faces_uvs,
                             Viewpoint.from_rows(rows, features.device), (h, w), stride, theta.shape[0],
                             bin_temperature)
    with torch.no_grad():
        rendered = render_covered(surf, theta.detach()).T  # (M, d)
        flat = features.detach().permute(0, 2, 3, 1).reshape(B * hw, d)
        bg = (flat @ bank.T).amax(1) if bank.numel() else flat.new_zeros(B * hw)  # (B·h·w,)
    owner = surf.idx // hw  # hypothesis of each covered cell
    pixel = (owner // P) * hw + surf.idx % hw  # its cell in the batch's feature map
    f = features.permute(0, 2, 3, 1).reshape(B * hw, d).index_select(0, pixel)
    gain = torch.relu((f * rendered).sum(1) - bg.index_select(0, pixel))
    score = gain.new_zeros(B * P).index_add(0, owner, gain).view(B, P)
    cells = torch.bincount(owner, minlength=B * P).view(B, P)[:, :1].clamp_min(1)
    return score / cells


def pose_contrast_loss(scores: torch.Tensor, temperature: float) -> torch.Tensor:
    """Cross-entropy (mean over images) of scores (B, P) / temperature with pose 0 as the target."""
    target = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
    return F.cross_entropy(scores / temperature, target)
