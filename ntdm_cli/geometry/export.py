"""``export-obj``: meshes out of artifacts, dispatched on the artifact kind.

Kinds: ``deformer`` (a CAD's shape, the mean shape, or every CAD), ``model`` (the same for one of its
embedded deformers, ``--category``) and ``predictions`` (the fitted shape of image ``--index`` coloured
by visible / occluded / not in view)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ntdm_cli.conventions import PREDICTED_VP_KEYS, mask_key
from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.fsutil import make_output_folder
from ntdm_cli.conventions import DEFAULT_HOLE_GAP
from ntdm_cli.geometry.holes import solid_faces, without_holes


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
    hole_gap: float = DEFAULT_HOLE_GAP  # faces farther from the CAD surface than this fraction of its
    #   diagonal are left out (geometry.holes); 0: every face
    index: Optional[int] = None  # predictions: the row (image) to export
    category: Optional[str] = None  # model: which embedded deformer

    def check(self, kind: str = "deformer") -> None:
        if kind == "predictions":
            if (self.index is None) == (not self.all) or self.latent is not None or self.mean:
                raise NtdmUsageError("for predictions choose --index I (one image) or --all (every image)")
        else:
            chosen = sum([self.latent is not None, self.mean, self.all])
            if chosen != 1:
                raise NtdmUsageError("choose exactly one of --latent K, --mean, --all")
            if self.index is not None:
                raise NtdmUsageError("--index applies to predictions artifacts")
        if not np.isfinite(self.scale) or self.scale <= 0:
            raise NtdmUsageError(f"--scale {self.scale}: must be a positive number")
        if not (np.isfinite(self.hole_gap) and self.hole_gap >= 0):
            raise NtdmUsageError(f"--hole-gap {self.hole_gap}: must be a number ≥ 0")


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


def _export_deformer(path: Path, output: Path, req: ExportRequest, d=None) -> list[Path]:
    import torch

    from ntdm_cli.geometry.deformer import load_deformer
    from ntdm_cli.geometry.mesh_io import write_obj

    d = d if d is not None else load_deformer(path)
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
    keep = solid_faces(d.face_gaps, z, req.hole_gap)

    def write(target: Path, i: int) -> Path:
        t = without_holes(d.template, None if keep is None else keep[i])
        extra = {}
        if req.uv:
            extra = dict(verts_uvs=t.verts_uvs.numpy(), faces_uvs=t.faces_uvs.numpy(), texture=checker_texture())
        return write_obj(target, verts[i], t.faces.numpy(), **extra)

    if req.all:
        make_output_folder(output, "--output")
        return [write(output / f"{k:02d}_{_safe(d.cad_names[k])}.obj", i) for i, k in enumerate(keys)]
    if output.is_dir():
        raise NtdmUsageError(f"--output {output}: is a folder, expected an .obj file path")
    if output.suffix.lower() != ".obj":
        raise NtdmUsageError(f"--output {output}: expected a file name ending in .obj")
    return [write(output, 0)]


EXPORTERS["deformer"] = _export_deformer


def _model_deformers(path: Path) -> dict:
    from ntdm_cli.artifacts import read_artifact
    from ntdm_cli.geometry.deformer import deformer_from_artifact_data

    art = read_artifact(path, "model")
    return {c: deformer_from_artifact_data(art[f"deformers/{c}"], where=f"{path}:deformers/{c}")
            for c in art["categories"]}


def _export_model(path: Path, output: Path, req: ExportRequest) -> list[Path]:
    """A model's embedded deformer (``--category``): the same choices as for a deformer artifact."""
    deformers = _model_deformers(path)
    if req.category is None:
        if len(deformers) != 1:
            raise NtdmUsageError(f"{path}: the model has categories {', '.join(deformers)}; choose one with --category")
        req.category = next(iter(deformers))
    if req.category not in deformers:
        raise NtdmUsageError(f"--category {req.category}: not in the model ({', '.join(deformers)})")
    return _export_deformer(path, output, req, d=deformers[req.category])


def _export_predictions(path: Path, output: Path, req: ExportRequest) -> list[Path]:
    """The predicted shape of image ``--index`` (or of every image with ``--all``), coloured by visible /
    occluded / not in view from the predicted masks carried onto the surface (NTDM fig. 5)."""
    import torch

    from ntdm_cli.artifacts import read_artifact
    from ntdm_cli.geometry.visibility import export_prediction_obj, vertex_visibility
    from ntdm_cli.render import Viewpoint

    art = read_artifact(path, "predictions")
    n = len(art["image_id"])
    rows = list(range(n)) if req.all else [req.index]
    if req.index is not None and not 0 <= req.index < n:
        raise NtdmUsageError(f"--index {req.index}: {path} has images 0..{n - 1}")
    model_path = Path(str(art.attrs.get("model", "")))
    if not model_path.is_file():
        raise NtdmError(f"{path}: its model {model_path} is not readable; the deformer is needed to rebuild the mesh")
    deformers = _model_deformers(model_path)
    if req.all:
        make_output_folder(output, "--output")
    elif output.suffix.lower() != ".obj":
        raise NtdmUsageError(f"--output {output}: expected a file name ending in .obj")
    written = []
    for i in rows:
        cat = art["category"][i]
        d = deformers[cat]
        z = torch.from_numpy(np.asarray(art["latent"][i][: d.num_latents], dtype=np.float32))[None]
        scale = torch.from_numpy(np.asarray(art["scale"][i], dtype=np.float32))
        with torch.no_grad():
            verts = d(z)[0] * scale
        keep = solid_faces(d.face_gaps, z, req.hole_gap)
        template = without_holes(d.template, None if keep is None else keep[0])
        vp = Viewpoint.create(**{k: float(art[k][i]) for k in PREDICTED_VP_KEYS})
        masks = art[mask_key(art["image_id"][i])]
        state = vertex_visibility(verts, template, vp, np.asarray(masks["visible"], bool),
                                  np.asarray(masks["amodal"], bool))
        target = output / f"{i:05d}_{_safe(art['image_id'][i])}.obj" if req.all else output
        written.append(export_prediction_obj(target, verts.numpy() * req.scale, template, state))
    return written


EXPORTERS["model"] = _export_model
EXPORTERS["predictions"] = _export_predictions


def export_obj(path: str | os.PathLike, output: str | os.PathLike, request: ExportRequest) -> list[Path]:
    """Write the mesh(es) selected by ``request`` from the artifact at ``path``; returns the OBJ paths."""
    from ntdm_cli.artifacts import describe

    path, output = Path(path), Path(output)
    attrs, _ = describe(path)
    kind = str(attrs.get("kind", ""))
    request.check(kind)
    exporter = EXPORTERS.get(kind)
    if exporter is None:
        supported = ", ".join(sorted(EXPORTERS))
        raise NtdmError(f"{path}: export-obj does not support {kind} artifacts yet (supported: {supported})")
    return exporter(path, output, request)
