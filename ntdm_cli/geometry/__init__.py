"""Geometry: mesh I/O and validation, the icosphere template with UVs, the deformation MLP, mesh
distances and regularisers, and deformer fitting.

Importing this package is light (numpy + torch); Open3D is imported on the first distance query."""

from ntdm_cli.geometry.deformer import (Deformer, deformer_from_artifact_data, deformer_to_artifact_data,
                                        load_deformer)
from ntdm_cli.geometry.mesh_io import Mesh, find_meshes, load_mesh, validate_mesh, write_obj, write_off
from ntdm_cli.geometry.template import Template, make_template

__all__ = ["Mesh", "load_mesh", "validate_mesh", "find_meshes", "write_obj", "write_off", "Template",
           "make_template", "Deformer", "load_deformer", "deformer_to_artifact_data",
           "deformer_from_artifact_data"]
