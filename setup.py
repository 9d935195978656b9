"""Builds ntdm_cli._C from cuda/: C++ kernels always, CUDA kernels when a CUDA toolkit and a CUDA
build of torch are present. NTDM_FORCE_CUDA=1 / NTDM_NO_CUDA=1 override the detection.

Install with `pip install --no-build-isolation -e .` so the build uses the torch already installed.
"""

import glob
import os

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as exc:  # pragma: no cover - explained to the user
    raise SystemExit(
        "ntdm builds its compiled ops against the installed torch: install torch==2.13.0 first and "
        "use `pip install --no-build-isolation .` (see the README)"
    ) from exc


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _with_cuda() -> bool:
    if _flag("NTDM_NO_CUDA"):
        return False
    if _flag("NTDM_FORCE_CUDA"):
        return True
    return CUDA_HOME is not None and torch.version.cuda is not None


here = os.path.dirname(os.path.abspath(__file__))
sources = sorted(
    os.path.relpath(p, here)
    for p in glob.glob(os.path.join(here, "cuda", "**", "*.cpp"), recursive=True)
)
cxx_flags = ["-O3", "-std=c++17", "-ffp-contract=off"]
if _with_cuda():
    sources += sorted(
        os.path.relpath(p, here) for p in glob.glob(os.path.join(here, "cuda", "**", "*.cu"), recursive=True)
    )
    ext = CUDAExtension(
        "ntdm_cli._C",
        sources,
        define_macros=[("NTDM_WITH_CUDA", None)],
        extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-std=c++17", "--fmad=false"]},
    )
else:
    ext = CppExtension("ntdm_cli._C", sources, extra_compile_args={"cxx": cxx_flags})

setup(ext_modules=[ext], cmdclass={"build_ext": BuildExtension})
