"""The model `ntdm infer` uses without --model: each source, their order, no model, a deleted default;
`ntdm models` and `train-textures --set-default`. Every test runs with a temporary user config folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ntdm_cli.artifacts import write_artifact
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.model import default as dm
from tests.conftest import run_cli

FAST = ["--set", "infer.steps=4", "--set", "infer.azimuths=4", "--set", "infer.elevations=1", "--set", "infer.thetas=1"]


@pytest.fixture
def user_dir(tmp_path, monkeypatch) -> Path:
    """A temporary user config folder (XDG_CONFIG_HOME on Linux, APPDATA on Windows), NTDM_MODEL unset."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("APPDATA", str(tmp_path / "xdg"))
    monkeypatch.delenv(dm.ENV_VAR, raising=False)
    assert str(dm.default_file()).startswith(str(tmp_path))  # never the real user folder
    return tmp_path / "xdg" / "ntdm"


def _fake_model(path: Path) -> Path:
    return write_artifact(path, "model", {"categories": ["car"], "x": np.zeros(2, np.float32)})


def _code(*args) -> int:
    from ntdm_cli.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    return e.value.code


def test_user_config_dir_follows_the_platform():
    assert dm.user_config_dir("linux", {"XDG_CONFIG_HOME": "/x/cfg", "HOME": "/h"}) == Path("/x/cfg/ntdm")
    assert dm.user_config_dir("linux", {"HOME": "/h"}) == Path("/h/.config/ntdm")
    assert dm.user_config_dir("linux", {"XDG_CONFIG_HOME": "rel", "HOME": "/h"}) == Path("/h/.config/ntdm")
    assert dm.user_config_dir("darwin", {"HOME": "/h"}) == Path("/h/Library/Application Support/ntdm")
    assert dm.user_config_dir("win32", {"APPDATA": r"C:\Users\u\AppData\Roaming"}) == \
        Path(r"C:\Users\u\AppData\Roaming") / "ntdm"


def test_each_source_and_their_order(user_dir, tmp_path, monkeypatch):
    a, b, c, d = (_fake_model(tmp_path / f"{k}.h5") for k in "abcd")
    assert dm.set_user_default(d) == d.resolve()
    assert (user_dir / "default_model.yaml").is_file()
    got = dm.resolve_model()
    assert (got.path, got.source) == (d.resolve(), "user default") and got.where == str(user_dir / "default_model.yaml")
    got = dm.resolve_model(config_value=str(c))
    assert (got.path, got.source) == (c, "config infer.model")
    monkeypatch.setenv(dm.ENV_VAR, str(b))
    got = dm.resolve_model(config_value=str(c))
    assert (got.path, got.source) == (b, "NTDM_MODEL")
    got = dm.resolve_model(a, config_value=str(c))
    assert (got.path, got.source) == (a, "--model")
    assert [r.state for r in dm.model_report(str(c))] == ["used", "set", "set"]


def test_no_model_says_how_to_get_one(user_dir):
    with pytest.raises(NtdmUsageError) as e:
        dm.resolve_model()
    msg = str(e.value)
    assert e.value.exit_code == 2 and "\n" not in msg
    assert "make demo" in msg and "ntdm train-textures" in msg and "--set-default" in msg


def test_deleted_default_and_missing_sources_are_one_line_errors(user_dir, tmp_path, monkeypatch):
    m = _fake_model(tmp_path / "m.h5")
    dm.set_user_default(m)
    m.unlink()
    with pytest.raises(NtdmUsageError) as e:
        dm.resolve_model()
    assert "no longer exists" in str(e.value) and str(m.resolve()) in str(e.value) and "\n" not in str(e.value)
    assert [r.state for r in dm.model_report()] == ["unset", "unset", "missing"]
    # a source that is set but wrong does not fall through to the next one
    other = _fake_model(tmp_path / "other.h5")
    dm.set_user_default(other)
    monkeypatch.setenv(dm.ENV_VAR, str(tmp_path / "gone.h5"))
    with pytest.raises(NtdmUsageError, match=r"NTDM_MODEL=.*gone\.h5: no such file"):
        dm.resolve_model()
    with pytest.raises(NtdmUsageError, match="is a folder"):
        dm.resolve_model(tmp_path)


def test_set_default_refuses_other_artifacts(user_dir, tmp_path):
    from ntdm_cli.errors import ArtifactError

    p = write_artifact(tmp_path / "d.h5", "deformer", {"x": np.zeros(1)})
    with pytest.raises(ArtifactError):
        dm.set_user_default(p)
    with pytest.raises(NtdmUsageError, match="no such file"):
        dm.set_user_default(tmp_path / "none.h5")
    assert not dm.default_file().exists()


def test_infer_without_model_cli(tiny_pipeline, user_dir, tmp_path, capsys):
    """`ntdm infer img --export mesh.obj` with the user default (one image, a folder), with infer.model,
    and the one-line errors when there is no model or the default was deleted."""
    imgs = sorted((tiny_pipeline.data / "Images" / "car_imagenet").glob("*.JPEG"))[:2]
    assert _code("infer", str(imgs[0]), "-o", str(tmp_path / "p.h5")) == 2
    assert "make demo" in capsys.readouterr().err
    run_cli("models", "--set-default", str(tiny_pipeline.model))
    run_cli("models")
    assert f"default: {tiny_pipeline.model.resolve()} (from user default)" in capsys.readouterr().out.replace("\n", "")
    run_cli("infer", str(imgs[0]), "-o", str(tmp_path / "one.h5"), "--export", str(tmp_path / "mesh.obj"),
            "--category", "car", *FAST)
    assert (tmp_path / "mesh.obj").is_file()
    folder = tmp_path / "imgs"
    folder.mkdir()
    for p in imgs:
        shutil.copy(p, folder / p.name)
    run_cli("infer", str(folder), "-o", str(tmp_path / "two.h5"), "--overlay", str(tmp_path / "ov"),
            "--export", str(tmp_path / "meshes"), "--category", "car", *FAST)
    assert len(list((tmp_path / "meshes").glob("*.obj"))) == 2 and len(list((tmp_path / "ov").glob("*.png"))) == 2
    # infer.model wins over the user default; a deleted default is one line, exit 2
    copy = tmp_path / "copy.h5"
    shutil.copy(tiny_pipeline.model, copy)
    run_cli("models", "--set-default", str(copy))
    copy.unlink()
    run_cli("infer", str(imgs[0]), "-o", str(tmp_path / "cfg.h5"), "--category", "car",
            "--set", f"infer.model={tiny_pipeline.model}", *FAST)
    capsys.readouterr()
    assert _code("infer", str(imgs[0]), "-o", str(tmp_path / "p.h5")) == 2
    err = capsys.readouterr().err
    assert "no longer exists" in err and len(err.strip().splitlines()) == 1
    run_cli("models", "--clear-default")
    assert not dm.default_file().exists()


def test_train_textures_set_default(user_dir, tmp_path, monkeypatch):
    """--set-default makes the written model the user default (training itself stubbed)."""
    import ntdm_cli.train.loop as loop

    def fake_train(data, deformers, output, *args, **kwargs):
        _fake_model(output)
        return {"rank": 0, "categories": ["car"], "images": 1, "epochs": 1, "final_loss": 0.0,
                "calibration_images": 1, "calib_accuracy": 1.0, "chance": 1.0, "class_calib_images": 0}

    monkeypatch.setattr(loop, "train_textures", fake_train)
    (tmp_path / "data").mkdir()
    deformer = tmp_path / "car.h5"
    deformer.write_text("")
    run_cli("train-textures", "--data", str(tmp_path / "data"), "--deformers", str(deformer),
            "-o", str(tmp_path / "model.h5"), "--set-default")
    assert dm.read_user_default() == (tmp_path / "model.h5").resolve()
