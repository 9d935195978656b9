"""Geometry: mesh I/O and validation, the icosphere template with UVs, the deformation MLP, mesh
distances and regularisers, and deformer fitting."""

from ntdm_cli.geometry.mesh_io import Mesh, find_meshes, load_mesh, validate_mesh, write_obj, write_off
from ntdm_cli.geometry.template import Template, make_template

__all__ = ["Mesh", "load_mesh", "validate_mesh", "find_meshes", "write_obj", "write_off", "Template",
           "make_template"]
