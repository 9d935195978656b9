"""ntdm bench-raster: the library sweep on a tiny configuration, outputs, CLI errors."""

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ntdm_cli.bench.raster import BenchConfig, icosphere, plot_results, run_bench, write_results
from ntdm_cli.render.rasterize import native_available

ROOT = Path(__file__).resolve().parents[1]


def test_icosphere_is_closed_and_outward():
    for s, F in ((0, 20), (2, 320)):
        v, f = icosphere(s, dtype=torch.float64)
        assert f.shape == (F, 3) and v.shape[0] == F // 2 + 2  # Euler: V - E + F = 2
        assert torch.allclose(v.norm(dim=1), torch.ones(v.shape[0], dtype=torch.float64))
        tri = v[f]
        n = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        assert ((n * tri.mean(1)).sum(1) > 0).all()


@pytest.mark.skipif(not native_available(), reason="compiled extension not built")
def test_run_bench_tiny(tmp_path):
    cfg = BenchConfig(backends=("native", "torch"), subdivisions=(1, 2), image_sizes=((16, 20),), batch_sizes=(2,),
                      repeats=1, reference_budget=2e5)
    rows = run_bench(cfg)
    assert len(rows) == 2 * 2 * 2
    timed = [r for r in rows if not r.note]
    skipped = [r for r in rows if r.note]
    assert all(r.median_s > 0 and 0.1 < r.covered < 0.4 for r in timed)
    # 2 images x 320 faces x 320 pixels = 2e5 tests: the torch reference is over budget there
    assert skipped and all(r.backend == "torch" and r.faces == 320 and "budget" in r.note for r in skipped)
    write_results(rows, tmp_path / "r.csv")
    write_results(rows, tmp_path / "r.json", {"x": 1})
    plot_results(rows, tmp_path / "r.png")
    with open(tmp_path / "r.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["meta"] == {"x": 1} and len(data["rows"]) == len(rows)
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NTDM_NO_PROGRESS="1")
    return subprocess.run([sys.executable, "-m", "ntdm_cli", "bench-raster", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


@pytest.mark.skipif(not native_available(), reason="compiled extension not built")
def test_cli_runs_and_writes(tmp_path):
    out = tmp_path / "res.json"
    r = run_cli("--faces", "80", "--image-size", "12x16", "--batch", "2", "-b", "native", "--repeats", "1",
                "--out", str(out), "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "native" in r.stdout and out.exists()
    assert json.loads(out.read_text())["rows"][0]["faces"] == 80


@pytest.mark.parametrize("args,msg", [
    (("--faces", "100"), "--faces 100"),
    (("--image-size", "12y"), "--image-size"),
    (("--backend", "opengl"), "--backend 'opengl'"),
    (("--out", "res.txt"), "--out res.txt"),
    (("--mesh", "/nonexistent.off", "--batch", "1"), "--mesh /nonexistent.off"),
])
def test_cli_bad_options(args, msg, capsys):
    from ntdm_cli.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["bench-raster", *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert msg in err and "Traceback" not in err
