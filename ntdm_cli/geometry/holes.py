"""Where the deformed sphere spans empty space: per-face gaps to the CAD surface, and the faces kept.

A sphere template deformed onto a CAD cannot change its topology: between a chair's legs, under its
seat and between an aeroplane's wing and tail it stretches membranes over space the object does not
fill. Rendered, a membrane paints the gaps into the silhouette (the amodal mask of a chair covers the
space between its legs). The fit knows where the membranes are: a face of Γ(z_k) that lies on CAD k
is as close to it as the fit's error, a membrane face is far from every CAD face.

:func:`face_gaps` measures, for each CAD k and each template face f, the mean distance of points on
f (its centroid, the midpoints of its edges and three interior points) to CAD k's surface, as a
fraction of CAD k's bounding-box diagonal: a (K, F) array stored with the deformer
(``Deformer.face_gaps``). For a latent z on the simplex of CAD mixtures the gap of a face is the
mixture Σ_k z_k gap_k(f) (the linear deformer blends the CADs' displacement fields the same way), and
:func:`solid_faces` keeps the faces whose gap is at most a threshold: the mesh with holes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ntdm_cli.conventions import DEFAULT_HOLE_GAP
from ntdm_cli.geometry.distance import FaceSearch
from ntdm_cli.geometry.mesh_io import Mesh
from ntdm_cli.geometry.template import Template

# barycentric weights of the points of a face whose distances are averaged: the centroid, the three
# edge midpoints and three points halfway between the centroid and each corner
_BARY = np.array([[1 / 3, 1 / 3, 1 / 3],
                  [0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5],
                  [2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6], [1 / 6, 1 / 6, 2 / 3]])


@torch.no_grad()
def face_gaps(deformer, cads: Sequence[Mesh]) -> np.ndarray:
    """(K, F) float32: for each CAD k (one-hot latent k of ``deformer``) and face f of the deformed
    mesh Γ(z_k), the mean distance of points on f to CAD k's surface, in units of CAD k's
    bounding-box diagonal. ``cads`` are in CAD units, in the deformer's latent order."""
    K = deformer.num_latents
    if len(cads) != K:
        raise ValueError(f"{len(cads)} CADs for a deformer with {K} latents")
    shapes = (deformer(deformer.latents.to(deformer.template_verts.device)) * deformer.normalization).cpu().numpy()
    faces = deformer.faces.cpu().numpy()
    bary = _BARY.astype(np.float64)
    out = np.zeros((K, len(faces)), np.float32)
    for k, cad in enumerate(cads):
        tri = shapes[k].astype(np.float64)[faces]                       # (F, 3, 3)
        pts = np.einsum("pc,fcx->fpx", bary, tri).reshape(-1, 3)        # (F·P, 3)
        dist = FaceSearch(cad.verts, cad.faces).distance(pts).reshape(len(faces), len(bary))
        out[k] = dist.mean(1) / max(cad.bbox_diagonal, 1e-12)
    return out


def mixed_gaps(gaps: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """The gaps (N, F) of the meshes of latents ``latent`` (N, K): Σ_k z_k gap_k, with z clamped to
    ≥ 0 and normalised to sum 1 (the simplex the latent is kept on). gaps: (K, F)."""
    z = latent.detach().float().clamp_min(0)
    z = z / z.sum(1, keepdim=True).clamp_min(1e-12)
    return z @ gaps.to(z.device, z.dtype)


def solid_faces(gaps: torch.Tensor | None, latent: torch.Tensor, threshold: float) -> torch.Tensor | None:
    """Boolean (N, F) mask of the faces kept for latents (N, K): those whose mixed gap
    (:func:`mixed_gaps`) is at most ``threshold`` (a fraction of the bounding-box diagonal). None (keep
    every face) when ``gaps`` is None (a deformer fitted before gaps were stored) or ``threshold`` ≤ 0."""
    if gaps is None or not threshold > 0:
        return None
    return mixed_gaps(gaps, latent) <= threshold


def without_holes(template: Template, keep: torch.Tensor | None) -> Template:
    """``template`` with only the faces where ``keep`` (F,) bool is true (their UV corners with them);
    ``template`` itself when ``keep`` is None. The vertices stay, so a mesh's vertex indices still
    apply."""
    if keep is None:
        return template
    keep = keep.to(template.faces.device)
    return Template(template.verts, template.faces[keep], template.verts_uvs, template.faces_uvs[keep],
                    template.subdivisions)


@torch.no_grad()
def hole_area_share(deformer, threshold: float = DEFAULT_HOLE_GAP) -> np.ndarray:
    """(K,) the share of each CAD's fitted surface Γ(z_k) (by area) whose faces are holes at
    ``threshold``; zeros without ``deformer.face_gaps``."""
    K = deformer.num_latents
    if deformer.face_gaps is None:
        return np.zeros(K)
    verts = deformer(deformer.latents.to(deformer.template_verts.device)).cpu()
    tri = verts[:, deformer.faces.cpu()]                                # (K, F, 3, 3)
    area = torch.linalg.norm(torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1), dim=-1)
    holes = (~solid_faces(deformer.face_gaps.cpu(), deformer.latents.cpu(), threshold)).float()
    return ((area * holes).sum(1) / area.sum(1).clamp_min(1e-30)).numpy()
