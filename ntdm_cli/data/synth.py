"""``ntdm synth``: a procedural benchmark in PASCAL3D+ / Occluded-PASCAL3D+ / OOD-CV layout.

(Over 400 lines: the three layouts are written from one draw per image, so the instance sampling,
rendering and the writers of each layout stay together; the CAD catalogue is in data.cads and
data.categories, the textures and backgrounds in data.procedural.)

Every image is one instance of a procedural CAD subtype (mild random per-axis scale) at a random
viewpoint, rasterized with ntdm's own rasterizer (:func:`ntdm_cli.render.rasterize` on the annotated camera)
and shaded (Blinn-Phong or Lambert, random light) with per-part solid textures, over a random procedural background. The viewpoint
written to the ``.mat`` record is exactly the camera used to render (docs/design.md's convention; the
record stores PASCAL3D+ units: degrees and 1-based pixel coordinates, see :mod:`ntdm_cli.data.pascal3d`).

Output layout (``OUT``)::

    CAD/<cat>/NN.off                                   training subtypes (NN 1-based)
    Images/<cat>_imagenet/<cat>_NNNNN.JPEG             i.i.d. images (train + val)
    Annotations/<cat>_imagenet/<cat>_NNNNN.mat         PASCAL3D+ records
    Masks/<cat>_imagenet/<cat>_NNNNN.png               amodal masks
    Image_sets/<cat>_imagenet_{train,val}.txt
    OccludedPASCAL3D/{images,annotations}/<cat>FGL<l>_BGL<l>/..., lists/<cat>FGL<l>_BGL<l>.txt
                                                       occluded copies of the val images (L1-L3)
    OOD_CV/{images,annotations,masks}/<cat>/<cat>_<nuisance>_NNNNN.*, lists/<cat>_<nuisance>.txt
    OOD_CV/CAD_heldout/<cat>/NN.off                    the held-out subtypes of the shape split
    ntdm_synth.yaml                                    generator settings + preprocessing defaults
    dataset_index.h5                                   kind=dataset-index artifact

Deterministic: every image draws from its own generator seeded by (seed, category, kind, nuisance,
index), so runs are resumable (finished images are skipped) and independent of ``workers``.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ntdm_cli.config import section
from ntdm_cli.data import cads, procedural
from ntdm_cli.data.pascal3d import NUISANCES, write_record
from ntdm_cli.fsutil import FolderLock, atomic_write
from ntdm_cli.errors import NtdmError, NtdmUsageError

OCCLUSION_BANDS = {1: (0.2, 0.4), 2: (0.4, 0.6), 3: (0.6, 0.8)}
#: i.i.d. viewpoint distribution (degrees): elevation ~ N(8, 9) clipped, theta ~ N(0, 3) clipped
ELEVATION_IID = (8.0, 9.0, -8.0, 30.0)
THETA_IID = (0.0, 3.0, -8.0, 8.0)
#: the OOD pose split: elevation in [36, 65] and/or |theta| in [15, 35]
ELEVATION_OOD = (36.0, 65.0)
THETA_OOD = (15.0, 35.0)


@section("synth")
@dataclass
class SynthConfig:
    """Settings of ``ntdm synth`` (config section ``synth``)."""

    categories: list = field(default_factory=lambda: ["car", "bus"])
    per_category: int = 200  # i.i.d. images per category (train + val)
    size: int = 256  # image height = width, pixels
    val_fraction: float = 0.3
    occlusion: list = field(default_factory=lambda: [1, 2, 3])  # occluded copies of val images
    ood: list = field(default_factory=lambda: list(NUISANCES))
    ood_per_category: int = 0  # per nuisance and category; 0: per_category // 5 (at least 1)
    seed: int = 0
    workers: int = 1
    shading: str = "phong"  # phong | lambert | mixed
    fill: list = field(default_factory=lambda: [0.65, 0.95])  # object 3D diagonal / image size
    viewport: float = 3000.0
    jpeg_quality: int = 92

    def validate(self) -> None:
        cads.check_categories(self.categories)
        if self.per_category < 1:
            raise NtdmUsageError(f"--per-category {self.per_category}: must be at least 1")
        if not 32 <= self.size <= 4096:
            raise NtdmUsageError(f"--size {self.size}: expected 32..4096 pixels")
        if not 0 <= self.val_fraction < 1:
            raise NtdmUsageError(f"val_fraction {self.val_fraction}: expected [0, 1)")
        for lv in self.occlusion:
            if lv not in OCCLUSION_BANDS:
                raise NtdmUsageError(f"--occlusion: level {lv!r} is not one of L1, L2, L3")
        for n in self.ood:
            if n not in NUISANCES:
                raise NtdmUsageError(f"--ood: unknown nuisance {n!r} (known: {', '.join(NUISANCES)}, all, none)")
        if self.shading not in ("phong", "lambert", "mixed"):
            raise NtdmUsageError(f"shading {self.shading!r}: expected phong, lambert or mixed")
        if self.workers < 0:
            raise NtdmUsageError("--workers must be >= 0")
        if not (len(self.fill) == 2 and 0.1 <= self.fill[0] <= self.fill[1] <= 0.95):
            raise NtdmUsageError(f"fill {self.fill}: expected [lo, hi] within 0.1..0.95")

    @property
    def n_val(self) -> int:
        if self.per_category < 2 or self.val_fraction == 0:
            return 0
        return min(self.per_category - 1, max(1, int(round(self.per_category * self.val_fraction))))

    @property
    def n_ood(self) -> int:
        return self.ood_per_category if self.ood_per_category > 0 else max(1, self.per_category // 5)

    @property
    def target_distance(self) -> float:
        """Preprocessing distance: a unit-diagonal object at the middle fill (crops ≈ the image size)."""
        return round(self.viewport / (0.5 * (self.fill[0] + self.fill[1]) * self.size), 3)


def parse_levels(text: str) -> list[int]:
    """``"L1,L2,L3"`` / ``"1,3"`` / ``"none"`` -> [1, 2, 3] / [1, 3] / []."""
    text = text.strip()
    if text.lower() in ("", "none", "0"):
        return []
    out = []
    for tok in text.split(","):
        t = tok.strip().upper().lstrip("L")
        if t not in ("1", "2", "3"):
            raise NtdmUsageError(f"--occlusion: {tok.strip()!r} is not one of L1, L2, L3 (or none)")
        out.append(int(t))
    return sorted(set(out))


def parse_nuisances(text: str) -> list[str]:
    text = text.strip().lower()
    if text in ("", "none"):
        return []
    if text == "all":
        return list(NUISANCES)
    out = []
    for tok in text.split(","):
        if tok.strip() not in NUISANCES:
            raise NtdmUsageError(f"--ood: unknown nuisance {tok.strip()!r} (known: {', '.join(NUISANCES)}, all, none)")
        out.append(tok.strip())
    return [n for n in NUISANCES if n in out]


# ------------------------------------------------------------------------------------------ planning


@dataclass(frozen=True)
class Job:
    category: str
    index: int
    nuisance: str = ""  # "" for i.i.d.

    @property
    def name(self) -> str:
        return f"{self.category}_{self.index:05d}" if not self.nuisance else f"{self.category}_{self.nuisance}_{self.index:05d}"


def plan(cfg: SynthConfig) -> list[Job]:
    jobs = [Job(c, i) for c in cfg.categories for i in range(cfg.per_category)]
    jobs += [Job(c, i, n) for n in cfg.ood for c in cfg.categories for i in range(cfg.n_ood)]
    return jobs


def split_of(cfg: SynthConfig, job: Job) -> str:
    if job.nuisance:
        return "ood"
    return "val" if job.index >= cfg.per_category - cfg.n_val else "train"


def job_rng(seed: int, job: Job, stream: int = 0) -> np.random.Generator:
    key = [int(seed), zlib.crc32(job.category.encode()), zlib.crc32(job.nuisance.encode()), job.index, stream]
    return np.random.default_rng(np.random.SeedSequence(key))


def _paths(root: Path, cfg: SynthConfig, job: Job) -> dict[str, Path]:
    c, n = job.category, job.name
    if job.nuisance:
        o = root / "OOD_CV"
        return {"image": o / "images" / c / f"{n}.JPEG", "mat": o / "annotations" / c / f"{n}.mat",
                "mask": o / "masks" / c / f"{n}.png"}
    p = {"image": root / "Images" / f"{c}_imagenet" / f"{n}.JPEG", "mat": root / "Annotations" / f"{c}_imagenet" / f"{n}.mat",
         "mask": root / "Masks" / f"{c}_imagenet" / f"{n}.png"}
    if split_of(cfg, job) == "val":
        for lv in cfg.occlusion:
            d = f"{c}FGL{lv}_BGL{lv}"
            p[f"occ{lv}_image"] = root / "OccludedPASCAL3D" / "images" / d / f"{n}.JPEG"
            p[f"occ{lv}_npz"] = root / "OccludedPASCAL3D" / "annotations" / d / f"{n}.npz"
    return p


# ------------------------------------------------------------------------------------------ sampling


def _clipped_normal(rng, mean, std, lo, hi) -> float:
    return float(np.clip(rng.normal(mean, std), lo, hi))


def sample_instance(rng: np.random.Generator, cfg: SynthConfig, job: Job) -> dict:
    """Everything random about one image except the pixels: subtype, scale, viewpoint (degrees),
    materials, background, light, weather."""
    cat, nz = job.category, job.nuisance
    subtypes = cads.heldout_subtypes(cat) if nz == "shape" else cads.train_subtypes(cat)
    subtype = int(subtypes[int(rng.integers(0, len(subtypes)))])
    scale = rng.uniform(0.9, 1.1, 3)
    azimuth = float(rng.uniform(0, 360))
    elevation = _clipped_normal(rng, *ELEVATION_IID)
    theta = _clipped_normal(rng, *THETA_IID)
    if nz == "pose":
        mode = int(rng.integers(0, 3))  # 0: elevation, 1: theta, 2: both out of range
        if mode in (0, 2):
            elevation = float(rng.uniform(*ELEVATION_OOD))
        if mode in (1, 2):
            theta = float(rng.uniform(*THETA_OOD)) * (1 if rng.random() < 0.5 else -1)
    model = cads.build_cad(cat, subtype)
    fams = procedural.TEXTURES_OOD if nz == "texture" else procedural.TEXTURES_TRAIN
    materials = [procedural.part_material(rng, role, fams) for role in model.roles]
    bgs = procedural.BACKGROUNDS_OOD if nz == "context" else procedural.BACKGROUNDS_TRAIN
    shading = cfg.shading if cfg.shading != "mixed" else ("phong" if rng.random() < 0.5 else "lambert")
    light_dir = rng.normal(size=3)
    light_dir[2] = abs(light_dir[2]) + 0.5  # from the camera side (camera looks down -z)
    return {
        "subtype": subtype, "scale": scale, "azimuth": azimuth, "elevation": elevation, "theta": theta,
        "fill": float(rng.uniform(*cfg.fill)), "materials": materials,
        "background": str(bgs[int(rng.integers(0, len(bgs)))]), "bg_seed": int(rng.integers(0, 2**31)),
        "shading": shading, "light_dir": light_dir / np.linalg.norm(light_dir),
        "ambient": float(rng.uniform(0.3, 0.5)), "diffuse": float(rng.uniform(0.5, 0.8)),
        "specular": float(rng.uniform(0.1, 0.35)) if shading == "phong" else 0.0,
        "weather": str(procedural.WEATHER[int(rng.integers(0, len(procedural.WEATHER)))]) if nz == "weather" else "",
        "pos": (float(rng.random()), float(rng.random())),
        "post_seed": int(rng.integers(0, 2**31)),
    }


def place_camera(verts: np.ndarray, inst: dict, cfg: SynthConfig) -> dict:
    """Distance from the object's diagonal and the fill, principal point so that the whole object is
    inside the image with a margin (random position). Returns the viewpoint in radians/pixels."""
    import torch

    from ntdm_cli.render.camera import Viewpoint, project

    S = cfg.size
    diag = float(np.linalg.norm(verts.max(0) - verts.min(0)))
    d = cfg.viewport * diag / (inst["fill"] * S)
    margin = 0.03 * S
    pts = torch.as_tensor(verts, dtype=torch.float64)[None]
    for _ in range(20):
        vp = Viewpoint.create(math.radians(inst["azimuth"]), math.radians(inst["elevation"]), math.radians(inst["theta"]),
                              d, 1.0, 0.0, 0.0, cfg.viewport, dtype=torch.float64)
        p = project(pts, vp)[0]
        if float(p[:, 2].min()) <= 0.05 * d:
            d *= 1.2
            continue
        x0, x1 = float(p[:, 0].min()), float(p[:, 0].max())
        y0, y1 = float(p[:, 1].min()), float(p[:, 1].max())
        if x1 - x0 <= S - 2 * margin and y1 - y0 <= S - 2 * margin:
            break
        d *= 1.1
    px_lo, px_hi = margin - x0, S - margin - x1
    py_lo, py_hi = margin - y0, S - margin - y1
    px = px_lo + inst["pos"][0] * (px_hi - px_lo)
    py = py_lo + inst["pos"][1] * (py_hi - py_lo)
    return {"azimuth": math.radians(inst["azimuth"]), "elevation": math.radians(inst["elevation"]),
            "theta": math.radians(inst["theta"]), "distance": d, "focal": 1.0, "px": px, "py": py,
            "viewport": cfg.viewport}


def render_instance(inst: dict, viewpoint: dict, cfg: SynthConfig, category: str) -> tuple[np.ndarray, np.ndarray]:
    """Render the textured instance with ntdm's rasterizer (:func:`ntdm_cli.render.rasterize` on
    :func:`ntdm_cli.render.camera.project`, the annotated camera) and shade the fragments: per-part solid
    texture (albedo at the object-frame surface point), flat face normals, Lambert or Blinn-Phong with
    the instance's light (given in the camera frame). Returns (rgb (S, S, 3) float32 in [0, 1],
    mask (S, S) bool)."""
    import torch

    from ntdm_cli.render import rasterize
    from ntdm_cli.render.camera import Viewpoint, camera_center, pose_rotation, project
    from ntdm_cli.render.shading import Light, shade

    model = cads.build_cad(category, inst["subtype"])
    verts, faces, part_ids = model.mesh()
    S = cfg.size
    world = verts * inst["scale"]
    vp = Viewpoint.create(**viewpoint, dtype=torch.float64)
    screen = project(torch.as_tensor(world)[None], vp).float()
    frags = rasterize(screen, torch.as_tensor(faces), image_size=(S, S), faces_per_pixel=1)
    p2f = frags.pix_to_face[0, :, :, 0].numpy()
    mask = p2f >= 0
    fid = p2f[mask]
    bary = frags.bary_coords[0, :, :, 0][torch.as_tensor(mask)].double().numpy()  # (M, 3)
    tri = faces[fid]  # (M, 3)
    obj_pts = np.einsum("mk,mkd->md", bary, verts[tri])  # object frame (texture space)
    world_pts = np.einsum("mk,mkd->md", bary, world[tri])
    # flat normals (world), turned towards the camera (parts may be seen from inside at intersections)
    fn = np.cross(world[faces[:, 1]] - world[faces[:, 0]], world[faces[:, 2]] - world[faces[:, 0]])
    fn /= np.maximum(np.linalg.norm(fn, axis=1, keepdims=True), 1e-12)
    n = fn[fid]
    R = pose_rotation(vp.azimuth, vp.elevation, vp.theta)[0].numpy()
    C = camera_center(vp.azimuth, vp.elevation, vp.distance)[0].numpy()
    v = C[None] - world_pts
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    n = np.where((np.einsum("md,md->m", n, v) < 0)[:, None], -n, n)
    albedo = np.zeros((len(fid), 3), np.float32)
    pid = part_ids[fid]
    for k in np.unique(pid):
        sel = pid == k
        albedo[sel] = procedural.shade_pattern(obj_pts[sel].astype(np.float32), inst["materials"][int(k)])
    light = Light(direction=tuple(R.T @ inst["light_dir"]),  # camera frame -> world, the frame of n and v
                  ambient=inst["ambient"], diffuse=inst["diffuse"], specular=inst["specular"], shininess=24.0)
    col = shade(torch.from_numpy(n), torch.from_numpy(v), torch.from_numpy(albedo), light,
                "blinn_phong" if inst["shading"] == "phong" else "lambert")
    rgb = np.zeros((S, S, 3), np.float32)
    rgb[mask] = col.numpy()
    return rgb, mask


def _bbox_1based(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask)
    return [float(cols.min() + 1), float(rows.min() + 1), float(cols.max() + 1), float(rows.max() + 1)]


def _save_jpeg(path: Path, img: np.ndarray, quality: int) -> None:
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(img).save(tmp, format="JPEG", quality=quality))


def _save_mask(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    atomic_write(path, lambda tmp: Image.fromarray(mask.astype(np.uint8) * 255).convert("1").save(tmp, format="PNG"))


def _save_npz(path: Path, **arrays: Any) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def run_job(root: str, cfg_dict: dict, job: Job) -> dict:
    """Generate (or skip, when all its files exist) one image with its annotation, mask and, for val
    images, occluded copies. Returns a summary row for the dataset index."""
    cfg = SynthConfig(**cfg_dict)
    rootp = Path(root)
    paths = _paths(rootp, cfg, job)
    rng = job_rng(cfg.seed, job)
    inst = sample_instance(rng, cfg, job)
    row = {"name": job.name, "category": job.category, "nuisance": job.nuisance, "split": split_of(cfg, job),
           "subtype": inst["subtype"], "occ_ratio": {}, "skipped": False}
    if all(p.is_file() for p in paths.values()):
        row["skipped"] = True
        for lv in cfg.occlusion:
            if f"occ{lv}_npz" in paths:
                with np.load(paths[f"occ{lv}_npz"]) as z:
                    row["occ_ratio"][lv] = float(z["occluder_ratio"])
        return row
    model = cads.build_cad(job.category, inst["subtype"])
    verts = model.mesh()[0] * inst["scale"]
    vp = place_camera(verts, inst, cfg)
    obj_rgb, mask = render_instance(inst, vp, cfg, job.category)
    if not mask.any():
        raise NtdmError(f"{job.name}: the object did not cover any pixel (viewpoint {vp})")
    S = cfg.size
    bg = procedural.background(np.random.default_rng(inst["bg_seed"]), inst["background"], S, S)
    img = np.where(mask[..., None], obj_rgb, bg)
    post = np.random.default_rng(inst["post_seed"])
    clean = img
    if inst["weather"]:
        img = procedural.apply_weather(post, img, inst["weather"])
    for p in paths.values():
        p.parent.mkdir(parents=True, exist_ok=True)
    _save_jpeg(paths["image"], _to_uint8(img), cfg.jpeg_quality)
    _save_mask(paths["mask"], mask)
    cad_index = inst["subtype"] if job.nuisance != "shape" else cads.nearest_train_subtype(job.category, inst["subtype"])
    vpd = {"azimuth": inst["azimuth"], "elevation": inst["elevation"], "theta": inst["theta"],
           "distance": vp["distance"], "focal": vp["focal"], "px": vp["px"] + 0.5, "py": vp["py"] + 0.5,
           "viewport": vp["viewport"]}
    obj = {"class": job.category, "bbox": _bbox_1based(mask), "cad_index": cad_index + 1, "viewpoint": vpd,
           "instance_scale": None if job.nuisance == "shape" else inst["scale"]}
    for lv in cfg.occlusion:
        if f"occ{lv}_npz" not in paths:
            continue
        band = OCCLUSION_BANDS[lv]
        orng = job_rng(cfg.seed, job, stream=lv)
        best = None
        for _ in range(8):
            occ_img, occ_mask, ratio, boxes = procedural.add_occluders(orng, clean, mask, band)
            err = max(band[0] - ratio, ratio - band[1], 0.0)
            if best is None or err < best[0]:
                best = (err, occ_img, occ_mask, ratio, boxes)
            if err == 0.0:
                break
        _, occ_img, occ_mask, ratio, boxes = best
        rows, cols = np.nonzero(mask)
        _save_jpeg(paths[f"occ{lv}_image"], _to_uint8(occ_img), cfg.jpeg_quality)
        _save_npz(paths[f"occ{lv}_npz"], source=np.array(f"{job.name}.JPEG"), mask=mask, occluder_mask=occ_mask,
                  box=np.array([rows.min(), rows.max() + 1, cols.min(), cols.max() + 1, S, S]),
                  occluder_box=np.array(boxes, dtype=np.int64).reshape(-1, 6), category=np.array(job.category),
                  occluder_level=np.array(lv), occluder_ratio=np.array(ratio))
        row["occ_ratio"][lv] = ratio
    # the record last: an image counts as finished only when every file exists
    write_record(paths["mat"], f"{job.name}.JPEG", S, S, [obj])
    return row


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("NTDM_NO_PROGRESS", "1")


def _run_job_star(args) -> dict:
    c0 = time.process_time()
    row = run_job(*args)
    row["cpu_s"] = time.process_time() - c0
    return row


# ------------------------------------------------------------------------------------------ driver


@dataclass
class SynthSummary:
    root: Path
    images: int  # files generated in this run (i.i.d. + occluded copies + OOD)
    skipped: int  # jobs already complete
    counts: dict
    wall_s: float
    cpu_s: float  # CPU seconds summed over the images' jobs (all worker processes)
    index_path: Path


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def _crop_sizes(cfg: SynthConfig) -> dict[str, list[int]]:
    """Per-category (H, W) crops (multiples of 32) that hold any training subtype at the preprocessing
    distance, for azimuths all round and elevations up to the i.i.d. maximum, with a 15% margin."""
    from ntdm_cli.data.preprocess import round32

    f = cfg.viewport / cfg.target_distance
    emax = math.radians(ELEVATION_IID[3])
    out = {}
    for cat in cfg.categories:
        w = h = 0.0
        for i in cads.train_subtypes(cat):
            ex = cads.build_cad(cat, i).extent * 1.1  # instance scale up to 1.1
            horiz = float(np.hypot(ex[0], ex[1]))
            w = max(w, horiz)
            h = max(h, ex[2] * math.cos(emax) + horiz * math.sin(emax), ex[2])
        out[cat] = [round32(h * f * 1.15), round32(w * f * 1.15)]
    return out


def synthesize(out: str | os.PathLike, cfg: SynthConfig, *, config_yaml: str = "") -> SynthSummary:
    """Write (or complete) the synthetic benchmark under ``out``; see the module docstring for the
    layout. Returns counts and timings; writes ``out/dataset_index.h5`` (kind dataset-index)."""
    cfg.validate()
    from ntdm_cli.fsutil import make_output_folder

    root = make_output_folder(out, "OUT")
    with FolderLock(root, "OUT", "ntdm synth"):  # a second process on the same folder is refused
        return _synthesize(root, cfg, config_yaml)


def _synthesize(root: Path, cfg: SynthConfig, config_yaml: str) -> SynthSummary:
    meta_path = root / "ntdm_synth.yaml"
    import yaml

    gen = {k: v for k, v in asdict(cfg).items() if k != "workers"}
    if meta_path.is_file():  # resuming: the generator settings must match, or files would mix
        old = (yaml.safe_load(meta_path.read_text()) or {}).get("generator", {})
        keys = ("seed", "size", "val_fraction", "shading", "fill", "viewport")
        diff = [k for k in keys if k in old and old[k] != gen[k]]
        if diff:
            raise NtdmUsageError(f"OUT {root}: was generated with different {', '.join(diff)} "
                                 f"({', '.join(f'{k}={old[k]}' for k in diff)}); use a new folder")
    cads.write_cads(root, cfg.categories, heldout_root=root / "OOD_CV" / "CAD_heldout" if "shape" in cfg.ood else None)

    jobs = plan(cfg)
    t0 = time.perf_counter()
    rows: list[dict] = []
    args = [(str(root), asdict(cfg), j) for j in jobs]
    from ntdm_cli.console import progress

    with progress() as prog:
        task = prog.add_task("synth", total=len(jobs), info="")

        def done(row: dict) -> None:
            rows.append(row)
            el = time.perf_counter() - t0
            prog.update(task, advance=1, info=f"{len(rows) / max(el, 1e-6):.1f} img/s")

        if cfg.workers <= 1:
            import torch

            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # one small image: intra-op threads only add overhead
            try:
                for a in args:
                    done(_run_job_star(a))
            finally:
                torch.set_num_threads(threads)
        else:
            import multiprocessing as mp

            ctx = mp.get_context("spawn")
            with ctx.Pool(cfg.workers, initializer=_worker_init) as pool:
                for row in pool.imap_unordered(_run_job_star, args, chunksize=4):
                    done(row)
    wall = time.perf_counter() - t0
    cpu = sum(r["cpu_s"] for r in rows)  # CPU seconds spent in the jobs (any process)

    # lists (from the plan, deterministic), metadata, index
    order = {j.name: k for k, j in enumerate(jobs)}
    rows.sort(key=lambda r: order[r["name"]])
    for cat in cfg.categories:
        for split in ("train", "val"):
            names = [r["name"] for r in rows if r["category"] == cat and r["split"] == split]
            _write_text(root / "Image_sets" / f"{cat}_imagenet_{split}.txt", "".join(n + "\n" for n in names))
        val = [r["name"] for r in rows if r["category"] == cat and r["split"] == "val"]
        for lv in cfg.occlusion:
            _write_text(root / "OccludedPASCAL3D" / "lists" / f"{cat}FGL{lv}_BGL{lv}.txt", "".join(n + "\n" for n in val))
        for nz in cfg.ood:
            names = [r["name"] for r in rows if r["category"] == cat and r["nuisance"] == nz]
            _write_text(root / "OOD_CV" / "lists" / f"{cat}_{nz}.txt", "".join(n + "\n" for n in names))
    meta = {
        "generator": gen,
        "categories": {c: {"subtypes": [cads.build_cad(c, i).name for i in range(cads.num_subtypes(c))],
                           "train_subtypes": [i + 1 for i in cads.train_subtypes(c)],
                           "heldout_subtypes": [i + 1 for i in cads.heldout_subtypes(c)]} for c in cfg.categories},
        "preprocess": {"target_distance": cfg.target_distance, "crop": _crop_sizes(cfg)},
        "occlusion_bands": {f"L{k}": list(v) for k, v in OCCLUSION_BANDS.items()},
    }
    _write_text(meta_path, yaml.safe_dump(meta, sort_keys=False))

    counts = {
        "train": sum(r["split"] == "train" for r in rows), "val": sum(r["split"] == "val" for r in rows),
        **{f"L{lv}": sum(lv in r["occ_ratio"] for r in rows) for lv in cfg.occlusion},
        **{f"ood_{nz}": sum(r["nuisance"] == nz for r in rows) for nz in cfg.ood},
    }
    made = sum(not r["skipped"] for r in rows)
    images = sum((1 + len(r["occ_ratio"])) for r in rows if not r["skipped"])
    from ntdm_cli.artifacts import write_artifact

    data: dict[str, Any] = {
        "image_id": [(f"{r['category']}_imagenet/{r['name']}" if not r["nuisance"] else f"OOD_CV/{r['nuisance']}/{r['category']}/{r['name']}") for r in rows],
        "name": [r["name"] for r in rows],
        "category": [r["category"] for r in rows],
        "split": [r["split"] for r in rows],
        "nuisance": [r["nuisance"] for r in rows],
        "subtype": np.array([r["subtype"] + 1 for r in rows], dtype=np.int64),
        "counts": {k: np.int64(v) for k, v in counts.items()},
    }
    for lv in cfg.occlusion:
        data[f"occlusion_L{lv}_ratio"] = np.array([r["occ_ratio"].get(lv, np.nan) for r in rows], dtype=np.float64)
    index_path = write_artifact(root / "dataset_index.h5", "dataset-index", data, config_yaml=config_yaml,
                                attrs={"root": str(root), "seed": cfg.seed, "size": cfg.size,
                                       "categories": ",".join(cfg.categories), "generated": made,
                                       "wall_s": wall, "cpu_s": cpu})
    return SynthSummary(root=root, images=images, skipped=len(rows) - made, counts=counts, wall_s=wall, cpu_s=cpu,
                        index_path=index_path)
