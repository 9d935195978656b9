"""Readers for PASCAL3D+, Occluded-PASCAL3D+ and OOD-CV (and the ``ntdm synth`` benchmark, which is
written in exactly these layouts), plus the writer of PASCAL3D+ ``.mat`` annotation records.

(Over 400 lines: reader and writer of the ``.mat`` record must agree field by field, and the three
datasets share one index of entries, so they are kept in one module.)

Layouts (``root`` is a PASCAL3D+ release folder; the other two default to sub-folders of it)::

    root/Annotations/<cat>_imagenet/<name>.mat     record (PASCAL3D+ struct, see below)
    root/Annotations/<cat>_pascal/<name>.mat
    root/Images/<cat>_imagenet/<name>.JPEG          (record.filename gives the file name)
    root/Image_sets/<cat>_imagenet_<split>.txt      one name per line (split: train | val)
    root/CAD/<cat>/NN.off                           NN 1-based; cad_index in the records is 1-based
    root/Masks/<cat>_imagenet/<name>.png            amodal masks (ntdm synth only; absent in PASCAL3D+)

    occluded_root (default root/OccludedPASCAL3D):
      images/<cat>FGL<l>_BGL<l>/<name>.JPEG, annotations/<cat>FGL<l>_BGL<l>/<name>.npz
      (occluder_mask, mask, box, occluder_box, source, category, occluder_level),
      lists/<cat>FGL<l>_BGL<l>.txt; the pose comes from root/Annotations/<cat>_imagenet/<name>.mat

    ood_root (default root/OOD_CV):
      lists/<cat>_<nuisance>.txt, images/<cat>/<name>.JPEG, annotations/<cat>/<name>.mat (PASCAL3D+
      records), masks/<cat>/<name>.png (synth only); nuisance: shape | pose | texture | context | weather

The record, as ``scipy.io.loadmat`` returns it: ``rec = loadmat(f)["record"][0, 0]``;
``rec["imgsize"][0] = [width, height, depth]``; ``obj = rec["objects"][0, k]`` with ``obj["class"][0]``,
``obj["bbox"][0] = [x1, y1, x2, y2]`` (1-based, inclusive pixels), ``obj["cad_index"][0, 0]`` (1-based),
``vp = obj["viewpoint"][0, 0]`` (empty when not annotated) with ``vp["azimuth"][0, 0]`` etc. in
**degrees**, ``distance``, ``focal``, ``px``, ``py`` (1-based pixel coordinates: MATLAB puts pixel
centres at integers), ``viewport``.

Conversion to :class:`Sample` (docs/design.md's camera): angles in radians; ``px, py`` minus 0.5 (ntdm puts
the centre of 0-based pixel (r, c) at (c + 0.5, r + 0.5)); ``bbox`` as continuous pixel edges
``(x1 - 1, y1 - 1, x2, y2)``; ``cad_index`` 0-based.
"""

from __future__ import annotations

import math
import os
import zipfile
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ntdm_cli.conventions import ANGLE_KEYS, VP_KEYS
from ntdm_cli.errors import ImageError, MissingInputError, NtdmError, NtdmUsageError, short

NUISANCES = ("shape", "pose", "texture", "context", "weather")
#: PASCAL3D+'s 12 rigid categories
PASCAL3D_CATEGORIES = ("aeroplane", "bicycle", "boat", "bottle", "bus", "car", "chair", "diningtable",
                       "motorbike", "sofa", "train", "tvmonitor")


@dataclass
class Sample:
    """One annotated object instance.

    image: (H, W, 3) uint8 RGB. viewpoint: dict of floats (azimuth, elevation, theta in radians;
    distance; focal; px, py in pixels, centre of pixel (r, c) at (c + 0.5, r + 0.5); viewport).
    cad_index: 0-based. bbox: (x0, y0, x1, y1) continuous pixel edges. amodal_mask / occluder_mask:
    (H, W) bool or None. occlusion_level: 0-3. nuisance: "" for i.i.d., else the OOD-CV nuisance.
    instance_scale: per-axis scale of the instance relative to its CAD (synth only, else None).
    """

    image: np.ndarray
    category: str
    image_id: str
    viewpoint: dict
    cad_index: int
    bbox: tuple
    amodal_mask: np.ndarray | None = None
    occluder_mask: np.ndarray | None = None
    occlusion_level: int = 0
    nuisance: str = ""
    image_path: str = ""
    instance_scale: tuple | None = None

    @property
    def visible_mask(self) -> np.ndarray | None:
        """Amodal mask minus occluders (None without an amodal mask)."""
        if self.amodal_mask is None:
            return None
        if self.occluder_mask is None:
            return self.amodal_mask.copy()
        return self.amodal_mask & ~self.occluder_mask


# ----------------------------------------------------------------------------------------------- .mat


def _struct(fields: dict) -> np.ndarray:
    """A 1×1 MATLAB struct for scipy.io.savemat (values wrapped the way MATLAB stores them)."""
    arr = np.zeros((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        arr[0, 0][k] = v
    return arr


def _struct_array(items: list[dict]) -> np.ndarray:
    keys = list(items[0]) if items else []
    arr = np.zeros((1, len(items)), dtype=[(k, object) for k in keys])
    for i, it in enumerate(items):
        for k in keys:
            arr[0, i][k] = it[k]
    return arr


def _num(x: float) -> np.ndarray:
    return np.array([[float(x)]])


def write_record(path: str | os.PathLike, filename: str, width: int, height: int, objects: list[dict],
                 database: str = "ImageNet") -> None:
    """Write a PASCAL3D+ annotation ``.mat`` (temp file + rename).

    objects: dicts with ``class`` (str), ``bbox`` (x1, y1, x2, y2) 1-based inclusive, ``cad_index``
    (1-based), ``viewpoint`` dict in PASCAL3D+ units (azimuth/elevation/theta in degrees, px/py 1-based)
    and optionally ``truncated``, ``occluded``, ``difficult``, ``instance_scale`` (3,) (an ntdm extension).
    """
    import scipy.io

    objs = []
    for o in objects:
        vp = o["viewpoint"]
        b = [float(v) for v in o["bbox"]]
        view = _struct({
            "azimuth_coarse": _num(vp["azimuth"]), "azimuth": _num(vp["azimuth"]),
            "elevation_coarse": _num(vp["elevation"]), "elevation": _num(vp["elevation"]),
            "distance": _num(vp["distance"]), "focal": _num(vp.get("focal", 1.0)),
            "px": _num(vp["px"]), "py": _num(vp["py"]), "theta": _num(vp["theta"]), "error": _num(0.0),
            "interval_azimuth": _num(0.0), "interval_elevation": _num(0.0), "num_anchor": _num(0.0),
            "viewport": _num(vp.get("viewport", 3000.0)),
        })
        rec = {
            "class": np.array([o["class"]]),
            "view": np.array([o.get("view", "")]) if o.get("view") else np.zeros((0, 0)),
            "truncated": _num(o.get("truncated", 0)), "occluded": _num(o.get("occluded", 0)),
            "difficult": _num(o.get("difficult", 0)),
            "bbox": np.array([b]),
            "bndbox": _struct({"xmin": np.array([str(int(round(b[0])))]), "ymin": np.array([str(int(round(b[1])))]),
                               "xmax": np.array([str(int(round(b[2])))]), "ymax": np.array([str(int(round(b[3])))])}),
            "cad_index": _num(o["cad_index"]),
            "anchors": np.zeros((0, 0)),
            "viewpoint": view,
        }
        if o.get("instance_scale") is not None:
            rec["instance_scale"] = np.array([[float(s) for s in o["instance_scale"]]])
        objs.append(rec)
    record = _struct({
        "filename": np.array([filename]), "folder": np.array([str(Path(path).parent.name)]),
        "source": _struct({"database": np.array([database])}),
        "size": _struct({"width": _num(width), "height": _num(height), "depth": _num(3)}),
        "segmented": _num(0), "imgsize": np.array([[float(width), float(height), 3.0]]),
        "database": np.array([database]),
        "objects": _struct_array(objs) if objs else np.zeros((0, 0)),
    })
    path = Path(path)
    from ntdm_cli.fsutil import atomic_write

    atomic_write(path, lambda tmp: scipy.io.savemat(tmp, {"record": record}, do_compression=True))


def _scalar(x: Any) -> float:
    a = np.asarray(x, dtype=object) if not isinstance(x, np.ndarray) else x
    while isinstance(a, np.ndarray):
        if a.size != 1:
            raise ValueError(f"expected one value, found {a.size}")
        a = a.reshape(-1)[0]
    return float(a)


def _string(x: Any) -> str:
    a = x
    while isinstance(a, np.ndarray):
        if a.size == 0:
            return ""
        a = a.reshape(-1)[0]
    return str(a)


@dataclass
class RecordObject:
    """One object of a record, converted to ntdm conventions (or ``problem`` says why it is unusable)."""

    category: str
    bbox: tuple | None = None
    cad_index: int | None = None
    viewpoint: dict | None = None
    instance_scale: tuple | None = None
    truncated: bool = False
    occluded: bool = False
    difficult: bool = False
    problem: str = ""


@dataclass
class Record:
    filename: str
    width: int
    height: int
    objects: list[RecordObject] = field(default_factory=list)


def read_record(path: str | os.PathLike) -> Record:
    """Parse a PASCAL3D+ annotation ``.mat``. Raises NtdmError naming the file when it is missing,
    unreadable or lacks the record structure; per-object problems (no viewpoint, distance ≤ 0,
    non-finite values) are reported in ``RecordObject.problem`` instead."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise NtdmError(f"{path}: annotation file not found")
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # noqa: BLE001 - scipy raises many types (MatReadError, ValueError, ...)
        raise NtdmError(f"{path}: not a readable .mat file ({exc.__class__.__name__})")
    try:
        rec = mat["record"][0, 0]
        names = rec.dtype.names or ()
        filename = _string(rec["filename"]) if "filename" in names else ""
        imgsize = np.asarray(rec["imgsize"], dtype=float).reshape(-1) if "imgsize" in names else np.zeros(0)
        objects = rec["objects"]
    except (KeyError, IndexError, ValueError, TypeError) as exc:
        raise NtdmError(f"{path}: no PASCAL3D+ 'record' struct with objects ({exc.__class__.__name__})")
    width, height = (int(imgsize[0]), int(imgsize[1])) if imgsize.size >= 2 else (0, 0)
    out = Record(filename=filename, width=width, height=height)
    if not isinstance(objects, np.ndarray) or objects.dtype.names is None:
        return out
    for obj in objects.reshape(-1):
        onames = obj.dtype.names
        cls = _string(obj["class"]) if "class" in onames else ""
        ro = RecordObject(category=cls)
        try:
            for flag in ("truncated", "occluded", "difficult"):
                if flag in onames and np.asarray(obj[flag]).size:
                    setattr(ro, flag, bool(_scalar(obj[flag])))
            b = np.asarray(obj["bbox"], dtype=float).reshape(-1)
            if b.size != 4 or not np.all(np.isfinite(b)):
                ro.problem = "bad bbox"
            else:
                ro.bbox = (b[0] - 1.0, b[1] - 1.0, b[2], b[3])
            vp = obj["viewpoint"] if "viewpoint" in onames else np.zeros((0, 0))
            if not isinstance(vp, np.ndarray) or vp.size == 0 or vp.dtype.names is None:
                ro.problem = ro.problem or "empty viewpoint"
            else:
                vp = vp.reshape(-1)[0]
                vnames = vp.dtype.names
                if "distance" not in vnames or "azimuth" not in vnames:
                    ro.problem = ro.problem or "viewpoint without azimuth/distance (coarse only)"
                else:
                    v = {}
                    for k in VP_KEYS:
                        default = {"focal": 1.0, "viewport": 3000.0, "theta": 0.0}.get(k)
                        if k in vnames and np.asarray(vp[k]).size:
                            v[k] = _scalar(vp[k])
                        elif default is not None:
                            v[k] = default
                        else:
                            raise ValueError(f"viewpoint lacks {k}")
                    for k in ANGLE_KEYS:
                        v[k] = math.radians(v[k])
                    v["px"] -= 0.5
                    v["py"] -= 0.5
                    if not all(math.isfinite(x) for x in v.values()):
                        ro.problem = ro.problem or "non-finite viewpoint"
                    elif v["distance"] <= 0:
                        ro.problem = ro.problem or "distance <= 0"
                    ro.viewpoint = v
            if "cad_index" in onames and np.asarray(obj["cad_index"]).size:
                ro.cad_index = int(round(_scalar(obj["cad_index"]))) - 1
                if ro.cad_index < 0:
                    ro.problem = ro.problem or "cad_index < 1"
            else:
                ro.problem = ro.problem or "no cad_index"
            if "instance_scale" in onames and np.asarray(obj["instance_scale"]).size == 3:
                ro.instance_scale = tuple(float(s) for s in np.asarray(obj["instance_scale"], dtype=float).reshape(-1))
        except (KeyError, IndexError, ValueError, TypeError) as exc:
            ro.problem = ro.problem or f"malformed object ({exc})"
        out.objects.append(ro)
    return out


# --------------------------------------------------------------------------------------------- images


def to_rgb8(im, path: str | os.PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB of a PIL image in any mode: 8-bit modes (L, P, RGBA, CMYK, ...) by PIL's
    conversion; 16-bit grayscale (I;16*) scaled from 0..65535; 32-bit integer (I) from 0..65535 (or
    0..255 when no value exceeds 255); float (F) from 0..1 (or 0..255 when values exceed 1). Other
    ranges, negative or non-finite values are refused with :class:`ImageError`."""
    mode = im.mode
    if mode not in ("I", "F") and not mode.startswith("I;16"):
        try:
            return np.asarray(im.convert("RGB"))
        except ValueError:
            raise ImageError(f"{short(path)}: unsupported image mode {mode}")
    arr = np.asarray(im).astype(np.float64)
    if arr.ndim != 2:
        raise ImageError(f"{short(path)}: unsupported image mode {mode} with shape {arr.shape}")
    if arr.size == 0:
        raise ImageError(f"{short(path)}: empty image")
    lo, hi = float(arr.min()), float(arr.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ImageError(f"{short(path)}: {mode} image has non-finite pixel values")
    if lo < 0:
        raise ImageError(f"{short(path)}: {mode} image has negative pixel values (min {lo:g}); expected an intensity")
    if mode.startswith("I;16"):
        full = 65535.0
    elif mode == "I":
        full = 255.0 if hi <= 255 else 65535.0
    else:  # F
        full = 1.0 if hi <= 1 else 255.0
    if hi > full:
        raise ImageError(f"{short(path)}: {mode} image values reach {hi:g}; expected 0..{full:g}")
    gray = np.clip(arr * (255.0 / full) + 0.5, 0, 255).astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1)


def load_image(path: str | os.PathLike, max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of any image file PIL reads (see :func:`to_rgb8` for 16-bit and float
    images); ``max_side``: images with a longer side are reduced to it (bilinear). A missing file is
    :class:`MissingInputError`, anything unreadable :class:`ImageError` naming the file."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            rgb = to_rgb8(im, path)
    except FileNotFoundError:
        raise MissingInputError(f"{short(path)}: image file not found")
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{short(path)}: image too large to decode safely ({short(exc, 120)})")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{short(path)}: unreadable image ({exc.__class__.__name__})")
    if max_side is not None and max(rgb.shape[:2]) > max_side:
        s = max_side / max(rgb.shape[:2])
        pil = Image.fromarray(rgb)
        pil = pil.resize((max(1, round(pil.width * s)), max(1, round(pil.height * s))), Image.Resampling.BILINEAR)
        rgb = np.asarray(pil)
    return rgb.copy() if not rgb.flags.writeable else rgb


def load_mask(path: str | os.PathLike) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("L")) > 127
    except (UnidentifiedImageError, OSError) as exc:
        raise NtdmError(f"{path}: unreadable mask ({exc.__class__.__name__})")


def read_list(path: Path) -> list[str]:
    """Names in an image-set list (first token per line, extension dropped). A name that is not a
    plain relative name inside its folder (absolute, ``..``, a drive) is refused with the line number:
    a list must not make ntdm read files outside the dataset."""
    names = []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise NtdmError(f"{short(path)}: unreadable image-set list ({exc.__class__.__name__})")
    for lineno, line in enumerate(text.splitlines(), 1):
        tok = line.strip().split(" ")[0] if line.strip() else ""
        if not tok:
            continue
        parts = tok.replace("\\", "/").split("/")
        if tok.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
            raise NtdmError(f"{short(path)}:{lineno}: entry {short(tok, 80)!r} leaves the dataset folder")
        names.append(tok.rsplit(".", 1)[0] if tok.lower().endswith((".jpeg", ".jpg", ".png")) else tok)
    return names


# -------------------------------------------------------------------------------------------- dataset


@dataclass
class _Entry:
    category: str
    image_id: str
    image_path: Path
    record_object: RecordObject
    mask_path: Path | None
    occ_npz: Path | None
    occlusion_level: int
    nuisance: str


class Pascal3DDataset:
    """PASCAL3D+ (``occlusion=0``), Occluded-PASCAL3D+ (``occlusion`` 1-3, the FGL<l>_BGL<l> sets, val
    only) or OOD-CV (``nuisance`` one of shape | pose | texture | context | weather), as a sequence of
    :class:`Sample`.

    root: the PASCAL3D+ folder (or an ``ntdm synth`` output). categories: names or None (all found).
    split: "train" | "val". subset: "imagenet" | "pascal". One sample per image (its first usable
    object of the category, as NeMo does) unless ``all_objects``. Unusable entries (missing files,
    corrupt .mat, no/empty viewpoint, distance ≤ 0) are skipped and counted in ``self.skipped``;
    one warning line summarises them. Raises NtdmError when nothing usable is found.
    """

    def __init__(self, root: str | os.PathLike, categories: Sequence[str] | str | None = None,
                 split: str = "val", occlusion: int = 0, nuisance: str | None = None, *,
                 subset: str = "imagenet", occluded_root: str | os.PathLike | None = None,
                 ood_root: str | os.PathLike | None = None, all_objects: bool = False,
                 limit: int | None = None, warn: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise MissingInputError(f"{short(self.root)}: dataset folder not found")
        if split not in ("train", "val"):
            raise NtdmUsageError(f"split {split!r}: expected train or val")
        if occlusion not in (0, 1, 2, 3):
            raise NtdmUsageError(f"occlusion {occlusion!r}: expected 0, 1, 2 or 3")
        nuisance = nuisance or ""
        if nuisance and nuisance not in NUISANCES:
            raise NtdmUsageError(f"nuisance {nuisance!r}: expected one of {', '.join(NUISANCES)}")
        if nuisance and occlusion:
            raise NtdmUsageError("choose either an occlusion level or an OOD nuisance, not both")
        if occlusion and split != "val":
            raise NtdmUsageError("Occluded-PASCAL3D+ only has the val split")
        self.split, self.occlusion, self.nuisance, self.subset = split, occlusion, nuisance, subset
        self.occluded_root = Path(occluded_root) if occluded_root else self.root / "OccludedPASCAL3D"
        self.ood_root = Path(ood_root) if ood_root else self.root / "OOD_CV"
        self.all_objects = all_objects
        self.skipped: Counter = Counter()
        self.meta = self._read_meta()
        if isinstance(categories, str):
            categories = [c for c in categories.split(",") if c]
        self.categories = list(categories) if categories else self._discover_categories()
        if not self.categories:
            raise NtdmError(f"{self.root}: no categories found")
        self.entries: list[_Entry] = []
        for cat in self.categories:
            self._index(cat, limit)
        if warn and self.skipped:
            from ntdm_cli.console import warn as _warn

            total = sum(self.skipped.values())
            detail = ", ".join(f"{n} {why}" for why, n in self.skipped.most_common())
            _warn(f"{self.root}: skipped {total} entries ({detail})")
        if not self.entries:
            raise NtdmError(f"{self.describe()}: no usable annotated images found")

    # -- layout helpers
    def describe(self) -> str:
        what = f"OOD-CV {self.nuisance}" if self.nuisance else (
            f"Occluded-PASCAL3D+ L{self.occlusion}" if self.occlusion else f"PASCAL3D+ {self.split}")
        return f"{self.root} ({what})"

    def _read_meta(self) -> dict:
        p = self.root / "ntdm_synth.yaml"
        if not p.is_file():
            return {}
        import yaml

        try:
            return yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError:
            raise NtdmError(f"{p}: invalid YAML")

    def _discover_categories(self) -> list[str]:
        if self.nuisance:
            lists = self.ood_root / "lists"
            cats = {p.name[: -len(f"_{self.nuisance}.txt")] for p in lists.glob(f"*_{self.nuisance}.txt")} if lists.is_dir() else set()
            return sorted(cats)
        ann = self.root / "Annotations"
        if not ann.is_dir():
            raise NtdmError(f"{self.root}: no Annotations folder (is this a PASCAL3D+ root?)")
        suffix = f"_{self.subset}"
        return sorted(p.name[: -len(suffix)] for p in ann.iterdir() if p.is_dir() and p.name.endswith(suffix))

    def _list_path(self, cat: str) -> Path:
        if self.nuisance:
            return self.ood_root / "lists" / f"{cat}_{self.nuisance}.txt"
        if self.occlusion:
            lv = f"{cat}FGL{self.occlusion}_BGL{self.occlusion}"
            p = self.occluded_root / "lists" / f"{lv}.txt"
            return p if p.is_file() else self.root / "Image_sets" / f"{cat}_{self.subset}_val.txt"
        for name in (f"{cat}_{self.subset}_{self.split}.txt", f"{cat}_{self.split}.txt"):
            p = self.root / "Image_sets" / name
            if p.is_file():
                return p
        return self.root / "Image_sets" / f"{cat}_{self.subset}_{self.split}.txt"

    def _index(self, cat: str, limit: int | None) -> None:
        lp = self._list_path(cat)
        if not lp.is_file():
            raise NtdmError(f"{lp}: image-set list not found")
        names = read_list(lp)
        count = 0
        for name in names:
            if limit is not None and count >= limit:
                break
            if self.nuisance:
                ann = self.ood_root / "annotations" / cat / f"{name}.mat"
                img_dir, mask_dir = self.ood_root / "images" / cat, self.ood_root / "masks" / cat
                key, occ_npz = f"OOD_CV/{self.nuisance}/{cat}/{name}", None
            elif self.occlusion:
                lv = f"{cat}FGL{self.occlusion}_BGL{self.occlusion}"
                ann = self.root / "Annotations" / f"{cat}_{self.subset}" / f"{name}.mat"
                img_dir, mask_dir = self.occluded_root / "images" / lv, self.root / "Masks" / f"{cat}_{self.subset}"
                key, occ_npz = f"{lv}/{name}", self.occluded_root / "annotations" / lv / f"{name}.npz"
                if not occ_npz.is_file():
                    self.skipped["missing occluder annotation"] += 1
                    continue
            else:
                ann = self.root / "Annotations" / f"{cat}_{self.subset}" / f"{name}.mat"
                img_dir, mask_dir = self.root / "Images" / f"{cat}_{self.subset}", self.root / "Masks" / f"{cat}_{self.subset}"
                key, occ_npz = f"{cat}_{self.subset}/{name}", None
            if not ann.is_file():
                self.skipped["missing annotation"] += 1
                continue
            try:
                rec = read_record(ann)
            except NtdmError:
                self.skipped["unreadable .mat"] += 1
                continue
            img = self._image_path(img_dir, name, rec.filename)
            if img is None:
                self.skipped["missing image"] += 1
                continue
            mask = mask_dir / f"{name}.png"
            found = 0
            for k, obj in enumerate(rec.objects):
                if obj.category != cat:
                    continue
                if obj.problem:
                    self.skipped[obj.problem] += 1
                    continue
                image_id = key if found == 0 else f"{key}#{k}"
                self.entries.append(_Entry(cat, image_id, img, obj, mask if (mask.is_file() and found == 0) else None,
                                           occ_npz, self.occlusion, self.nuisance))
                found += 1
                if not self.all_objects:
                    break
            if found == 0 and not any(o.category == cat and o.problem for o in rec.objects):
                self.skipped[f"no {cat} object"] += 1
            count += found > 0

    @staticmethod
    def _image_path(folder: Path, name: str, filename: str) -> Path | None:
        plain = filename and Path(filename).name == filename and filename not in (".", "..")  # never outside folder
        cands = [folder / filename] if plain else []
        cands += [folder / f"{name}{ext}" for ext in (".JPEG", ".jpg", ".jpeg", ".png")]
        for c in cands:
            if c.is_file():
                return c
        return None

    # -- sequence protocol
    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[Sample]:
        """The samples in order; images that cannot be read are skipped, counted in ``self.skipped``
        and named in one warning at the end (like unreadable .mat files at indexing)."""
        bad: list[str] = []
        for i in range(len(self)):
            try:
                sample = self[i]
            except ImageError:
                bad.append(str(self.entries[i].image_path))
                continue
            yield sample
        if bad:
            self.skipped["unreadable image"] += len(bad)
            from ntdm_cli.console import warn_skipped

            warn_skipped(f"{short(self.root)}: skipped", bad, "unreadable image")

    def __getitem__(self, i: int) -> Sample:
        e = self.entries[i]
        image = load_image(e.image_path)
        amodal = load_mask(e.mask_path) if e.mask_path is not None else None
        occluder = None
        if e.occ_npz is not None:
            try:
                with np.load(e.occ_npz, allow_pickle=False) as z:
                    occluder = np.asarray(z["occluder_mask"]).astype(bool)
                    if amodal is None and "mask" in z.files and np.asarray(z["mask"]).shape == image.shape[:2]:
                        amodal = np.asarray(z["mask"]).astype(bool)
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                raise NtdmError(f"{e.occ_npz}: unreadable occluder annotation ({exc.__class__.__name__})")
        for m, what in ((amodal, "amodal mask"), (occluder, "occluder mask")):
            if m is not None and m.shape != image.shape[:2]:
                raise NtdmError(f"{e.image_path}: {what} is {m.shape}, image is {image.shape[:2]}")
        o = e.record_object
        return Sample(image=image, category=e.category, image_id=e.image_id, viewpoint=dict(o.viewpoint),
                      cad_index=int(o.cad_index), bbox=tuple(float(b) for b in o.bbox), amodal_mask=amodal,
                      occluder_mask=occluder, occlusion_level=e.occlusion_level, nuisance=e.nuisance,
                      image_path=str(e.image_path), instance_scale=o.instance_scale)

    # -- preprocessing defaults
    @property
    def target_distance(self) -> float:
        """Distance the NeMo-style preprocessing rescales objects to (5 for PASCAL3D+)."""
        return float(self.meta.get("preprocess", {}).get("target_distance", 5.0))

    def crop_size(self, category: str) -> tuple[int, int]:
        """(H, W) crop for ``category``, multiples of 32 (NeMo's sizes, or the synth dataset's own)."""
        from ntdm_cli.data.preprocess import crop_size

        sizes = self.meta.get("preprocess", {}).get("crop", {})
        if category in sizes:
            h, w = sizes[category]
            return int(h), int(w)
        return crop_size(category)

    def cad_dir(self, category: str) -> Path:
        return self.root / "CAD" / category


def with_image(sample: Sample, image: np.ndarray, **changes: Any) -> Sample:
    return replace(sample, image=image, **changes)
