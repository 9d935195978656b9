"""Mesh regularisers on batches of meshes that share one topology: (B, V, 3) vertices, (F, 3) faces."""

from __future__ import annotations

import torch


def face_normals(verts: torch.Tensor, faces: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Unit face normals: verts (B, V, 3), faces (F, 3) -> (B, F, 3) (counter-clockwise = outward)."""
    t = verts[:, faces]                                                  # (B, F, 3, 3)
    n = torch.cross(t[:, :, 1] - t[:, :, 0], t[:, :, 2] - t[:, :, 0], dim=-1)
    return n / torch.sqrt((n * n).sum(-1, keepdim=True) + eps)


def edge_face_pairs(faces: torch.Tensor) -> torch.Tensor:
    """(E, 2) int64 pairs of faces sharing an edge (interior edges of a manifold mesh)."""
    F = faces.shape[0]
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    fid = torch.arange(F, device=faces.device).repeat(3)
    key = e[:, 0] * (int(faces.max()) + 1) + e[:, 1]
    order = torch.argsort(key)
    key, fid = key[order], fid[order]
    same = key[1:] == key[:-1]
    return torch.stack([fid[:-1][same], fid[1:][same]], 1)


def normal_consistency(verts: torch.Tensor, faces: torch.Tensor, pairs: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over meshes and interior edges of 1 - cos(angle between the two adjacent face normals).

    verts (B, V, 3); faces (F, 3); pairs: precomputed :func:`edge_face_pairs`. Returns a scalar."""
    if pairs is None:
        pairs = edge_face_pairs(faces)
    n = face_normals(verts, faces)
    return (1.0 - (n[:, pairs[:, 0]] * n[:, pairs[:, 1]]).sum(-1)).mean()


def uniform_laplacian(faces: torch.Tensor, num_verts: int) -> torch.Tensor:
    """Sparse (V, V) uniform Laplacian L = A / deg - I (L·v = mean of the neighbours - v)."""
    e = torch.cat([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]], 0)
    e = torch.sort(e, dim=1).values
    key = torch.unique(e[:, 0] * num_verts + e[:, 1])          # unique(dim=0) is slow on CPU
    e = torch.stack([key // num_verts, key % num_verts], 1)
    i = torch.cat([e[:, 0], e[:, 1]])
    j = torch.cat([e[:, 1], e[:, 0]])
    deg = torch.bincount(i, minlength=num_verts).float()
    vals = 1.0 / deg[i]
    ii = torch.cat([i, torch.arange(num_verts, device=faces.device)])
    jj = torch.cat([j, torch.arange(num_verts, device=faces.device)])
    vv = torch.cat([vals, -torch.ones(num_verts, device=faces.device)])
    return torch.sparse_coo_tensor(torch.stack([ii, jj]), vv, (num_verts, num_verts),
                                   check_invariants=False).coalesce()


def laplacian_smoothing(verts: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """Mean norm of the uniform Laplacian of each vertex (PyTorch3D's "uniform" smoothing loss).

    verts (B, V, 3); L from :func:`uniform_laplacian`. Returns a scalar in the units of verts."""
    B, V, _ = verts.shape
    lv = torch.sparse.mm(L, verts.permute(1, 0, 2).reshape(V, B * 3)).reshape(V, B, 3)
    return torch.sqrt((lv * lv).sum(-1) + 1e-20).mean()
