"""The recipes in CI-sized mode: synthetic.sh (SCALE=tiny), then ablations.sh and pascal3d.sh on its
output; bench.sh is syntax-checked (its full run is the benchmarks themselves)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny.yaml"  # the settings of SCALE=tiny, shared with tests/conftest.py
TINY_INFER = f"--config {TINY_CONFIG} --set infer.steps=5"


def _env(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    shim = bindir / "ntdm"
    shim.write_text(f"#!/usr/bin/env bash\nexec {sys.executable} -m ntdm_cli \"$@\"\n")
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "NTDM_NO_PROGRESS": "1",
            "PYTHONPATH": str(ROOT)}


def _run(script, env, timeout=900):
    r = subprocess.run(["bash", str(ROOT / "recipes" / script)], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "recipes").glob("*.sh")))
def test_recipe_syntax_and_header(script):
    text = (ROOT / "recipes" / script).read_text()
    assert "set -euo pipefail" in text and text.startswith("#!/usr/bin/env bash\n# Reproduces:")
    assert subprocess.run(["bash", "-n", str(ROOT / "recipes" / script)]).returncode == 0


def test_synthetic_ablations_and_pascal3d_recipes_tiny(tmp_path):
    env = _env(tmp_path)
    out = tmp_path / "syn"
    r = _run("synthetic.sh", {**env, "SCALE": "tiny", "OUT": str(out)})
    for rel in ("model.h5", "predictions.h5", "predictions_ood.h5", "report/report.md", "report/report.json",
                "report_ood/report.md", "report/accuracy_vs_occlusion.png"):
        assert (out / rel).exists(), rel
    assert list((out / "overlays").glob("*.png")) and list((out / "meshes").glob("*.obj"))
    assert "report" in r.stdout
    abl = tmp_path / "abl"
    _run("ablations.sh", {**env, "DATA": str(out / "data"), "MODEL": str(out / "model.h5"), "OUT": str(abl),
                          "LIMIT": "1", "OCCLUSION": "0", "INFER_ARGS": TINY_INFER})
    md = (abl / "report" / "report.md").read_text()
    for label in ("full", "no-bg", "single-bin", "fix-shape", "random-init", "average-init"):
        assert label in md
    p3d = tmp_path / "p3d"
    _run("pascal3d.sh", {**env, "P3D": str(out / "data"), "OUT": str(p3d), "CATS": "car,bus", "EPOCHS": "1",
                         "FIT_ARGS": f"--config {TINY_CONFIG}", "TRAIN_ARGS": f"--config {TINY_CONFIG}",
                         "INFER_ARGS": TINY_INFER + " --limit 1"})
    assert (p3d / "report" / "report.md").exists()
    # the class calibration after training solved with the settings file's infer section (synthetic.sh)
    # and with INFER_ARGS' --set pairs (pascal3d.sh), not with the default 300 steps
    import yaml

    from ntdm_cli.artifacts import read_artifact

    tiny_steps = yaml.safe_load(TINY_CONFIG.read_text())["infer"]["steps"]

    for model in (out / "model.h5", p3d / "model.h5"):
        art = read_artifact(model, "model")
        assert "class_weights" in art["calibration"], model
        assert art.config["infer"]["steps"] == (tiny_steps if model.parent == out else 5), model


@pytest.mark.parametrize("var,value", [("SCALE", "huge"), ("BACKBONE", "resnet18")])
def test_synthetic_recipe_rejects_bad_sizes_before_writing(tmp_path, var, value):
    """An unknown SCALE or BACKBONE: exit 2, one line naming the variable, no output folder."""
    out = tmp_path / "run"
    r = subprocess.run(["bash", str(ROOT / "recipes" / "synthetic.sh")], capture_output=True, text=True,
                       env={**_env(tmp_path), var: value, "OUT": str(out)}, cwd=ROOT, timeout=60)
    assert r.returncode == 2 and f"{var} must be" in r.stderr and value in r.stderr
    assert not out.exists()
