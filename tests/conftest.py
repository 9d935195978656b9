"""Session fixtures: a tiny synthetic dataset, tiny deformers and a tiny trained model, shared by the
train / infer / recipe tests (built once, in a few tens of seconds)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("NTDM_NO_PROGRESS", "1")
# no test reads or writes the real user config folder (the default model, ntdm_cli.model.default)
os.environ["XDG_CONFIG_HOME"] = os.environ["APPDATA"] = tempfile.mkdtemp(prefix="ntdm-test-config-")
os.environ.pop("NTDM_MODEL", None)

TINY_FIT = ["--set", "deformer.subdivisions=2", "--set", "deformer.steps=40", "--set", "deformer.hidden=32",
            "--set", "deformer.pool_samples=3000", "--set", "deformer.eval_samples=1000",
            "--set", "deformer.cross_samples=300", "--set", "deformer.exterior_rays=16"]
TINY_TRAIN = ["--set", "train.backbone=small", "--set", "train.texture_size=32", "--set", "train.feature_dim=16",
              "--set", "train.batch_size=4", "--set", "train.positives=64", "--set", "train.negatives=128",
              "--set", "train.bank_size=64", "--set", "train.workers=0", "--set", "train.lr=2e-3",
              "--set", "train.calib_every=1",
              # the class calibration after the last epoch solves with these (fast) infer settings
              "--set", "infer.steps=8", "--set", "infer.azimuths=6", "--set", "infer.elevations=2",
              "--set", "infer.thetas=1"]


@dataclass
class TinyPipeline:
    root: Path
    data: Path
    deformers: Path
    model: Path


def run_cli(*args: str) -> None:
    from ntdm_cli.cli.main import main

    try:
        main(list(args))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise AssertionError(f"ntdm {' '.join(args)} exited with {exc.code}")


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> TinyPipeline:
    root = tmp_path_factory.mktemp("tiny")
    data, defs = root / "data", root / "deformers"
    defs.mkdir()
    run_cli("synth", str(data), "--categories", "car,bus", "--per-category", "8", "--size", "128",
            "--occlusion", "L2", "--ood", "pose", "--ood-per-category", "1", "--seed", "0")
    for cat in ("car", "bus"):
        run_cli("fit-deformer", "--cads", str(data / "CAD" / cat), "--category", cat, "-o", str(defs / f"{cat}.h5"),
                *TINY_FIT)
    model = root / "model.h5"
    run_cli("train-textures", "--data", str(data), "--deformers", str(defs), "-o", str(model), "--epochs", "3",
            *TINY_TRAIN)
    return TinyPipeline(root, data, defs, model)
