"""Measurements of ntdm's own parts (``ntdm bench-raster``); above geometry, which supplies the meshes."""
