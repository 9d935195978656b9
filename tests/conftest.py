"""Session fixtures: a tiny synthetic dataset, tiny deformers and a tiny trained model, shared by the
train / infer / recipe tests (built once, in a few tens of seconds)."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("NTDM_NO_PROGRESS", "1")
# no test reads or writes the real user config folder (the default model, ntdm_cli.model.default)
os.environ["XDG_CONFIG_HOME"] = os.environ["APPDATA"] = tempfile.mkdtemp(prefix="ntdm-test-config-")
os.environ.pop("NTDM_MODEL", None)

#: the tiny scale, shared with ``SCALE=tiny recipes/synthetic.sh``: configs/tiny.yaml
TINY_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"


def config_sets(path: Path, *sections: str) -> list[str]:
    """The keys of ``sections`` of a config file as ``--set section.key=value`` arguments."""
    data = yaml.safe_load(path.read_text())
    args: list[str] = []
    for name in sections:
        for key, value in data[name].items():
            text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
            args += ["--set", f"{name}.{key}={text}"]
    return args


TINY_SYNTH = config_sets(TINY_CONFIG, "synth")
TINY_FIT = config_sets(TINY_CONFIG, "deformer")
# the class calibration after the last epoch solves with the (fast) infer settings
TINY_TRAIN = config_sets(TINY_CONFIG, "train", "infer")
TINY_CATEGORIES = yaml.safe_load(TINY_CONFIG.read_text())["synth"]["categories"]


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
    run_cli("synth", str(data), *TINY_SYNTH, "--occlusion", "L2", "--ood", "pose", "--seed", "0")
    for cat in TINY_CATEGORIES:
        run_cli("fit-deformer", "--cads", str(data / "CAD" / cat), "--category", cat, "-o", str(defs / f"{cat}.h5"),
                *TINY_FIT)
    model = root / "model.h5"
    run_cli("train-textures", "--data", str(data), "--deformers", str(defs), "-o", str(model), *TINY_TRAIN)
    return TinyPipeline(root, data, defs, model)
