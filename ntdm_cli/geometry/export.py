"""``export-obj``: meshes out of artifacts, dispatched on the artifact kind.

Implemented: ``deformer`` (a CAD's shape, the mean shape, or every CAD). Later stages register their
kinds (``model``: its embedded deformers; ``predictions``: the fitted shape of an image) in
:data:`EXPORTERS` with the same signature."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ntdm_cli.errors import NtdmError, NtdmUsageError


@dataclass
class ExportRequest:
    """What to export. latent: a CAD by 0-based index or name; mean: the mean latent; all: one OBJ
    per CAD into the ``output`` folder; scale: factor applied to the coordinates; uv: also write
    the template UVs with a checker texture (``<stem>.mtl`` + ``<stem>.png``)."""

    latent: Optional[str] = None
    mean: bool = False
    all: bool = False
    scale: float = 1.0
    uv: bool = False

    def check(self) -> None:
        chosen = sum([self.latent is not None, self.mean, self.all])
        if chosen != 1:
            raise NtdmUsageError("choose exactly one of --latent K, --mean, --all")
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise NtdmUsageError(f"--scale {self.scale}: must be a positive number")


Exporter = Callable[[Path, Path, ExportRequest], list]
EXPORTERS: dict[str, Exporter] = {}


def checker_texture(size: int = 512, squares: int = 16) -> np.ndarray:
    """(size, size, 3) uint8 UV checker: alternating squares tinted by u (red) and v (green)."""
    t = (np.arange(size) + 0.5) / size
    u, v = np.meshgrid(t, t)
    check = ((np.floor(u * squares) + np.floor(v * squares)) % 2).astype(np.float64)
    img = np.stack([0.35 + 0.6 * u, 0.35 + 0.6 * v, np.full_like(u, 0.6)], -1) * (0.55 + 0.45 * check)[..., None]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "cad"


def _export_deformer(path: Path, output: Path, req: ExportRequest) -> list[Path]:
    import torch

    from ntdm_cli.geometry.deformer import load_deformer
    from ntdm_cli.geometry.mesh_io import write_obj

    d = load_deformer(path)
    if req.all:
        keys = list(range(d.num_latents))
    elif req.mean:
        keys = [None]
    else:
        try:
            keys = [d.latent_index(req.latent)]
        except (KeyError, IndexError, ValueError):
            raise NtdmUsageError(f"--latent {req.latent}: expected a CAD index 0..{d.num_latents - 1} or one of "
                                 f"the CAD names ({', '.join(d.cad_names[:10])}{', …' if d.num_latents > 10 else ''})")
    z = torch.stack([d.mean_latent()[0] if k is None else d.latents[k] for k in keys])
    with torch.no_grad():
        verts = (d(z) * req.scale).numpy()
    faces = d.faces.numpy()
    extra = {}
    if req.uv:
        extra = dict(verts_uvs=d.verts_uvs.numpy(), faces_uvs=d.faces_uvs.numpy(), texture=checker_texture())
    if req.all:
        if output.exists() and not output.is_dir():
            raise NtdmUsageError(f"--output {output}: --all writes one OBJ per CAD and needs a folder")
        parent = output.parent if str(output.parent) else Path(".")
        if not parent.is_dir():
            raise NtdmUsageError(f"--output {output}: folder {parent} does not exist")
        output.mkdir(exist_ok=True)
        return [write_obj(output / f"{k:02d}_{_safe(d.cad_names[k])}.obj", verts[i], faces, **extra)
                for i, k in enumerate(keys)]
    if output.is_dir():
        raise NtdmUsageError(f"--output {output}: is a folder, expected an .obj file path")
    if output.suffix.lower() != ".obj":
        raise NtdmUsageError(f"--output {output}: expected a file name ending in .obj")
    return [write_obj(output, verts[0], faces, **extra)]


EXPORTERS["deformer"] = _export_deformer


def export_obj(path: str | os.PathLike, output: str | os.PathLike, request: ExportRequest) -> list[Path]:
    """Write the mesh(es) selected by ``request`` from the artifact at ``path``; returns the OBJ paths."""
    from ntdm_cli.artifacts import describe

    request.check()
    path, output = Path(path), Path(output)
    attrs, _ = describe(path)
    kind = str(attrs.get("kind", ""))
    exporter = EXPORTERS.get(kind)
    if exporter is None:
        supported = ", ".join(sorted(EXPORTERS))
        raise NtdmError(f"{path}: export-obj does not support {kind} artifacts yet (supported: {supported})")
    return exporter(path, output, request)
