"""Rasterizer benchmark (``ntdm bench-raster``): backends × icosphere sizes × image size × K × batch,
forward and forward+backward, median time and peak memory.

Also provides :func:`icosphere` (the model's template) and
:func:`sphere_screen_verts` (a sphere of a given pixel radius in front of a PASCAL3D+ camera), used by
the benchmarks and tests.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.fsutil import atomic_write
from ntdm_cli.geometry.mesh_io import load_mesh
from ntdm_cli.geometry.template import make_template


def icosphere(subdivisions: int = 4, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit icosphere, the model's template: (verts (V, 3), faces (F, 3) int64), F = 20·4^subdivisions,
    faces counter-clockwise seen from outside."""
    t = make_template(subdivisions)
    return torch.as_tensor(t.verts, dtype=dtype), torch.as_tensor(t.faces, dtype=torch.int64)


def sphere_screen_verts(batch: int, subdivisions: int, image_size: tuple[int, int], coverage: float = 0.25,
                        distance: float = 5.0, dtype=torch.float32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A unit-radius icosphere scaled to cover about ``coverage`` of an (H, W) image, seen by ``batch``
    PASCAL3D+ cameras on a pose grid (azimuth × elevation × theta, like the inference's initial
    hypotheses) at ``distance``; principal point at the image centre, slightly jittered.
    Returns (screen verts (batch, V, 3), faces (F, 3))."""
    import math

    from ntdm_cli.render.camera import Viewpoint, project

    H, W = image_size
    verts, faces = icosphere(subdivisions, dtype=torch.float64)
    focal_px = 3000.0
    R = math.sqrt(coverage * H * W / math.pi)  # silhouette radius, pixels
    radius = R * distance / math.sqrt(focal_px ** 2 + R ** 2)
    g = torch.Generator().manual_seed(seed)
    i = torch.arange(batch, dtype=torch.float64)
    vp = Viewpoint.create(
        azimuth=(i % 12) * (2 * math.pi / 12), elevation=((i // 12) % 4) * 0.3 - 0.3, theta=((i // 48) % 3 - 1) * 0.3,
        distance=distance, px=W / 2 + torch.randn(batch, generator=g, dtype=torch.float64),
        py=H / 2 + torch.randn(batch, generator=g, dtype=torch.float64), dtype=torch.float64)
    return project(verts * radius, vp).to(dtype), faces


# ----------------------------------------------------------------------------------------------
# the sweep

MODES = ("fwd", "fwd+bwd")


@dataclass
class BenchConfig:
    """One sweep of :func:`run_bench` (the defaults finish in well under 2 minutes on 2 cores)."""

    backends: Sequence[str] = ("native", "torch", "pytorch3d")
    subdivisions: Sequence[int] = (2, 3, 4, 5)  # icospheres of 320, 1280, 5120, 20480 faces
    image_sizes: Sequence[tuple[int, int]] = ((64, 80), (128, 128))
    faces_per_pixel: Sequence[int] = (1,)
    batch_sizes: Sequence[int] = (8,)
    modes: Sequence[str] = MODES
    repeats: int = 3
    coverage: float = 0.25  # fraction of the image the sphere covers
    blur_radius: float = 0.0
    max_memory_gb: float = 0.0  # 0: half the available memory (CPU) / of the device (CUDA)
    reference_budget: float = 6e7  # max batch·faces·pixels for the every-face-every-pixel backends (CPU)
    mesh: str | None = None  # a mesh file rendered instead of the icospheres
    device: str = "cpu"


@dataclass
class BenchRow:
    backend: str
    mode: str
    faces: int
    height: int
    width: int
    K: int
    batch: int
    median_s: float = float("nan")
    per_image_ms: float = float("nan")
    peak_mib: float = float("nan")
    covered: float = float("nan")  # fraction of pixels covered
    repeats: int = 0
    note: str = ""
    mesh: str = "icosphere"
    device: str = "cpu"
    threads: int = field(default_factory=torch.get_num_threads)


def _mem_available_bytes(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return float(free)
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except Exception:  # pragma: no cover - psutil is a dependency
        return 8.0 * 2**30


def estimate_bytes(backend: str, mode: str, N: int, F: int, H: int, W: int, K: int, V: int) -> float:
    """A rough upper bound of the peak memory of one call (outputs, recomputation, autograd)."""
    pix = N * H * W * K
    out = pix * (8 + 4 + 12 + 4)  # pix_to_face, zbuf, bary, dists
    inter = pix * 4 * (40 if mode == "fwd+bwd" else 20)  # per covered fragment temporaries (upper bound)
    if backend == "native":
        kernel = N * F * 16
    elif backend == "torch":
        kernel = min(F * H * W, 1 << 22) * 4 * 30
    else:  # pytorch3d (coarse-to-fine or naive)
        kernel = N * F * 64
    return float(out + inter + kernel + N * V * 3 * 4 * 4)


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so that RSS growth measures new memory."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of a block: CUDA max_memory_allocated, or the growth of the process' peak RSS
    (VmHWM, reset through /proc/self/clear_refs) on CPU. ``mib`` is NaN where it cannot be measured."""

    def __init__(self, device: torch.device):
        self.device = device
        self.mib = float("nan")

    @staticmethod
    def _status(key: str) -> int | None:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = None
        _malloc_trim()
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self._base = self._status("VmRSS")
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._base is not None:
            peak = self._status("VmHWM")
            if peak is not None:
                self.mib = max(0.0, (peak - self._base) / 1024)


def load_bench_mesh(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """A mesh file (OFF/OBJ/PLY) centred and scaled into the unit sphere: (verts (V, 3) float64, faces (F, 3))."""
    path = Path(path)
    if not path.is_file():
        raise NtdmUsageError(f"--mesh {path}: no such file")
    mesh = load_mesh(path)
    verts, faces = torch.as_tensor(mesh.verts, dtype=torch.float64), torch.as_tensor(mesh.faces, dtype=torch.int64)
    if not torch.isfinite(verts).all():
        raise NtdmError(f"--mesh {path}: non-finite vertex coordinates")
    verts = verts - (verts.max(0).values + verts.min(0).values) / 2
    scale = verts.norm(dim=1).max()
    if not scale > 0:
        raise NtdmError(f"--mesh {path}: all vertices coincide")
    return verts / scale, faces


def _scene(cfg: BenchConfig, mesh, subdiv: int | None, N: int, H: int, W: int, device: torch.device):
    if mesh is not None:
        return _project_mesh(mesh[0], mesh[1], N, H, W, cfg.coverage, device)
    sv, faces = sphere_screen_verts(N, subdiv, (H, W), cfg.coverage)
    return sv.to(device), faces.to(device)


def _project_mesh(verts, faces, N, H, W, coverage, device):
    from ntdm_cli.render.camera import Viewpoint, project

    distance, focal_px = 5.0, 3000.0
    R = math.sqrt(coverage * H * W / math.pi)
    radius = R * distance / math.sqrt(focal_px ** 2 + R ** 2)
    i = torch.arange(N, dtype=torch.float64)
    vp = Viewpoint.create(azimuth=(i % 12) * (2 * math.pi / 12), elevation=((i // 12) % 4) * 0.3 - 0.3,
                          theta=((i // 48) % 3 - 1) * 0.3, distance=distance, px=W / 2, py=H / 2, dtype=torch.float64)
    return project(verts * radius, vp).float().to(device), faces.to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _call(backend: str, mode: str, screen: torch.Tensor, faces: torch.Tensor, H: int, W: int, K: int, blur: float):
    from ntdm_cli.render.rasterize import rasterize

    if mode == "fwd":
        with torch.no_grad():
            return rasterize(screen, faces, (H, W), faces_per_pixel=K, blur_radius=blur, backend=backend)
    v = screen.detach().requires_grad_(True)
    fr = rasterize(v, faces, (H, W), faces_per_pixel=K, blur_radius=blur, backend=backend)
    (fr.bary_coords.sum() + fr.zbuf.sum() + fr.dists.sum()).backward()
    return fr


def available_backends(device: torch.device) -> dict[str, str]:
    """backend -> "" when usable on ``device``, else why not."""
    from ntdm_cli.render.rasterize import native_available, pytorch3d_available

    return {
        "native": "" if native_available(device) else "compiled extension not built",
        "torch": "",
        "pytorch3d": "" if pytorch3d_available() else "pytorch3d not importable",
    }


def run_bench(cfg: BenchConfig, on_row: Callable[[BenchRow], None] | None = None) -> list[BenchRow]:
    """Time every configuration of ``cfg``: median over ``repeats`` after one warm-up (a single
    timed run when the warm-up takes over 2 s), peak memory of one extra run. Configurations that
    would not fit in memory, or whose every-face-every-pixel backend would exceed
    ``reference_budget``, are skipped with a note."""
    device = torch.device(cfg.device)
    for m in cfg.modes:
        if m not in MODES:
            raise NtdmUsageError(f"--mode {m!r}: expected one of {', '.join(MODES)}")
    usable = available_backends(device)
    for b in cfg.backends:
        if b not in usable:
            raise NtdmUsageError(f"--backend {b!r}: expected one of {', '.join(usable)}")
    limit = cfg.max_memory_gb * 2**30 if cfg.max_memory_gb > 0 else _mem_available_bytes(device) / 2
    meshes: Iterable[int | None] = [None] if cfg.mesh is not None else list(cfg.subdivisions)
    mesh = load_bench_mesh(cfg.mesh) if cfg.mesh is not None else None
    rows: list[BenchRow] = []
    for subdiv in meshes:
        for (H, W) in cfg.image_sizes:
            for N in cfg.batch_sizes:
                screen, faces = _scene(cfg, mesh, subdiv, N, H, W, device)
                F, V = faces.shape[0], screen.shape[1]
                for K in cfg.faces_per_pixel:
                    for backend in cfg.backends:
                        for mode in cfg.modes:
                            row = BenchRow(backend, mode, F, H, W, K, N, mesh=Path(cfg.mesh).name if cfg.mesh else "icosphere",
                                           device=str(device))
                            est = estimate_bytes(backend, mode, N, F, H, W, K, V)
                            naive = backend == "torch" or (backend == "pytorch3d" and device.type == "cpu")
                            if usable[backend]:
                                row.note = f"skipped: {usable[backend]}"
                            elif est > limit:
                                row.note = f"skipped: ~{est / 2**30:.1f} GiB > {limit / 2**30:.1f} GiB"
                            elif naive and N * F * H * W > cfg.reference_budget:
                                row.note = f"skipped: {N * F * H * W:.0e} tests > budget"
                            else:
                                _measure(row, backend, mode, screen, faces, cfg, device)
                            rows.append(row)
                            if on_row is not None:
                                on_row(row)
    return rows


def _measure(row: BenchRow, backend: str, mode: str, screen, faces, cfg: BenchConfig, device) -> None:
    H, W, K = row.height, row.width, row.K
    try:
        _sync(device)
        t0 = time.perf_counter()
        fr = _call(backend, mode, screen, faces, H, W, K, cfg.blur_radius)
        _sync(device)
        warm = time.perf_counter() - t0
        row.covered = float(fr.mask.float().mean())
        del fr
        times = []
        for _ in range(1 if warm > 2.0 else max(1, cfg.repeats)):
            _sync(device)
            t0 = time.perf_counter()
            _call(backend, mode, screen, faces, H, W, K, cfg.blur_radius)
            _sync(device)
            times.append(time.perf_counter() - t0)
        row.median_s = statistics.median(times)
        row.repeats = len(times)
        row.per_image_ms = row.median_s / row.batch * 1000
        with PeakMemory(device) as pm:
            _call(backend, mode, screen, faces, H, W, K, cfg.blur_radius)
        row.peak_mib = pm.mib
    except (RuntimeError, MemoryError) as exc:  # out of memory or a backend failure: note it, go on
        row.note = f"failed: {str(exc).splitlines()[0][:120]}"


# ----------------------------------------------------------------------------------------------
# outputs

FIELDS = [f for f in BenchRow.__dataclass_fields__]


def write_results(rows: Sequence[BenchRow], path: str | os.PathLike, meta: dict | None = None) -> None:
    """``.csv`` (one row per configuration) or ``.json`` ({"meta": ..., "rows": [...]})."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
        atomic_write(path, lambda tmp: Path(tmp).write_text(buf.getvalue()))
    elif path.suffix.lower() == ".json":
        text = json.dumps({"meta": meta or {}, "rows": [asdict(r) for r in rows]}, indent=2,
                          default=lambda x: None if isinstance(x, float) and math.isnan(x) else str(x))
        atomic_write(path, lambda tmp: Path(tmp).write_text(text.replace("NaN", "null")))
    else:
        raise NtdmUsageError(f"--out {path}: expected a .csv or .json file name")


def plot_results(rows: Sequence[BenchRow], path: str | os.PathLike) -> None:
    """Time per image vs number of faces, one line per backend × image size × K × batch, one panel per
    mode (as PyTorch3D's paper, fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [m for m in MODES if any(r.mode == m for r in rows)]
    fig, axes = plt.subplots(1, max(1, len(modes)), figsize=(6 * max(1, len(modes)), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes):
        keys = sorted({(r.backend, r.height, r.width, r.K, r.batch) for r in rows if r.mode == mode})
        for key in keys:
            pts = sorted((r.faces, r.per_image_ms) for r in rows
                         if r.mode == mode and (r.backend, r.height, r.width, r.K, r.batch) == key
                         and not math.isnan(r.per_image_ms))
            if not pts:
                continue
            b, h, w, k, n = key
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{b} {h}x{w} K={k} N={n}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("faces")
        ax.set_ylabel("time per image (ms)")
        ax.set_title(f"rasterize, {mode}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise NtdmUsageError(f"--plot {path}: expected a .png file name")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)
