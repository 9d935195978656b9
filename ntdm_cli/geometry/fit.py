"""Fitting a :class:`Deformer` to a category's CAD models (paper sec. 3.1, eq. 2), and its errors.

Loss per CAD k (in units of the CAD's bounding-box diagonal, so every CAD weighs the same):
    mean_{p ∈ Γ_k} min_f d(p, f ∈ Λ_k) + mean_{q ∈ Λ_k} min_f d(q, f ∈ Γ_k)
over the deformed-mesh vertices plus area-uniform samples of Γ_k, and area-uniform samples of the
CAD surface (only its exterior part: points seen from outside, so the hidden faces of part-soup CADs
do not pull the sphere inwards), plus ``w_normal`` · normal consistency and ``w_laplacian`` ·
uniform Laplacian smoothing. Closest faces are found without gradient (Open3D BVH) and the distance
is recomputed differentiably (``distance.point_triangle_distance``). Adam, cosine learning rate.
After the fit, each face's distance to its CAD is stored with the deformer (geometry.holes).

Internally the CADs are divided by a category length c (the mean bounding-box diagonal); the fitted
scale is multiplied back by c unless ``normalize`` is set, in which case the deformer outputs
normalised units and stores ``normalization = c``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from ntdm_cli.config import section
from ntdm_cli.console import progress
from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.geometry.deformer import CONDITIONINGS, Deformer
from ntdm_cli.geometry.distance import FaceSearch, exterior_mask, point_triangle_distance, sample_surface
from ntdm_cli.geometry.holes import face_gaps
from ntdm_cli.geometry.losses import edge_face_pairs, laplacian_smoothing, normal_consistency, uniform_laplacian
from ntdm_cli.geometry.mesh_io import Mesh
from ntdm_cli.geometry.template import make_template


@section("deformer")
@dataclass
class DeformerConfig:
    """``deformer`` config section (``ntdm fit-deformer``). Defaults are the real-scale fit."""

    subdivisions: int = 4          # template icosphere subdivisions (4: 2562 vertices / 5120 faces)
    hidden: int = 256              # MLP width
    layers: int = 4                # MLP hidden layers
    pe_frequencies: int = 6        # positional-encoding octaves of v (0: raw coordinates)
    conditioning: str = "linear"   # linear | concat (see geometry/deformer.py)
    steps: int = 400               # Adam steps
    lr: float = 4e-3               # initial learning rate (cosine decay to lr_final_ratio·lr)
    lr_final_ratio: float = 0.02
    mesh_samples: int = 1000       # surface samples of each deformed mesh per step (plus its vertices)
    cad_samples: int = 3000        # CAD surface samples per CAD per step
    pool_samples: int = 20000      # candidate CAD surface samples drawn once per CAD
    exterior_only: bool = True     # keep only CAD samples visible from outside (part-soup CADs)
    exterior_rays: int = 64        # ray directions of the exterior test
    w_distance: float = 1.0        # symmetric point-to-face distance (eq. 2)
    w_normal: float = 0.005        # normal consistency
    w_laplacian: float = 0.02      # uniform Laplacian smoothing
    normalize: bool = False        # output in units of the mean CAD diagonal instead of CAD units
    eval_samples: int = 10000      # samples per surface for the reported errors
    cross_samples: int = 3000      # samples per surface for the own-vs-other CAD distance matrix
    seed: int = 0
    threads: int = 1               # torch CPU threads while fitting (0: torch's default). The fit is many
                                   # small ops; on a loaded machine OpenMP threads spin and cost ~4x the time

    def validate(self) -> None:
        if self.conditioning not in CONDITIONINGS:
            raise NtdmUsageError(f"deformer.conditioning: expected one of {', '.join(CONDITIONINGS)}, "
                                 f"got {self.conditioning!r}")
        for name in ("hidden", "layers", "steps", "mesh_samples", "cad_samples", "pool_samples",
                     "eval_samples", "cross_samples", "exterior_rays"):
            if getattr(self, name) < 1:
                raise NtdmUsageError(f"deformer.{name}: must be positive, got {getattr(self, name)}")
        if self.threads < 0:
            raise NtdmUsageError(f"deformer.threads: must be >= 0, got {self.threads}")
        if not 0 <= self.subdivisions <= 6:
            raise NtdmUsageError(f"deformer.subdivisions: expected 0..6, got {self.subdivisions}")
        if self.lr <= 0 or not 0 < self.lr_final_ratio <= 1:
            raise NtdmUsageError("deformer.lr must be > 0 and deformer.lr_final_ratio in (0, 1]")
        if min(self.w_distance, self.w_normal, self.w_laplacian) < 0 or self.pe_frequencies < 0:
            raise NtdmUsageError("deformer weights and pe_frequencies must be >= 0")


@dataclass
class CadErrors:
    """Per-CAD fit errors (CAD units and % of the CAD's bounding-box diagonal), arrays of shape (K,),
    plus ``cross`` (K, K): mean symmetric distance of fitted shape k to CAD j (CAD units)."""

    names: list[str]
    mean: np.ndarray
    p95: np.ndarray
    diag: np.ndarray
    cross: np.ndarray

    @property
    def mean_pct(self) -> np.ndarray:
        return 100.0 * self.mean / self.diag

    @property
    def p95_pct(self) -> np.ndarray:
        return 100.0 * self.p95 / self.diag

    @property
    def own_other_ratio(self) -> np.ndarray:
        """(K,) min over other CADs j of cross[k, j] / cross[k, k] (inf with one CAD)."""
        K = len(self.names)
        if K < 2:
            return np.full(K, np.inf)
        other = np.where(np.eye(K, dtype=bool), np.inf, self.cross).min(1)
        return other / np.maximum(np.diag(self.cross), 1e-30)

    def to_artifact_data(self) -> dict:
        return {"names": list(self.names), "mean": self.mean, "p95": self.p95, "diag": self.diag,
                "mean_pct": self.mean_pct, "p95_pct": self.p95_pct, "cross": self.cross,
                "own_other_ratio": self.own_other_ratio}


@dataclass
class FitResult:
    deformer: Deformer
    errors: CadErrors
    history: list[float] = field(default_factory=list)   # total loss per step
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    timings: dict = field(default_factory=dict)   # wall seconds of prepare / optimise / evaluate


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, *args, **kwargs):
        pass


@dataclass
class _Prepared:
    verts: list[np.ndarray]        # normalised CAD vertices
    faces: list[np.ndarray]
    pools: list[torch.Tensor]      # exterior surface samples (P_k, 3), normalised
    diag: np.ndarray               # (K,) normalised bbox diagonals
    c: float                       # normalisation length (CAD units)


def _prepare(cads: Sequence[Mesh], cfg: DeformerConfig, rng: np.random.Generator) -> _Prepared:
    diags = np.array([m.bbox_diagonal for m in cads])
    c = float(diags.mean())
    verts, faces, pools = [], [], []
    for m in cads:
        v = m.verts / c
        pts = Mesh(v, m.faces).sample(cfg.pool_samples, rng)
        if cfg.exterior_only:
            keep = exterior_mask(v, m.faces, pts, directions=cfg.exterior_rays)
            if keep.mean() > 0.05:  # a CAD seen as all-interior (e.g. inverted or open) keeps all samples
                pts = pts[keep]
        verts.append(v)
        faces.append(m.faces)
        pools.append(torch.from_numpy(pts.astype(np.float32)))
    return _Prepared(verts, faces, pools, diags / c, c)


def fit_deformer(cads: Sequence[Mesh], cfg: DeformerConfig | None = None, category: str = "",
                 device: str | torch.device = "cpu", show_progress: bool = True) -> FitResult:
    """Fit Γ(z_k) to each CAD Λ_k (aligned in the category frame) and measure the errors.

    cads: K meshes in CAD units. Returns the fitted deformer (CAD units, or normalised units when
    ``cfg.normalize``), its per-CAD errors, the loss history and the wall/CPU time."""
    cfg = cfg or DeformerConfig()
    cfg.validate()
    if not cads:
        raise NtdmUsageError("fit-deformer needs at least one CAD model")
    # Adam's second moments of the zero-initialised head underflow to denormals, which slow CPU
    # arithmetic down several times
    flush = torch.set_flush_denormal(True)
    threads = torch.get_num_threads()
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        return _fit(cads, cfg, category, torch.device(device), show_progress)
    finally:
        torch.set_num_threads(threads)
        if flush:
            torch.set_flush_denormal(False)


def _fit(cads: Sequence[Mesh], cfg: DeformerConfig, category: str, device: torch.device,
         show_progress: bool) -> FitResult:
    t0, c0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    sgen = gen if device.type == "cpu" else None   # a CPU generator cannot drive sampling on another device
    K = len(cads)
    prep = _prepare(cads, cfg, rng)
    t_prep = time.perf_counter()
    template = make_template(cfg.subdivisions)
    extent = np.mean([v[np.unique(f)].max(0) - v[np.unique(f)].min(0) for v, f in zip(prep.verts, prep.faces)], 0)
    deformer = Deformer(template, K, hidden=cfg.hidden, layers=cfg.layers, pe_frequencies=cfg.pe_frequencies,
                        conditioning=cfg.conditioning, cad_names=[m.name for m in cads], category=category,
                        scale=torch.tensor(extent / 2, dtype=torch.float32)).to(device)
    faces = deformer.faces
    V = deformer.template_verts.shape[0]
    pairs = edge_face_pairs(faces)
    L = uniform_laplacian(faces, V).to(device)
    cad_search = [FaceSearch(v, f) for v, f in zip(prep.verts, prep.faces)]
    cad_tris = torch.cat([torch.from_numpy(v[f].astype(np.float32)) for v, f in zip(prep.verts, prep.faces)]).to(device)
    tri_offset = np.cumsum([0] + [len(f) for f in prep.faces])[:-1]
    inv_diag = torch.tensor(1.0 / prep.diag, dtype=torch.float32, device=device)
    eye = deformer.latents
    opt = torch.optim.Adam(deformer.parameters(), lr=cfg.lr)
    history: list[float] = []
    per_cad = np.zeros(K)
    with (progress() if show_progress else _NoProgress()) as prog:
        task = prog.add_task("fit-deformer", total=cfg.steps, info="")
        for step in range(cfg.steps):
            lr = cfg.lr * (cfg.lr_final_ratio + (1 - cfg.lr_final_ratio) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
            for g in opt.param_groups:
                g["lr"] = lr
            verts = deformer(eye)                                                  # (K, V, 3)
            # Γ_k -> Λ_k: vertices and surface samples of the deformed mesh to the CAD's faces
            pa = torch.cat([verts, torch.stack([sample_surface(verts[k], faces, cfg.mesh_samples, sgen)
                                                for k in range(K)])], 1)          # (K, Na, 3)
            ida = np.stack([cad_search[k].closest_faces(pa[k]) + tri_offset[k] for k in range(K)])
            da = point_triangle_distance(pa, cad_tris[torch.from_numpy(ida).to(device)])   # (K, Na)
            # Λ_k -> Γ_k: CAD surface samples to the deformed mesh's faces
            q = torch.stack([prep.pools[k][torch.randint(len(prep.pools[k]), (cfg.cad_samples,), generator=gen)]
                             for k in range(K)]).to(device)                       # (K, Nb, 3)
            vd = verts.detach()
            idb = np.stack([FaceSearch(vd[k], faces).closest_faces(q[k]) for k in range(K)])
            tri_b = faces[torch.from_numpy(idb).to(device)] + (torch.arange(K, device=device) * V)[:, None, None]
            db = point_triangle_distance(q, verts.reshape(K * V, 3)[tri_b])      # (K, Nb)
            dist_k = (da.mean(1) + db.mean(1)) * inv_diag                         # (K,) fraction of diagonal
            loss = cfg.w_distance * dist_k.mean()
            if cfg.w_normal > 0:
                loss = loss + cfg.w_normal * normal_consistency(verts, faces, pairs)
            if cfg.w_laplacian > 0:
                loss = loss + cfg.w_laplacian * laplacian_smoothing(verts, L) / float(prep.diag.mean())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
            per_cad = 0.9 * per_cad + 0.1 * (50.0 * dist_k.detach().cpu().numpy()) if step else 50.0 * dist_k.detach().cpu().numpy()
            if step % 5 == 0 or step == cfg.steps - 1:
                shown = " ".join(f"{x:.2f}" for x in per_cad[:12]) + (" …" if K > 12 else "")
                prog.update(task, completed=step + 1, info=f"loss {history[-1]:.4f}  dist % diag: {shown}")
        prog.update(task, completed=cfg.steps)
    deformer.eval()
    t_opt = time.perf_counter()
    with torch.no_grad():
        if cfg.normalize:
            deformer.normalization = prep.c
        else:
            deformer.log_scale.add_(math.log(prep.c))
            deformer.normalization = 1.0
    errors = evaluate_deformer(deformer, cads, eval_samples=cfg.eval_samples, cross_samples=cfg.cross_samples,
                               exterior_only=cfg.exterior_only, exterior_rays=cfg.exterior_rays, seed=cfg.seed + 1)
    bad = [n for n, m, q, d in zip(errors.names, errors.mean, errors.p95, errors.diag)
           if not (np.isfinite(m) and np.isfinite(q) and np.isfinite(d) and d > 0)]
    if bad or not all(math.isfinite(h) for h in history[-1:]):
        which = f"CAD {bad[0]}" + (f" and {len(bad) - 1} more" if len(bad) > 1 else "") if bad else "the loss"
        raise NtdmError(f"the fit diverged: {which} has non-finite errors (CAD coordinates too large or "
                        f"degenerate? their bounding-box diagonal is {float(np.max(errors.diag)):.3g}); "
                        f"nothing written")
    # where each fitted shape spans empty space (geometry.holes): left out of silhouettes and meshes
    deformer.face_gaps = torch.from_numpy(face_gaps(deformer, cads))
    t_end = time.perf_counter()
    return FitResult(deformer=deformer.cpu(), errors=errors, history=history,
                     seconds=t_end - t0, cpu_seconds=time.process_time() - c0,
                     timings={"prepare": t_prep - t0, "optimise": t_opt - t_prep, "evaluate": t_end - t_opt,
                              "steps": cfg.steps})


@torch.no_grad()
def evaluate_deformer(deformer: Deformer, cads: Sequence[Mesh], eval_samples: int = 10000, cross_samples: int = 3000,
                      exterior_only: bool = True, exterior_rays: int = 64, seed: int = 1) -> CadErrors:
    """Symmetric surface distance between each fitted shape Γ(z_k) and its CAD Λ_k, in CAD units.

    mean = ½ (mean_{p ∈ S(Γ_k)} d(p, Λ_k) + mean_{q ∈ S(Λ_k)} d(q, Γ_k)) over area-uniform samples
    (CAD samples restricted to its exterior when ``exterior_only``); p95 = 95th percentile of the
    pooled distances of both directions. ``cross[k, j]``: the mean for Γ(z_k) against CAD j."""
    rng = np.random.default_rng(seed)
    K = len(cads)
    if K != deformer.num_latents:
        raise NtdmUsageError(f"{K} CADs for a deformer with {deformer.num_latents} latents")
    shapes = (deformer(deformer.latents.to(deformer.template_verts.device)) * deformer.normalization).cpu().numpy()
    faces = deformer.faces.cpu().numpy()
    n_max = max(eval_samples, cross_samples)
    cad_pts, shape_pts, cad_search, shape_search = [], [], [], []
    for k, m in enumerate(cads):
        pts = m.sample(int(n_max * 1.6) if exterior_only else n_max, rng)
        if exterior_only:
            keep = exterior_mask(m.verts, m.faces, pts, directions=exterior_rays)
            if keep.mean() > 0.05:
                pts = pts[keep]
        cad_pts.append(pts[:n_max])
        shape_pts.append(Mesh(shapes[k].astype(np.float64), faces).sample(n_max, rng))
        cad_search.append(FaceSearch(m.verts, m.faces))
        shape_search.append(FaceSearch(shapes[k], faces))
    mean, p95 = np.zeros(K), np.zeros(K)
    cross = np.zeros((K, K))
    for k in range(K):
        for j in range(K):
            n = eval_samples if j == k else cross_samples
            da = cad_search[j].distance(shape_pts[k][:n])
            db = shape_search[k].distance(cad_pts[j][:n])
            cross[k, j] = 0.5 * (da.mean() + db.mean())
            if j == k:
                mean[k] = cross[k, k]
                p95[k] = float(np.percentile(np.concatenate([da, db]), 95))
    diag = np.array([m.bbox_diagonal for m in cads])
    return CadErrors(names=[m.name for m in cads], mean=mean, p95=p95, diag=diag, cross=cross)
