"""``ntdm fit-deformer``: fit a category's deformable mesh to its CAD models (paper sec. 3.1)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from ntdm_cli.cli.common import output_file_ok, state
from ntdm_cli.console import info, out


def register(app: typer.Typer) -> None:
    @app.command("fit-deformer")
    def fit_deformer_cmd(
        ctx: typer.Context,
        more: Optional[List[str]] = typer.Argument(None, help="More CAD files (an unquoted --cads car/*.off "
                                                   "expands to several).", show_default=False),
        cads: List[str] = typer.Option([], "--cads", help="CAD meshes (.off/.obj/.ply/.stl): files, quoted "
                                       "glob patterns or folders; repeatable. Their order (folders and globs "
                                       "sorted naturally) defines the latent index.", show_default=False),
        output: Path = typer.Option(..., "--output", "-o", help="The deformer artifact to write (.h5).",
                                    show_default=False),
        category: Optional[str] = typer.Option(None, "--category", help="Category label (default: the "
                                               "CADs' common folder name)."),
    ) -> None:
        """Fit Γ(z) = s ⊙ (v + Ψ(v, z)) to CAD models and write a [bold]kind=deformer[/bold] artifact.

        CADs are assumed aligned in the category frame (as PASCAL3D+'s are). At the end a table gives the per-CAD errors: mean and 95th-percentile symmetric surface distance in CAD units and in % of the CAD's bounding-box diagonal, how much closer each fitted shape is to its own CAD than to any other, and the share of its surface that spans empty space (holes: faces farther from the CAD than 1.25 % of its diagonal, left out of silhouettes and meshes)."""
        from ntdm_cli.errors import NtdmUsageError
        from ntdm_cli.geometry.fit import DeformerConfig

        inputs = list(cads) + list(more or [])
        if not inputs:
            raise NtdmUsageError("give the CAD models with --cads (files, glob patterns or folders)")
        st = state(ctx)
        cfg = st.config.get("deformer", DeformerConfig)  # the real-scale fit; configs/*.yaml hold smaller ones
        from ntdm_cli.geometry.mesh_io import find_meshes

        output_file_ok(output, "--output", [("--cads", p) for p in find_meshes(inputs)])
        result = run_fit_deformer(inputs, output, cfg, category=category, device=st.torch_device(),
                                  config_yaml=st.config.to_yaml())
        print_errors(result)
        out.print(str(output))


def run_fit_deformer(cads: List[str], output: Path, cfg, category: Optional[str] = None, device="cpu",
                     config_yaml: str = ""):
    """Load the CADs, fit, write the artifact. Returns the :class:`FitResult`."""
    from ntdm_cli.artifacts import write_artifact
    from ntdm_cli.geometry.deformer import deformer_to_artifact_data
    from ntdm_cli.geometry.fit import fit_deformer
    from ntdm_cli.geometry.mesh_io import find_meshes, load_mesh

    paths = find_meshes(cads)
    meshes = [load_mesh(p) for p in paths]
    stems = [p.stem for p in paths]
    if len(set(stems)) != len(stems):  # same file names in several folders: keep the folder in the name
        for m, p in zip(meshes, paths):
            m.name = f"{p.parent.name}_{p.stem}"
    if category is None:
        parents = {p.resolve().parent for p in paths}
        category = parents.pop().name if len(parents) == 1 else ""
    info(f"fitting a {cfg.subdivisions}-subdivision template ({10 * 4 ** cfg.subdivisions + 2} vertices) "
         f"to {len(meshes)} CADs of category '{category}'")
    result = fit_deformer(meshes, cfg, category=category, device=device)
    data = deformer_to_artifact_data(result.deformer)
    data["errors"] = result.errors.to_artifact_data()
    data["cad_paths"] = [str(p) for p in paths]
    data["loss_history"] = result.history
    write_artifact(output, "deformer", data, config_yaml=config_yaml,
                   attrs={"fit_seconds": result.seconds, "fit_cpu_seconds": result.cpu_seconds})
    return result


def print_errors(result) -> None:
    from ntdm_cli.conventions import DEFAULT_HOLE_GAP
    from ntdm_cli.geometry.holes import hole_area_share

    e = result.errors
    d = result.deformer
    holes = 100.0 * hole_area_share(d, DEFAULT_HOLE_GAP)
    units = "" if d.normalization == 1.0 else f"; the deformer outputs units of {d.normalization:.4g} CAD units"
    table = Table(title=f"per-CAD fit errors: symmetric surface distance in CAD units{units} "
                        f"(fit {result.seconds:.1f} s, {result.cpu_seconds:.1f} s CPU); holes: % of the "
                        f"shape's area farther than {100 * DEFAULT_HOLE_GAP:g} % of the diagonal from its CAD")
    width = max(len(n) for n in e.names)
    for col in ("k", "CAD", "mean", "p95", "mean % diag", "p95 % diag", "other/own", "holes %"):
        table.add_column(col, justify="left" if col == "CAD" else "right", no_wrap=True,
                         min_width=width if col == "CAD" else None)
    ratio = e.own_other_ratio
    for k, name in enumerate(e.names):
        table.add_row(str(k), name, f"{e.mean[k]:.4g}", f"{e.p95[k]:.4g}", f"{e.mean_pct[k]:.3f}",
                      f"{e.p95_pct[k]:.3f}", "-" if ratio[k] == float("inf") else f"{ratio[k]:.1f}",
                      f"{holes[k]:.1f}")
    out.print(table)
