"""Triangle-mesh reading, validation and writing (OFF, OBJ, PLY; STL through trimesh).

Readers return a validated :class:`Mesh`; anything wrong raises :class:`~ntdm_cli.errors.NtdmError`
with one line naming the file and the problem (empty mesh, non-finite coordinates, face index out of
range, counts that do not match the data, unreadable or malformed file). Degenerate faces (repeated
vertex, zero area) and duplicate faces (same vertex set) are dropped with a count in the log.

OFF follows the PASCAL3D+ CAD files and their variants: ``OFF`` alone on its line or glued to the
counts (``OFF8 12 0``), ``COFF``/``NOFF``/``CNOFF``/``STOFF`` headers, ``#`` comments, blank lines,
polygons with more than 3 vertices (fan-triangulated) and trailing colour values after vertex
coordinates and face indices.

Writers go through a temporary file in the target folder and rename it into place.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ntdm_cli.console import console
from ntdm_cli.errors import NtdmError

MESH_SUFFIXES = (".off", ".obj", ".ply", ".stl")


@dataclass
class Mesh:
    """A triangle mesh. verts: (V, 3) float64 (file units); faces: (F, 3) int64; name: a label."""

    verts: np.ndarray
    faces: np.ndarray
    name: str = ""

    @property
    def bbox_diagonal(self) -> float:
        """Length of the diagonal of the axis-aligned bounding box of the referenced vertices."""
        used = self.verts[np.unique(self.faces)] if self.faces.size else self.verts
        return float(np.linalg.norm(used.max(0) - used.min(0)))

    def face_areas(self) -> np.ndarray:
        """(F,) float64 triangle areas."""
        t = self.verts[self.faces]
        return 0.5 * np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, 3) float64 points uniformly distributed (by area) on the surface."""
        areas = self.face_areas()
        idx = rng.choice(len(areas), size=n, p=areas / areas.sum())
        r1, r2 = np.sqrt(rng.random(n)), rng.random(n)
        t = self.verts[self.faces[idx]]
        return ((1 - r1)[:, None] * t[:, 0] + (r1 * (1 - r2))[:, None] * t[:, 1]
                + (r1 * r2)[:, None] * t[:, 2])


# --------------------------------------------------------------------------------------------- read

def load_mesh(path: str | os.PathLike, name: str | None = None, quiet: bool = False) -> Mesh:
    """Read and validate a triangle mesh (.off, .obj, .ply, .stl).

    Polygons are fan-triangulated; degenerate and duplicate faces are dropped (logged unless
    ``quiet``). Raises NtdmError naming the file and the problem."""
    path = Path(path)
    if not path.exists():
        raise NtdmError(f"{path}: no such file")
    if path.is_dir():
        raise NtdmError(f"{path}: is a folder, expected a mesh file")
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path], tuple[np.ndarray, np.ndarray]]] = {
        ".off": _read_off, ".obj": _read_obj, ".ply": _read_trimesh, ".stl": _read_trimesh}
    if suffix not in readers:
        raise NtdmError(f"{path}: unsupported mesh format '{suffix}' (expected {', '.join(MESH_SUFFIXES)})")
    try:
        verts, faces = readers[suffix](path)
    except NtdmError:
        raise
    except UnicodeDecodeError:
        raise NtdmError(f"{path}: unreadable {suffix[1:].upper()} file (not text)")
    except OSError as exc:
        raise NtdmError(f"{path}: cannot read the file ({exc.strerror or exc})")
    return validate_mesh(verts, faces, str(path), name=name if name is not None else path.stem, quiet=quiet)


def validate_mesh(verts, faces, where: str, name: str = "", quiet: bool = False) -> Mesh:
    """Check and clean raw arrays: verts (V, 3) float, faces (F, 3) int. ``where`` names the source."""
    verts = np.asarray(verts, dtype=np.float64).reshape(-1, 3) if np.size(verts) else np.zeros((0, 3))
    faces = np.asarray(faces).reshape(-1, 3) if np.size(faces) else np.zeros((0, 3), np.int64)
    if len(verts) == 0:
        raise NtdmError(f"{where}: empty mesh (no vertices)")
    if len(faces) == 0:
        raise NtdmError(f"{where}: empty mesh (no faces)")
    bad = ~np.isfinite(verts).all(1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise NtdmError(f"{where}: vertex {i} has a non-finite coordinate ({', '.join(map(str, verts[i]))})"
                        + (f" and {int(bad.sum()) - 1} more" if bad.sum() > 1 else ""))
    if not np.issubdtype(faces.dtype, np.integer):
        if not np.all(np.isfinite(faces)) or np.any(faces != np.round(faces)):
            raise NtdmError(f"{where}: face indices are not integers")
    faces = faces.astype(np.int64)
    out = (faces < 0) | (faces >= len(verts))
    if out.any():
        f = int(np.flatnonzero(out.any(1))[0])
        raise NtdmError(f"{where}: face {f} references vertex {int(faces[f][out[f]][0])}, "
                        f"out of range for {len(verts)} vertices")
    faces, n_degenerate, n_duplicate = clean_faces(verts, faces)
    if len(faces) == 0:
        raise NtdmError(f"{where}: empty mesh (all {n_degenerate} faces are degenerate)")
    if (n_degenerate or n_duplicate) and not quiet:
        console.print(f"[dim]{where}: dropped {n_degenerate} degenerate and {n_duplicate} duplicate faces[/dim]",
                      soft_wrap=True)
    return Mesh(verts=verts, faces=faces, name=name)


def clean_faces(verts: np.ndarray, faces: np.ndarray, rel_area: float = 1e-14) -> tuple[np.ndarray, int, int]:
    """Drop degenerate faces (repeated vertex or area below ``rel_area``·diag²) and duplicates
    (same vertex set, either orientation; the first is kept). Returns (faces, #degenerate, #duplicate)."""
    t = verts[faces]
    area2 = np.linalg.norm(np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]), axis=1)
    diag = float(np.linalg.norm(verts.max(0) - verts.min(0))) or 1.0
    degenerate = ((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])
                  | (area2 <= rel_area * diag * diag))
    keep = faces[~degenerate]
    if len(keep):
        _, first = np.unique(np.sort(keep, axis=1), axis=0, return_index=True)
        first = np.sort(first)
    else:
        first = np.zeros(0, np.int64)
    return keep[first], int(degenerate.sum()), int(len(keep) - len(first))


_OFF_HEADER = re.compile(r"^(ST)?(C)?(N)?(4)?OFF", re.IGNORECASE)


def _tokens_by_line(path: Path) -> Iterable[tuple[int, list[str]]]:
    with open(path, "r", encoding="utf-8", errors="strict") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                yield lineno, line.split()


def _read_off(path: Path) -> tuple[np.ndarray, np.ndarray]:
    lines = _tokens_by_line(path)
    try:
        lineno, first = next(lines)
    except StopIteration:
        raise NtdmError(f"{path}: empty file (expected an OFF header)")
    head = first[0]
    m = _OFF_HEADER.match(head)
    if not m:
        raise NtdmError(f"{path}: line {lineno}: not an OFF file (first token {head[:20]!r}, expected 'OFF')")
    if m.group(4):
        raise NtdmError(f"{path}: 4OFF (4-dimensional) files are not supported")
    rest = ([head[m.end():]] if head[m.end():] else []) + first[1:]
    if not rest:  # counts on the next line
        try:
            lineno, rest = next(lines)
        except StopIteration:
            raise NtdmError(f"{path}: missing the vertex/face counts line after the OFF header")
    try:
        counts = [int(x) for x in rest[:3]]
    except ValueError:
        raise NtdmError(f"{path}: line {lineno}: bad counts line {' '.join(rest)!r} (expected 'V F E')")
    if len(counts) < 2 or min(counts) < 0:
        raise NtdmError(f"{path}: line {lineno}: bad counts line {' '.join(rest)!r} (expected 'V F E')")
    n_verts, n_faces = counts[0], counts[1]
    if n_verts == 0 or n_faces == 0:
        raise NtdmError(f"{path}: empty mesh (declares {n_verts} vertices and {n_faces} faces)")
    verts = np.empty((n_verts, 3), np.float64)
    for i in range(n_verts):
        try:
            lineno, tok = next(lines)
        except StopIteration:
            raise NtdmError(f"{path}: declares {n_verts} vertices but the file ends after {i}")
        if len(tok) < 3:
            raise NtdmError(f"{path}: line {lineno}: vertex {i} has {len(tok)} values, expected 3")
        try:
            verts[i] = [float(t) for t in tok[:3]]
        except ValueError:
            raise NtdmError(f"{path}: line {lineno}: vertex {i} is not numeric: {' '.join(tok[:3])!r}")
    tris: list[list[int]] = []
    for i in range(n_faces):
        try:
            lineno, tok = next(lines)
        except StopIteration:
            raise NtdmError(f"{path}: declares {n_faces} faces but the file ends after {i}")
        try:
            n = int(tok[0])
            idx = [int(t) for t in tok[1:1 + n]]
        except ValueError:
            raise NtdmError(f"{path}: line {lineno}: face {i} is not a list of integer indices")
        if n < 3:
            raise NtdmError(f"{path}: line {lineno}: face {i} has {n} vertices, expected at least 3")
        if len(idx) < n:
            raise NtdmError(f"{path}: line {lineno}: face {i} declares {n} vertices but lists {len(idx)}")
        for j in range(1, n - 1):  # fan triangulation; trailing tokens (colours) are ignored
            tris.append([idx[0], idx[j], idx[j + 1]])
    extra = next(lines, None)
    if extra is not None:
        raise NtdmError(f"{path}: line {extra[0]}: data after the declared {n_verts} vertices and "
                        f"{n_faces} faces (wrong counts?)")
    return verts, np.asarray(tris, dtype=np.int64)


def _obj_index(token: str, n_verts: int, path: Path, lineno: int) -> int:
    try:
        i = int(token.split("/", 1)[0])
    except ValueError:
        raise NtdmError(f"{path}: line {lineno}: bad face index {token!r}")
    if i == 0:
        raise NtdmError(f"{path}: line {lineno}: face index 0 (OBJ indices start at 1)")
    return i - 1 if i > 0 else n_verts + i  # negative: relative to the vertices read so far


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    verts: list[list[float]] = []
    tris: list[list[int]] = []
    for lineno, tok in _tokens_by_line(path):
        key = tok[0]
        if key == "v":
            if len(tok) < 4:
                raise NtdmError(f"{path}: line {lineno}: vertex with {len(tok) - 1} values, expected 3")
            try:
                verts.append([float(t) for t in tok[1:4]])
            except ValueError:
                raise NtdmError(f"{path}: line {lineno}: vertex is not numeric: {' '.join(tok[1:4])!r}")
        elif key == "f":
            if len(tok) < 4:
                raise NtdmError(f"{path}: line {lineno}: face with {len(tok) - 1} vertices, expected at least 3")
            idx = [_obj_index(t, len(verts), path, lineno) for t in tok[1:]]
            for j in range(1, len(idx) - 1):
                tris.append([idx[0], idx[j], idx[j + 1]])
    return np.asarray(verts, np.float64).reshape(-1, 3), np.asarray(tris, np.int64).reshape(-1, 3)


def _read_trimesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    try:
        loaded = trimesh.load(str(path), force="mesh", process=False)
    except Exception as exc:  # noqa: BLE001 - trimesh raises many types on malformed files
        raise NtdmError(f"{path}: unreadable {path.suffix[1:].upper()} file ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0][:120] if str(exc) else 'no detail'})")
    verts = np.asarray(getattr(loaded, "vertices", np.zeros((0, 3))), np.float64)
    faces = np.asarray(getattr(loaded, "faces", np.zeros((0, 3))))
    if faces.size and faces.ndim == 2 and faces.shape[1] != 3:
        raise NtdmError(f"{path}: faces have {faces.shape[1]} vertices after loading, expected triangles")
    return verts, faces


def find_meshes(inputs: Sequence[str]) -> list[Path]:
    """Expand files, glob patterns and folders (their mesh files) into a sorted list of paths.

    Each input must match something; a folder contributes its files with a mesh suffix."""
    import glob

    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            files = [q for q in p.iterdir() if q.is_file() and q.suffix.lower() in MESH_SUFFIXES]
            if not files:
                raise NtdmError(f"{p}: folder contains no mesh files ({', '.join(MESH_SUFFIXES)})")
            found.extend(sorted(files, key=_natural_key))
        elif p.is_file():
            found.append(p)
        elif any(ch in item for ch in "*?["):
            matches = sorted((Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file()),
                             key=_natural_key)
            if not matches:
                raise NtdmError(f"{item}: pattern matches no files")
            found.extend(matches)
        else:
            raise NtdmError(f"{item}: no such file or folder")
    unique: list[Path] = []
    seen: set[str] = set()
    for p in found:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", str(p))]


# -------------------------------------------------------------------------------------------- write

from ntdm_cli.fsutil import atomic_write as _atomic_write  # noqa: E402


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _fmt_rows(arr: np.ndarray, prefix: str, fmt: str) -> str:
    if len(arr) == 0:
        return ""
    line = (prefix + " " if prefix else "") + " ".join([fmt] * arr.shape[1]) + "\n"
    return "".join(line % tuple(r) for r in arr.tolist())


def write_obj(path: str | os.PathLike, verts, faces, vertex_colors=None, verts_uvs=None, faces_uvs=None,
              texture=None) -> Path:
    """Write a Wavefront OBJ (atomically).

    verts: (V, 3) float; faces: (F, 3) int (0-based);
    vertex_colors: optional (V, 3) float in [0, 1] (``v x y z r g b``, read by trimesh and Open3D);
    verts_uvs: optional (T, 2) float in [0, 1], (0, 0) = top-left of the texture image (the
    ``grid_sample`` layout of the renderer; written as ``vt u 1-v`` per the OBJ convention);
    faces_uvs: (F, 3) int indices into verts_uvs (required with verts_uvs);
    texture: optional (H, W, 3|4) image (uint8, or float in [0, 1]) written next to the OBJ as
    ``<stem>.png`` with a ``<stem>.mtl`` material (requires UVs).
    Accepts numpy arrays or torch tensors. Returns the OBJ path."""
    path = Path(path)
    verts = _as_numpy(verts).astype(np.float64).reshape(-1, 3)
    faces = _as_numpy(faces).astype(np.int64).reshape(-1, 3)
    if len(faces) and (faces.min() < 0 or faces.max() >= len(verts)):
        raise NtdmError(f"{path}: face indices out of range for {len(verts)} vertices")
    if vertex_colors is not None:
        vertex_colors = np.clip(_as_numpy(vertex_colors).astype(np.float64).reshape(-1, 3), 0.0, 1.0)
        if len(vertex_colors) != len(verts):
            raise NtdmError(f"{path}: {len(vertex_colors)} vertex colours for {len(verts)} vertices")
    if (verts_uvs is None) != (faces_uvs is None):
        raise NtdmError(f"{path}: verts_uvs and faces_uvs must be given together")
    if texture is not None and verts_uvs is None:
        raise NtdmError(f"{path}: a texture needs verts_uvs and faces_uvs")
    if verts_uvs is not None:
        verts_uvs = _as_numpy(verts_uvs).astype(np.float64).reshape(-1, 2)
        faces_uvs = _as_numpy(faces_uvs).astype(np.int64).reshape(-1, 3)
        if faces_uvs.shape != faces.shape:
            raise NtdmError(f"{path}: faces_uvs has shape {faces_uvs.shape}, faces {faces.shape}")
        if len(faces_uvs) and (faces_uvs.min() < 0 or faces_uvs.max() >= len(verts_uvs)):
            raise NtdmError(f"{path}: faces_uvs out of range for {len(verts_uvs)} texture coordinates")
    parts = [f"# written by ntdm: {len(verts)} vertices, {len(faces)} faces\n"]
    if texture is not None:
        stem = path.stem
        parts.append(f"mtllib {stem}.mtl\nusemtl material_0\n")
        image = _as_numpy(texture)
        if image.dtype != np.uint8:
            image = (np.clip(image.astype(np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)
        if image.ndim != 3 or image.shape[2] not in (3, 4):
            raise NtdmError(f"{path}: texture must be (H, W, 3|4), got {image.shape}")
        from PIL import Image

        png, mtl = path.with_name(f"{stem}.png"), path.with_name(f"{stem}.mtl")
        _atomic_write(png, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
        mtl_text = (f"newmtl material_0\nKa 1.000 1.000 1.000\nKd 1.000 1.000 1.000\nKs 0.000 0.000 0.000\n"
                    f"d 1.0\nillum 1\nmap_Kd {png.name}\n")
        _atomic_write(mtl, lambda tmp: Path(tmp).write_text(mtl_text))
    if vertex_colors is not None:
        parts.append(_fmt_rows(np.concatenate([verts, vertex_colors], 1), "v", "%.9g"))
    else:
        parts.append(_fmt_rows(verts, "v", "%.9g"))
    if verts_uvs is not None:
        parts.append(_fmt_rows(np.stack([verts_uvs[:, 0], 1.0 - verts_uvs[:, 1]], 1), "vt", "%.7g"))
        corners = np.stack([faces + 1, faces_uvs + 1], 2).reshape(-1, 6)
        parts.append("".join("f %d/%d %d/%d %d/%d\n" % tuple(r) for r in corners.tolist()))
    else:
        parts.append(_fmt_rows(faces + 1, "f", "%d"))
    text = "".join(parts)
    return _atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_off(path: str | os.PathLike, verts, faces, number_format: str = "%.9g") -> Path:
    """Write an OFF file (atomically). verts: (V, 3) float; faces: (F, 3) int (0-based);
    ``number_format``: %-format of one coordinate (the synthetic CAD catalogue writes ``%.6f``)."""
    path = Path(path)
    verts = _as_numpy(verts).astype(np.float64).reshape(-1, 3)
    faces = _as_numpy(faces).astype(np.int64).reshape(-1, 3)
    text = (f"OFF\n{len(verts)} {len(faces)} 0\n" + _fmt_rows(verts, "", number_format)
            + _fmt_rows(np.concatenate([np.full((len(faces), 1), 3), faces], 1), "", "%d"))
    return _atomic_write(path, lambda tmp: Path(tmp).write_text(text))
