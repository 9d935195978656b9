"""ntdm: robust 3D object understanding by analysis-by-synthesis (Neural Textured Deformable Meshes)."""

__version__ = "0.1.0"
