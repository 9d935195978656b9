"""Compiled ops (``ntdm_cli._C``) behind autograd Functions, each with a pure-torch twin."""

from ntdm_cli.ops.extension import has_cuda_kernels, load as load_extension
from ntdm_cli.ops.image_to_surface import image_to_surface, image_to_surface_torch, image_to_surface_weights

__all__ = ["image_to_surface", "image_to_surface_torch", "image_to_surface_weights", "load_extension", "has_cuda_kernels"]
