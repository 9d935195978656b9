"""``ntdm export-obj``: write meshes from an artifact as Wavefront OBJ."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ntdm_cli.cli.common import existing_file, output_file_ok
from ntdm_cli.console import out
from ntdm_cli.conventions import DEFAULT_HOLE_GAP


def register(app: typer.Typer) -> None:
    @app.command("export-obj")
    def export_obj_cmd(
        artifact: Path = typer.Argument(..., help="A deformer, model or predictions artifact (.h5).", show_default=False),
        output: Path = typer.Option(..., "--output", "-o", help="The .obj to write (a folder with --all).",
                                    show_default=False),
        latent: Optional[str] = typer.Option(None, "--latent", help="The shape of CAD K (0-based index or "
                                             "CAD name)."),
        mean: bool = typer.Option(False, "--mean", help="The shape of the mean latent."),
        all_: bool = typer.Option(False, "--all", help="One OBJ per CAD into the --output folder."),
        scale: float = typer.Option(1.0, "--scale", help="Multiply the coordinates by this factor."),
        uv: bool = typer.Option(False, "--uv", help="Also write the template UVs with a checker texture "
                                "(.mtl + .png next to each OBJ)."),
        hole_gap: float = typer.Option(DEFAULT_HOLE_GAP, "--hole-gap", help="Leave out the faces that span empty space: "
                                       "farther from the CAD surface than this fraction of its diagonal "
                                       "(a chair's legs without the membrane between them; 0: every face)."),
        index: Optional[int] = typer.Option(None, "--index", help="Predictions: the image (row) to export."),
        category: Optional[str] = typer.Option(None, "--category", help="Model: which category's deformer."),
    ) -> None:
        """Export shapes as OBJ: a CAD's fitted shape ([bold]--latent[/bold]), the mean shape ([bold]--mean[/bold]) or all CADs ([bold]--all[/bold]).

        Inputs: deformer, model (--category) and predictions (--index I or --all: the predicted shape coloured green visible / red occluded / grey not in view) artifacts. The OBJs load in trimesh, Open3D and Blender; coordinates are in the deformer's units (CAD units) times --scale."""
        from ntdm_cli.geometry.export import ExportRequest, export_obj

        from ntdm_cli.fsutil import check_output_folder

        existing_file(artifact, "ARTIFACT")
        if all_:
            check_output_folder(output, "--output", [("ARTIFACT", artifact)])
        else:
            output_file_ok(output, "--output", [("ARTIFACT", artifact)])
        paths = export_obj(artifact, output, ExportRequest(latent=latent, mean=mean, all=all_, scale=scale, uv=uv,
                                                                  hole_gap=hole_gap, index=index, category=category))
        for p in paths:
            out.print(str(p))
