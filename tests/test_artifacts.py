"""Artifacts: round trip, kind/version checks, truncation, atomic writes."""

import os

import h5py
import numpy as np
import pytest
import torch

from ntdm_cli.artifacts import SCHEMA_VERSIONS, describe, read_artifact, write_artifact
from ntdm_cli.errors import ArtifactError


def _write(path, kind="deformer"):
    data = {
        "weights": {"mlp.0.weight": torch.randn(4, 3), "mlp.0.bias": np.arange(4.0)},
        "names": ["a.off", "b.off"],
        "note": "hello",
        "big": np.random.rand(100, 100).astype(np.float32),
    }
    return write_artifact(path, kind, data, config_yaml="deformer:\n  steps: 10\n", attrs={"extra": 3},
                          created_by="ntdm test")


def test_round_trip(tmp_path):
    p = _write(tmp_path / "a.h5")
    art = read_artifact(p, "deformer")
    assert art.kind == "deformer" and art.schema_version == SCHEMA_VERSIONS["deformer"]
    assert art.attrs["created_by"] == "ntdm test" and art.attrs["extra"] == 3
    assert art.config == {"deformer": {"steps": 10}}
    assert art["names"] == ["a.off", "b.off"] and art["note"] == "hello"
    assert art["weights/mlp.0.weight"].shape == (4, 3)
    np.testing.assert_array_equal(art["weights/mlp.0.bias"], np.arange(4.0))
    assert art["big"].dtype == np.float32
    assert "weights/missing" not in art
    with pytest.raises(ArtifactError, match="has no 'nothing'"):
        art["nothing"]
    attrs, rows = describe(p)
    assert attrs["kind"] == "deformer"
    assert ("weights/mlp.0.weight", "4×3", "float32") in rows


def test_wrong_kind(tmp_path):
    p = _write(tmp_path / "a.h5", kind="model")
    with pytest.raises(ArtifactError, match="expected a deformer artifact, found kind 'model'"):
        read_artifact(p, "deformer")


def test_wrong_version(tmp_path):
    p = _write(tmp_path / "a.h5")
    with h5py.File(p, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ArtifactError, match="schema_version 99"):
        read_artifact(p, "deformer")


def test_truncated_and_foreign_files(tmp_path):
    p = _write(tmp_path / "a.h5")
    data = p.read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="cut.h5"):
        read_artifact(cut, "deformer")
    junk = tmp_path / "junk.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ArtifactError, match="not a readable HDF5"):
        read_artifact(junk)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ArtifactError, match="without ntdm 'kind'"):
        read_artifact(tmp_path / "plain.h5")
    with pytest.raises(ArtifactError, match="no such file"):
        read_artifact(tmp_path / "missing.h5")


def test_failed_write_leaves_nothing(tmp_path):
    class Bad:
        pass

    with pytest.raises(ArtifactError):
        write_artifact(tmp_path / "x.h5", "model", {"ok": np.zeros(3), "bad": Bad()})
    assert os.listdir(tmp_path) == []


def test_overwrite_is_atomic(tmp_path):
    p = _write(tmp_path / "a.h5")
    write_artifact(p, "bench", {"t": np.ones(2)})
    assert read_artifact(p).kind == "bench"
    assert sorted(os.listdir(tmp_path)) == ["a.h5"]
