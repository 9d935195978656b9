"""Bad inputs and faults (issue 20): each is answered with one line, the right exit code (2 usage,
1 failure) and nothing lost or left behind. docs/bad_inputs.md lists them with these test names."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ntdm_cli.artifacts import read_artifact, write_artifact
from ntdm_cli.errors import ImageError, NtdmError

FAST_INFER = ["--set", "infer.steps=2", "--set", "infer.azimuths=2", "--set", "infer.elevations=1",
              "--set", "infer.thetas=1"]


def ntdm(*args: str, capsys) -> tuple[int, str]:
    """Run ``ntdm ARGS`` in this process: (exit code, stderr)."""
    from ntdm_cli.cli.main import main

    old = signal.getsignal(signal.SIGTERM)
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        signal.signal(signal.SIGTERM, old)
    return code, capsys.readouterr().err


def one_line(err: str) -> bool:
    return err.strip().count("\n") == 0 and "Traceback" not in err and err.strip() != ""


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".ntdm-probe"))


@contextlib.contextmanager
def tmpfs(path: Path, options: str):
    """A size-limited or read-only tmpfs at ``path`` (needs root; the test is skipped otherwise)."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def _image(tiny_pipeline) -> Path:
    return next((tiny_pipeline.data / "Images" / "car_imagenet").glob("*.JPEG"))


# 1. an output equal to an input ------------------------------------------------------------------


def test_output_equal_to_input_is_refused(tiny_pipeline, tmp_path, capsys):
    model_bytes = tiny_pipeline.model.read_bytes()
    link = tmp_path / "link.h5"
    link.symlink_to(tiny_pipeline.model)
    for out in (tiny_pipeline.model, link):
        code, err = ntdm("infer", _image(tiny_pipeline), "--model", tiny_pipeline.model, "-o", out, capsys=capsys)
        assert code == 2 and one_line(err) and "--output" in err and "--model" in err, err
    assert tiny_pipeline.model.read_bytes() == model_bytes
    cad = next((tiny_pipeline.data / "CAD" / "car").glob("*.off"))
    cad_bytes = cad.read_bytes()
    code, err = ntdm("fit-deformer", "--cads", cad, "-o", cad, capsys=capsys)
    assert code == 2 and one_line(err) and "--cads" in err and cad.read_bytes() == cad_bytes, err
    deformer = tiny_pipeline.deformers / "car.h5"
    before = deformer.read_bytes()
    code, err = ntdm("train-textures", "--data", tiny_pipeline.data, "--deformers", tiny_pipeline.deformers,
                     "-o", deformer, capsys=capsys)
    assert code == 2 and one_line(err) and "--deformers" in err and deformer.read_bytes() == before, err
    code, err = ntdm("export-obj", deformer, "--all", "-o", tiny_pipeline.deformers / "car.h5", capsys=capsys)
    assert code == 2 and one_line(err), err


# 2. a full disk -----------------------------------------------------------------------------------


def _fill(folder: Path, leave: int) -> None:
    free = shutil.disk_usage(folder).free
    with open(folder / "filler", "wb") as f:
        f.write(b"\0" * max(free - leave, 0))


def test_full_disk_is_one_line_and_leaves_nothing(tiny_pipeline, tmp_path, capsys):
    with tmpfs(tmp_path / "full", "size=1m") as full:
        _fill(full, 16 * 1024)
        code, err = ntdm("infer", _image(tiny_pipeline), "--model", tiny_pipeline.model, "--category", "car",
                         "-o", full / "pred.h5", *FAST_INFER, capsys=capsys)
        assert code == 1 and one_line(err) and "no space left" in err and "pred.h5" in err, err
        assert sorted(p.name for p in full.iterdir()) == ["filler"]
        code, err = ntdm("export-obj", tiny_pipeline.deformers / "car.h5", "--all", "-o", full / "objs", capsys=capsys)
        assert code == 1 and one_line(err) and "no space left" in err and ".obj" in err, err
        assert leftovers(full) == []


# 3. unreadable images in a batch or a split --------------------------------------------------------


def test_unreadable_images_in_a_folder_are_skipped(tiny_pipeline, tmp_path, capsys):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(_image(tiny_pipeline), folder / "good.jpg")
    (folder / "bad1.jpg").write_bytes(b"not a jpeg")
    (folder / "bad2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    out = tmp_path / "p.h5"
    code, err = ntdm("infer", folder, "--model", tiny_pipeline.model, "-o", out, *FAST_INFER, capsys=capsys)
    assert code == 0, err
    assert "skipped 2 unreadable images" in err and "bad1.jpg" in err and "bad2.png" in err
    assert read_artifact(out, "predictions")["image_id"] == [str(folder / "good.jpg")]


def test_corrupt_image_in_a_split_is_skipped(tiny_pipeline, tmp_path, capsys):
    from ntdm_cli.data.pascal3d import Pascal3DDataset

    data = tmp_path / "data"
    shutil.copytree(tiny_pipeline.data, data, ignore=shutil.ignore_patterns("OOD_CV", "OccludedPASCAL3D"))
    ds = Pascal3DDataset(data, ["car"], split="val")
    ds.entries[0].image_path.write_bytes(b"\xff\xd8\xff garbage")
    samples = list(ds)
    assert len(samples) == len(ds) - 1 and ds.skipped["unreadable image"] == 1
    assert "unreadable image" in capsys.readouterr().err


# 4. images that are not 8-bit RGB ------------------------------------------------------------------


def test_16bit_and_float_images_become_8bit_rgb(tmp_path):
    from PIL import Image

    from ntdm_cli.data.pascal3d import load_image

    ramp16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    Image.fromarray(ramp16).save(tmp_path / "g16.png")
    rgb = load_image(tmp_path / "g16.png")
    assert rgb.dtype == np.uint8 and rgb.shape == (8, 8, 3)
    assert np.abs(rgb[..., 0].astype(int) - np.round(ramp16 / 65535 * 255)).max() <= 1  # not all white
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tif")
    rgb = load_image(tmp_path / "f.tif")
    assert np.abs(rgb[..., 1].astype(int) - np.round(ramp * 255)).max() <= 1  # not all black
    Image.fromarray(np.full((4, 4), -3.0, np.float32), mode="F").save(tmp_path / "neg.tif")
    with pytest.raises(ImageError, match="neg.tif"):
        load_image(tmp_path / "neg.tif")


def test_decompression_bomb_names_the_file(tmp_path, monkeypatch):
    from PIL import Image

    from ntdm_cli.data.pascal3d import load_image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 64² > 2 × 1000: PIL's bomb error
    with pytest.raises(ImageError, match="bomb.png.*too large"):
        load_image(tmp_path / "bomb.png")


# 5. dataset lists that leave the dataset -----------------------------------------------------------


def test_list_entry_outside_the_dataset_is_refused(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "Image_sets").mkdir(parents=True)
    (root / "Annotations" / "car_imagenet").mkdir(parents=True)
    (root / "Image_sets" / "car_imagenet_val.txt").write_text("n01\n../../../elsewhere/car_x\n")
    from ntdm_cli.data.pascal3d import Pascal3DDataset

    with pytest.raises(NtdmError, match=r"car_imagenet_val.txt:2: entry '../../../elsewhere/car_x' leaves"):
        Pascal3DDataset(root, ["car"], split="val")


# 6. unknown and out-of-range options ---------------------------------------------------------------


def test_unknown_config_sections_and_keys_are_refused(tmp_path, capsys):
    code, err = ntdm("--set", "infr.steps=1", "info", "x.h5", capsys=capsys)
    assert code == 2 and one_line(err) and "did you mean 'infer'" in err, err
    code, err = ntdm("--set", "train.lrr=1", "info", "x.h5", capsys=capsys)
    assert code == 2 and one_line(err) and "did you mean 'lr'" in err, err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("infr:\n  steps: 3\n")
    code, err = ntdm("--config", cfg, "info", "x.h5", capsys=capsys)
    assert code == 2 and one_line(err) and "c.yaml" in err and "did you mean 'infer'" in err, err


def test_bad_numbers_and_ranges_are_usage_errors(tiny_pipeline, tmp_path, capsys):
    img, model, out = _image(tiny_pipeline), tiny_pipeline.model, tmp_path / "p.h5"
    for value in ("0", "-1", "nan", ".nan"):
        code, err = ntdm("--set", f"infer.lr={value}", "infer", img, "--model", model, "-o", out, capsys=capsys)
        assert code == 2 and one_line(err) and "infer.lr" in err, (value, err)
    code, err = ntdm("infer", "--data", tiny_pipeline.data, "--limit", "-1", "--model", model, "-o", out, capsys=capsys)
    assert code == 2 and one_line(err) and "--limit" in err, err
    code, err = ntdm("infer", img, "--bbox", "5000,5000,6000,6000", "--model", model, "-o", out, capsys=capsys)
    assert code == 2 and one_line(err) and "--bbox" in err and "outside" in err, err
    assert not out.exists()


# 7. huge or hostile artifacts ----------------------------------------------------------------------


def test_huge_attributes_are_refused_quickly(tmp_path, capsys):
    big = "x" * (8 << 20)
    for attr in ("created_by", "config"):
        p = write_artifact(tmp_path / f"{attr}.h5", "bench", {"x": np.zeros(2)},
                           **({"created_by": big} if attr == "created_by" else {"config_yaml": big}))
        t0 = time.perf_counter()
        code, err = ntdm("info", p, capsys=capsys)
        assert code == 1 and one_line(err) and attr in err and len(err) < 600, err[:300]
        assert time.perf_counter() - t0 < 10


def test_error_lines_shorten_echoed_paths(tmp_path, capsys):
    long = "/" + "d" * 100_000
    code, err = ntdm("info", long, capsys=capsys)
    assert code == 2 and one_line(err) and len(err) < 700 and "…" in err, err[:300]


# 8. output errors before any computation -----------------------------------------------------------


def test_output_kind_is_checked_before_computing(tiny_pipeline, tmp_path, capsys):
    t0 = time.perf_counter()
    code, err = ntdm("infer", _image(tiny_pipeline), "--model", tiny_pipeline.model, "-o", tmp_path, capsys=capsys)
    assert code == 2 and one_line(err) and "--output" in err and "is a folder" in err, err
    (tmp_path / "afile").write_text("x")
    code, err = ntdm("eval", tiny_pipeline.model, "--out", tmp_path / "afile", capsys=capsys)
    assert code == 2 and one_line(err) and "--out" in err and "not a folder" in err, err
    assert time.perf_counter() - t0 < 30


def test_read_only_output_folder_is_refused_before_computing(tiny_pipeline, tmp_path, capsys):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        for opt in ("-o", "--overlay", "--export"):
            args = {"-o": ro / "p.h5", "--overlay": tmp_path / "p.h5", "--export": tmp_path / "p.h5"}
            extra = [] if opt == "-o" else [opt, ro / "x.png"]
            code, err = ntdm("infer", _image(tiny_pipeline), "--model", tiny_pipeline.model, "-o", args[opt], *extra,
                             capsys=capsys)
            assert code == 2 and one_line(err) and (opt if opt != "-o" else "--output") in err, err
            assert "tmp" not in err.split(str(ro))[-1], err  # the option and path, not a temp file
        assert not (tmp_path / "p.h5").exists()


# 9. leftovers, permissions, concurrent synth --------------------------------------------------------


def test_atomic_writer_keeps_the_umask_and_cleans_stale_temps(tmp_path):
    from ntdm_cli.fsutil import atomic_write, remove_stale_temps

    old = os.umask(0o022)
    try:
        p = atomic_write(tmp_path / "a.txt", lambda tmp: Path(tmp).write_text("x"))
    finally:
        os.umask(old)
    assert (p.stat().st_mode & 0o777) == 0o644
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".a.txt.{int(dead.stdout)}-abc.tmp"
    stale.write_text("half")
    live = tmp_path / f".a.txt.{os.getppid()}-abc.tmp"  # a running writer's file is kept
    live.write_text("busy")
    assert remove_stale_temps(tmp_path, force=True) == 1
    assert not stale.exists() and live.exists()


def test_sigterm_during_a_write_leaves_no_temp_file(tmp_path):
    script = (
        "import signal, sys, time\n"
        "from pathlib import Path\n"
        "from ntdm_cli.cli.main import _on_sigterm\n"
        "from ntdm_cli.fsutil import atomic_write\n"
        "signal.signal(signal.SIGTERM, _on_sigterm)\n"
        "def write(tmp):\n"
        "    Path(tmp).write_text('partial')\n"
        "    print('ready', flush=True)\n"
        "    time.sleep(60)\n"
        f"atomic_write(Path({str(tmp_path / 'out.txt')!r}), write)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_second_synth_on_the_same_folder_is_refused(tmp_path, capsys):
    from ntdm_cli.fsutil import FolderLock

    out = tmp_path / "synth"
    out.mkdir()
    with FolderLock(out, "OUT", "ntdm synth"):
        code, err = ntdm("synth", out, "--categories", "car", "--per-category", "2", "--size", "64",
                         "--occlusion", "none", "--ood", "none", capsys=capsys)
    assert code == 1 and one_line(err) and "another ntdm synth" in err, err
    assert list(out.iterdir()) == []


# 10. numbers that are not numbers ---------------------------------------------------------------------


def test_diverging_deformer_fit_fails(tmp_path, capsys):
    from ntdm_cli.geometry import load_mesh, write_off
    from tests.cad_fixtures import write_cads
    from tests.conftest import TINY_FIT

    cads = write_cads(tmp_path / "cads", count=2)
    for p in cads:
        m = load_mesh(p)
        write_off(p, np.asarray(m.verts, dtype=np.float64) * 1e30, np.asarray(m.faces))
    code, err = ntdm("fit-deformer", "--cads", tmp_path / "cads", "-o", tmp_path / "d.h5", *TINY_FIT, capsys=capsys)
    last = err.strip().splitlines()[-1]  # after the progress line: the one error line
    assert code == 1 and err.count("error:") == 1 and last.startswith("error:") and "diverged" in last, err
    assert "Traceback" not in err and not (tmp_path / "d.h5").exists()


def test_resume_with_other_settings_names_them(tiny_pipeline, tmp_path, capsys):
    from tests.conftest import TINY_TRAIN

    ckpt = tiny_pipeline.model.with_name(tiny_pipeline.model.name + ".ckpt.h5")
    if not ckpt.is_file():
        pytest.skip("the tiny pipeline kept no checkpoint")
    args = [a if a != "train.feature_dim=16" else "train.feature_dim=8" for a in TINY_TRAIN]
    code, err = ntdm("train-textures", "--data", tiny_pipeline.data, "--deformers", tiny_pipeline.deformers,
                     "-o", tmp_path / "m.h5", "--resume", ckpt, "--epochs", "4", *args, capsys=capsys)
    assert code == 2 and one_line(err) and "train.feature_dim is 16 there, 8 here" in err, err
    assert not (tmp_path / "m.h5").exists()
    # a checkpoint trained at another object scale is refused too
    code, err = ntdm("train-textures", "--data", tiny_pipeline.data, "--deformers", tiny_pipeline.deformers,
                     "-o", tmp_path / "m.h5", "--resume", ckpt, "--epochs", "4", *TINY_TRAIN,
                     "--set", "train.zoom=2", capsys=capsys)
    assert code == 2 and one_line(err) and "train.zoom is 1.0 there, 2.0 here" in err, err
    assert not (tmp_path / "m.h5").exists()


def test_damaged_pose_prior_names_the_model(tiny_pipeline, tmp_path, capsys):
    """A model whose pose_prior attribute is not a table of priors (or has a zero spread) is refused
    when it is loaded, with one line naming the file, and nothing is written."""
    import h5py

    img, out = _image(tiny_pipeline), tmp_path / "p.h5"
    for bad in ("{not json", '{"car": {"elevation": [0.1]}}', '{"car": {"elevation": [0.1, 0], "theta": [0, 0.05], '
                                                              '"temperature": 0.07}}'):
        model = tmp_path / "m.h5"
        shutil.copy(tiny_pipeline.model, model)
        with h5py.File(model, "r+") as f:
            f.attrs["pose_prior"] = bad
        code, err = ntdm("infer", img, "--model", model, "-o", out, *FAST_INFER, capsys=capsys)
        assert code == 1 and one_line(err) and "m.h5" in err and "pose_prior" in err, (bad, err)
        assert not out.exists()


def test_damaged_view_classifier_names_the_model(tiny_pipeline, tmp_path, capsys):
    """A model whose view classifier's description or weights do not fit is refused when it is
    loaded, with one line naming the file and the classifier, and nothing is written."""
    import h5py

    img, out = _image(tiny_pipeline), tmp_path / "p.h5"
    for attr in ("{not json", '{"dim": 16}', '{"dim": 16, "categories": 3, "windows": [[2, 2]], "bins": 12}', None):
        model = tmp_path / "m.h5"
        shutil.copy(tiny_pipeline.model, model)
        with h5py.File(model, "r+") as f:
            if attr is None:  # the weights of another shape
                key = next(k for k in f["view"] if k.endswith("out.weight"))
                del f["view"][key]
                f["view"][key] = np.zeros((3, 3), dtype=np.float32)
            else:
                f.attrs["view_classifier"] = attr
        code, err = ntdm("infer", img, "--model", model, "-o", out, *FAST_INFER, capsys=capsys)
        assert code == 1 and one_line(err) and "m.h5" in err and "view classifier" in err, (attr, err)
        assert not out.exists()
