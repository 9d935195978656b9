"""Which vertices of a posed mesh are visible, occluded or out of view, from predicted masks.

The occlusion is carried onto the surface with ``image_to_surface`` as in NTDM fig. 5; the coloured
OBJ is what ``ntdm infer --export`` and ``ntdm export-obj`` write for a prediction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ntdm_cli.geometry.mesh_io import write_obj
from ntdm_cli.ops import image_to_surface
from ntdm_cli.render import Viewpoint, interpolate_uv, project, rasterize

VISIBLE = (0.20, 0.75, 0.30)
OCCLUDED = (0.90, 0.25, 0.20)
UNSEEN = (0.60, 0.60, 0.60)


def vertex_visibility(verts: torch.Tensor, template, vp: Viewpoint, crop_visible: np.ndarray,
                      crop_amodal: np.ndarray, texture_size: int = 128) -> np.ndarray:
    """Per-vertex state (V,) int: 0 not in view, 1 visible, 2 occluded.

    The mesh is rasterised at the crop resolution; the visible/occluded masks are carried onto the
    texture with image_to_surface and read back at each vertex's UV."""
    h, w = crop_visible.shape
    screen = project(verts[None], vp, stride=1.0)
    frags = rasterize(screen, template.faces, image_size=(h, w), faces_per_pixel=1)
    uv, mask = interpolate_uv(frags, template.verts_uvs, template.faces_uvs)
    vis = torch.from_numpy(crop_visible).float()
    occ = torch.from_numpy(crop_amodal & ~crop_visible).float()
    feats = torch.stack([vis, occ])[None].to(uv)
    surface, _, seen = image_to_surface(feats, uv, mask, texture_size)
    # per-vertex uv: the first face corner that uses the vertex
    V = verts.shape[0]
    vert_uv = torch.zeros(V, 2)
    faces = template.faces.cpu()
    fuv = template.faces_uvs.cpu()
    vuv = template.verts_uvs.cpu().float()
    for k in (2, 1, 0):  # later writes win: any corner is fine
        vert_uv[faces[:, k]] = vuv[fuv[:, k]]
    q = texture_size
    xs = (vert_uv[:, 0] * q).long().clamp(0, q - 1)
    ys = (vert_uv[:, 1] * q).long().clamp(0, q - 1)
    s = surface[0].cpu()
    seen_v = seen[0].cpu()[ys, xs]
    state = np.zeros(V, dtype=np.int64)
    v_vis = s[0, ys, xs].numpy()
    v_occ = s[1, ys, xs].numpy()
    state[seen_v.numpy() & (v_vis >= v_occ)] = 1
    state[seen_v.numpy() & (v_occ > v_vis)] = 2
    return state


def export_prediction_obj(path: Path, verts: np.ndarray, template, state: np.ndarray) -> Path:
    """Write ``verts`` (V, 3) on the template's faces as an OBJ coloured by ``state`` (V,)
    (vertex_visibility: grey not in view, green visible, red occluded)."""
    colors = np.array([UNSEEN, VISIBLE, OCCLUDED])[state]
    return write_obj(path, verts, template.faces.cpu().numpy(), vertex_colors=colors)
