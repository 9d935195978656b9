"""``ntdm bench-raster``: time and memory of the rasterizer backends over mesh size, image size, K, batch."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ntdm_cli.cli.common import output_file_ok, state
from ntdm_cli.console import console, info, out
from ntdm_cli.errors import NtdmUsageError


def _ints(values: List[str], option: str) -> list[int]:
    outv: list[int] = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                n = int(part)
            except ValueError:
                raise NtdmUsageError(f"{option} {part!r}: expected an integer") from None
            if n <= 0:
                raise NtdmUsageError(f"{option} {n}: must be positive")
            outv.append(n)
    return outv


def _sizes(values: List[str]) -> list[tuple[int, int]]:
    sizes = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip().lower()
            if not part:
                continue
            hw = part.split("x")
            try:
                h, w = (int(hw[0]), int(hw[1])) if len(hw) == 2 else (int(hw[0]), int(hw[0]))
            except ValueError:
                raise NtdmUsageError(f"--image-size {part!r}: expected HxW (e.g. 64x80) or S") from None
            if h <= 0 or w <= 0 or len(hw) > 2:
                raise NtdmUsageError(f"--image-size {part!r}: expected positive HxW")
            sizes.append((h, w))
    return sizes


_FACES_TO_SUBDIV = {20 * 4 ** s: s for s in range(0, 8)}


def _fmt_ms(x: float) -> str:
    return "—" if math.isnan(x) else (f"{x:.3f}" if x < 1 else f"{x:.1f}")


def bench_raster(
    ctx: typer.Context,
    backend: List[str] = typer.Option([], "--backend", "-b", help="native | torch | pytorch3d (repeatable; default: all)."),
    faces: List[str] = typer.Option(["320,1280,5120,20480"], "--faces", help="Icosphere sizes (20·4^s faces), comma-separated."),
    mesh: Optional[Path] = typer.Option(None, "--mesh", help="Benchmark this mesh file (OFF/OBJ/PLY) instead of icospheres."),
    image_size: List[str] = typer.Option(["64x80,128x128"], "--image-size", help="HxW image sizes, comma-separated."),
    k: List[str] = typer.Option(["1"], "--k", help="Faces per pixel K, comma-separated."),
    batch: List[str] = typer.Option(["8"], "--batch", help="Batch sizes N, comma-separated."),
    mode: List[str] = typer.Option(["fwd", "fwd+bwd"], "--mode", help="fwd and/or fwd+bwd (repeatable)."),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs per configuration (median)."),
    coverage: float = typer.Option(0.25, "--coverage", min=0.001, max=1.0, help="Image fraction the mesh covers."),
    blur_radius: float = typer.Option(0.0, "--blur-radius", min=0.0, help="Blur radius, pixels."),
    reference_budget: float = typer.Option(6e7, "--reference-budget", help="Max N·faces·pixels for the every-face-every-pixel backends."),
    max_memory_gb: float = typer.Option(0.0, "--max-memory-gb", min=0.0, help="Skip configurations estimated above this (0: half of what is free)."),
    threads: int = typer.Option(0, "--threads", min=0, help="torch CPU threads (0: torch's default)."),
    out_path: Optional[Path] = typer.Option(None, "--out", help="Write the rows to results.csv or results.json."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write time per image vs faces to results.png."),
) -> None:
    """Sweep rasterizer backends × mesh size × image size × K × batch, forward and forward+backward:
    median time, time per image, peak memory; skipped configurations are listed with the reason."""
    import torch

    from ntdm_cli.bench.raster import BenchConfig, plot_results, run_bench, write_results

    st = state(ctx)
    device = st.torch_device()
    if threads:
        torch.set_num_threads(threads)
    subdivs = []
    for n in _ints(faces, "--faces"):
        if n not in _FACES_TO_SUBDIV:
            raise NtdmUsageError(f"--faces {n}: icospheres have 20·4^s faces (80, 320, 1280, 5120, 20480, ...)")
        subdivs.append(_FACES_TO_SUBDIV[n])
    if out_path is not None:
        output_file_ok(out_path, "--out")
        if out_path.suffix.lower() not in (".csv", ".json"):
            raise NtdmUsageError(f"--out {out_path}: expected a .csv or .json file name")
    if plot is not None:
        output_file_ok(plot, "--plot")
        if plot.suffix.lower() != ".png":
            raise NtdmUsageError(f"--plot {plot}: expected a .png file name")
    from ntdm_cli.bench.raster import available_backends

    usable = available_backends(device)
    for b in backend:
        if b not in usable:
            raise NtdmUsageError(f"--backend {b!r}: expected one of {', '.join(usable)}")
    if not backend:  # default: every backend that works here
        backend = [b for b, why in usable.items() if not why]
        for b, why in usable.items():
            if why:
                info(f"backend {b} skipped: {why}")
    cfg = BenchConfig(
        backends=tuple(backend),
        subdivisions=tuple(subdivs), image_sizes=tuple(_sizes(image_size)), faces_per_pixel=tuple(_ints(k, "--k")),
        batch_sizes=tuple(_ints(batch, "--batch")), modes=tuple(mode), repeats=repeats, coverage=coverage,
        blur_radius=blur_radius, max_memory_gb=max_memory_gb, reference_budget=reference_budget,
        mesh=str(mesh) if mesh is not None else None, device=str(device))
    t0 = time.perf_counter()
    n_total = (1 if mesh else len(cfg.subdivisions)) * len(cfg.image_sizes) * len(cfg.batch_sizes) * \
        len(cfg.faces_per_pixel) * len(cfg.backends) * len(cfg.modes)
    from ntdm_cli.console import progress

    with progress(transient=True) as prog:
        task = prog.add_task("bench-raster", total=n_total, info="")

        def on_row(r):
            prog.update(task, advance=1, info=f"{r.backend} {r.faces}f {r.height}x{r.width} K={r.K} N={r.batch} {r.mode}")

        rows = run_bench(cfg, on_row)
    elapsed = time.perf_counter() - t0
    table = Table(title=f"rasterize on {device} ({torch.get_num_threads()} threads), median of {repeats}; {elapsed:.0f} s")
    for col, j in (("backend", "left"), ("mode", "left"), ("faces", "right"), ("image", "right"), ("K", "right"),
                   ("N", "right"), ("ms", "right"), ("ms/img", "right"), ("peak MiB", "right"),
                   ("cover", "right"), ("note", "left")):
        table.add_column(col, justify=j)
    for r in rows:
        table.add_row(r.backend, r.mode, str(r.faces), f"{r.height}x{r.width}", str(r.K), str(r.batch),
                      _fmt_ms(r.median_s * 1000), _fmt_ms(r.per_image_ms),
                      "—" if math.isnan(r.peak_mib) else f"{r.peak_mib:.0f}",
                      "—" if math.isnan(r.covered) else f"{r.covered:.2f}", r.note)
    if out.is_terminal:
        out.print(table)
    else:  # piped or captured: do not wrap the table at 80 columns
        from rich.console import Console

        Console(highlight=False, width=max(out.width, 130)).print(table)
    meta = {"device": str(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "elapsed_s": elapsed, "config": {k2: (list(v) if isinstance(v, tuple) else v) for k2, v in cfg.__dict__.items()}}
    if out_path is not None:
        write_results(rows, out_path, meta)
        info(f"wrote {out_path}")
    if plot is not None:
        plot_results(rows, plot)
        info(f"wrote {plot}")
    console.print(f"bench-raster finished in {elapsed:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("bench-raster")(bench_raster)
