"""Compile check of the CUDA sources with nvcc (no GPU needed); skipped where nvcc is absent."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CU_FILES = sorted((ROOT / "cuda").rglob("*.cu"))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")
@pytest.mark.parametrize("source", CU_FILES, ids=[p.name for p in CU_FILES])
def test_nvcc_compiles(source, tmp_path):
    cmd = ["nvcc", "-std=c++17", "-O1", "-DNTDM_WITH_CUDA", "--fmad=false", "-arch=sm_80",
           "-c", str(source), "-o", str(tmp_path / "out.o")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
