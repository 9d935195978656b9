"""``ntdm eval``: report generation from a small predictions artifact and a handmade ground truth."""

import json
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
from PIL import Image

from ntdm_cli.artifacts import write_artifact
from ntdm_cli.errors import NtdmError, NtdmUsageError
from ntdm_cli.eval import GroundTruth, ground_truth_from_sample, load_ground_truth, run_eval
from ntdm_cli.eval import report as report_mod
from ntdm_cli.eval import scoring as scoring_mod
from ntdm_cli.conventions import mask_key
from ntdm_cli.eval.report import EvalConfig, load_predictions
from ntdm_cli.metrics import pose_rotation

D = math.radians
H, W = 12, 16


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def make_ground_truth(with_images=True):
    """Six annotated images: four i.i.d. (L0, L0, L0, L1), one OOD (weather), one never predicted."""
    rng = np.random.default_rng(0)
    img = (lambda: rng.integers(0, 255, (H, W, 3), dtype=np.uint8)) if with_images else (lambda: None)
    occluder = box(2, 8, 2, 6)
    return [
        GroundTruth("car/a", "car", D(30), D(10), 0.0, 0, "", box(2, 8, 2, 10), box(2, 8, 2, 10), img()),
        GroundTruth("car/b", "car", D(100), D(5), D(3), 0, "", box(2, 8, 2, 10), box(2, 8, 2, 10), img()),
        GroundTruth("bus/c", "bus", D(-60), D(20), 0.0, 0, "", box(0, 12, 0, 16), box(0, 12, 0, 16), img()),
        GroundTruth("car/d", "car", D(200), D(15), D(-4), 1, "", box(2, 8, 2, 10), box(2, 8, 2, 10) & ~occluder, img()),
        GroundTruth("bus/e", "bus", D(10), D(0), 0.0, 0, "weather", box(4, 10, 4, 12), box(4, 10, 4, 12), img()),
        GroundTruth("car/f", "car", D(0), D(0), 0.0, 0, "", box(2, 8, 2, 10), box(2, 8, 2, 10), img()),
    ]


class FakeGroundTruth:
    """A ground-truth loader over in-memory records that behaves like load_ground_truth: it yields the
    annotations of the requested selection and records what it was asked for."""

    def __init__(self, records):
        self.records = records
        self.calls = []

    def __call__(self, data_root, split, image_ids, *, categories, occlusion_levels, nuisances):
        self.calls.append(dict(split=split, ids=set(image_ids), categories=list(categories),
                               levels=list(occlusion_levels), nuisances=list(nuisances)))
        for r in self.records:
            if r.category in categories and ((r.nuisance and r.nuisance in nuisances)
                                             or (not r.nuisance and r.occlusion_level in occlusion_levels)):
                yield r


def write_predictions(path, gt, *, offsets=None, nan_ids=(), wrong_class=None, extra_ids=(), drop_ids=("car/f",),
                      mask_shift=None, rotation_override=None, split="val", categories=("bus", "car"), extra=None):
    """A predictions artifact for the records in ``gt`` (minus ``drop_ids``, plus ``extra_ids``):
    ground-truth angles + ``offsets[id]`` (degrees), NaN angles for ``nan_ids``, masks copied from the
    ground truth (shifted right by ``mask_shift[id]`` pixels)."""
    offsets, wrong_class, mask_shift = offsets or {}, wrong_class or {}, mask_shift or {}
    rows = [r for r in gt if r.image_id not in drop_ids]
    rows += [GroundTruth(i, "car", 0.0, 0.0, 0.0, 0, "", box(0, 2, 0, 2), box(0, 2, 0, 2)) for i in extra_ids]
    ids, cats, ang, occ, nui, masks = [], [], [], [], [], {}
    for r in rows:
        a = np.array([r.azimuth, r.elevation, r.theta]) + np.radians(offsets.get(r.image_id, (0, 0, 0)))
        if r.image_id in nan_ids:
            a[:] = np.nan
        ids.append(r.image_id)
        cats.append(wrong_class.get(r.image_id, r.category))
        ang.append(a)
        occ.append(r.occlusion_level)
        nui.append(r.nuisance)
        shift = mask_shift.get(r.image_id, 0)
        amodal = np.roll(r.amodal_mask, shift, axis=1)
        visible = np.roll(r.visible_mask, shift, axis=1)
        masks[r.image_id.replace("/", "|")] = {"amodal": amodal, "visible": visible, "occluded": amodal & ~visible}
    ang = np.array(ang)
    rotation = pose_rotation(ang[:, 0], ang[:, 1], ang[:, 2])
    for i, R in (rotation_override or {}).items():
        rotation[ids.index(i)] = R
    n = len(ids)
    data = {
        "image_id": ids, "category": cats, "azimuth": ang[:, 0], "elevation": ang[:, 1], "theta": ang[:, 2],
        "distance": np.full(n, 5.0), "loss": np.linspace(0.1, 0.5, n), "rotation": rotation,
        "categories": list(categories), "category_losses": np.zeros((n, len(categories))),
        "occlusion_level": np.array(occ), "nuisance": nui, "masks": masks,
    }
    data.update(extra(ids, ang) if extra else {})
    return write_artifact(path, "predictions", data, attrs={"data_root": "unused", "split": split})


@pytest.fixture
def setup(tmp_path):
    gt = make_ground_truth()
    pred = write_predictions(tmp_path / "full.h5", gt, offsets={"car/b": (20, 0, 0), "car/d": (0, 0, 5),
                                                                "bus/e": (0, 40, 0)},
                             nan_ids=("bus/c",), wrong_class={"bus/c": "car"}, extra_ids=("car/zzz",),
                             mask_shift={"car/b": 4})
    return tmp_path, gt, pred


def test_report_values_and_files(setup):
    tmp_path, gt, pred = setup
    fake = FakeGroundTruth(gt)
    runs, files = run_eval([pred], tmp_path, tmp_path / "report", ground_truth=fake)
    # one pass over the ground truth, asked for what the predictions cover
    assert fake.calls == [dict(split="val", ids={"car/a", "car/b", "bus/c", "car/d", "bus/e", "car/zzz"},
                               categories=["bus", "car"], levels=[0, 1], nuisances=["weather"])]
    for key in ("json", "markdown", "csv", "accuracy_plot", "histogram"):
        assert files[key].is_file(), key
    for key in ("accuracy_plot", "histogram"):
        with Image.open(files[key]) as im:
            assert im.format == "PNG" and im.width > 300
    doc = json.loads(files["json"].read_text())
    assert set(doc) >= {"ntdm_version", "data_root", "thresholds_rad", "same_image_sets", "runs"}
    assert doc["same_image_sets"] is True
    (run,) = doc["runs"]
    assert run["label"] == "full" and run["split"] == "val"
    assert run["n_predictions"] == 6 and run["n_annotated"] == 6 and run["n_scored"] == 5
    assert run["mismatch"]["predicted_not_annotated"] == {"count": 1, "first": ["car/zzz"]}
    assert run["mismatch"]["annotated_not_predicted"] == {"count": 1, "first": ["car/f"]}
    # errors: a 0°, b 20°, c NaN -> 180°, d 5°, e 40°
    s = run["all"]
    assert s["n"] == 5 and s["n_non_finite"] == 1
    assert s["acc_pi_6"] == pytest.approx(3 / 5) and s["acc_pi_18"] == pytest.approx(2 / 5)
    assert s["median_error_deg"] == pytest.approx(20.0, abs=1e-6)
    assert s["class_acc"] == pytest.approx(4 / 5)
    # b's mask shifted by 4 of 8 columns: IoU = 24 / 72; the others are exact
    assert s["amodal_iou"] == pytest.approx((4 + 24 / 72) / 5)
    assert s["visible_iou"] == pytest.approx((4 + 24 / 72) / 5)
    assert set(run["by_occlusion"]) == {"L0", "L1"}
    assert run["by_occlusion"]["L0"]["n"] == 3 and run["by_occlusion"]["L0"]["acc_pi_6"] == pytest.approx(2 / 3)
    assert run["by_occlusion"]["L1"]["acc_pi_18"] == 1.0
    assert run["by_nuisance"] == {"weather": pytest.approx(run["ood_mean"])}
    assert run["ood_mean"]["acc_pi_6"] == 0.0 and run["ood_mean"]["median_error_deg"] == pytest.approx(40.0)
    assert run["by_category"]["bus"]["class_acc"] == pytest.approx(1 / 2)
    # class confusion, rows annotated: the i.i.d. bus/c was called a car; the OOD bus/e is right
    assert run["class_confusion"]["iid"] == {"categories": ["bus", "car"], "counts": [[0, 1], [0, 3]]}
    assert run["class_confusion"]["ood"] == {"categories": ["bus"], "counts": [[1]]}
    assert run["category_mean"]["acc_pi_6"] == pytest.approx((0 / 2 + 3 / 3) / 2)
    assert run["rotation_check"]["disagreements"] == 0
    assert [w["image_id"] for w in run["worst"]] == ["bus/c", "bus/e", "car/b", "car/d"]
    assert len(run["overlays"]) == 4 and all((files["json"].parent / p).is_file() for p in run["overlays"])
    with Image.open(files["json"].parent / run["overlays"][0]) as im:
        assert im.size == (W * 16, H * 16 + 28)  # enlarged to >= 256 px, caption strip on top
    md = files["markdown"].read_text()
    assert "## Summary" in md and "table 1" in md and "table 2" in md and "## By category: full" in md
    assert "| full | 5 | 60.0 | 40.0 | 20.0 | 86.7 | 86.7 | 80.0 | 1 | 1 |" in md  # summary row, in %
    assert "| full | 66.7 | 100.0 | 33.3 | 100.0 |" in md  # table 1 layout: π/6 L0 L1, π/18 L0 L1
    assert "| full | 0.0 | 0.0 |" in md  # table 2 layout: weather, mean
    assert "Class confusion, i.i.d. images" in md and "| bus | 0 | 1 |\n| car | 0 | 3 |" in md
    assert "Class confusion, OOD images" not in md  # one category: nothing to confuse
    assert "1 predicted, not annotated" in md and "`car/zzz`" in md and "1 annotated, not predicted" in md
    lines = files["csv"].read_text().splitlines()
    assert len(lines) == 6 and lines[0].startswith("run,image_id")


def test_overlays_skipped_when_images_unreadable(tmp_path, capsys):
    gt = make_ground_truth(with_images=False)
    pred = write_predictions(tmp_path / "p.h5", gt, offsets={"car/b": (50, 0, 0)})
    runs, files = run_eval([pred], tmp_path, tmp_path / "r", ground_truth=FakeGroundTruth(gt))
    assert "overlays skipped" in capsys.readouterr().err
    doc = json.loads(files["json"].read_text())
    assert doc["runs"][0]["overlays"] == ["", "", "", ""]
    assert not (tmp_path / "r" / "overlays").exists()
    assert files["markdown"].is_file()


def test_mismatch_strict_and_silent_selection(tmp_path, capsys):
    gt = make_ground_truth()
    pred = write_predictions(tmp_path / "p.h5", gt, extra_ids=("car/ghost",))
    with pytest.raises(NtdmError, match=r"1 predicted images have no annotation \(first: car/ghost\)"):
        run_eval([pred], tmp_path, tmp_path / "r", ground_truth=FakeGroundTruth(gt), strict=True)
    assert not (tmp_path / "r").exists()  # nothing written on failure
    # exact match: no mismatch reported
    pred = write_predictions(tmp_path / "q.h5", gt, drop_ids=())
    runs, files = run_eval([pred], tmp_path, tmp_path / "r2", ground_truth=FakeGroundTruth(gt), strict=True)
    assert runs[0].predicted_not_annotated == [] and runs[0].annotated_not_predicted == []
    assert "Every predicted image is annotated" in files["markdown"].read_text()
    # side by side on different image sets: said in the console, the JSON and the Markdown
    fewer = write_predictions(tmp_path / "fewer.h5", gt, drop_ids=("car/f", "car/a"))
    capsys.readouterr()
    runs, files = run_eval([pred, fewer], tmp_path, tmp_path / "r3", ground_truth=FakeGroundTruth(gt))
    assert "scored on different image sets (q: 6, fewer: 4 images)" in capsys.readouterr().err
    assert json.loads(files["json"].read_text())["same_image_sets"] is False
    assert "different image sets" in files["markdown"].read_text()


def test_bad_predictions_content(tmp_path):
    gt = make_ground_truth()
    good = write_predictions(tmp_path / "p.h5", gt)
    preds = load_predictions(good, "x")
    data = {"image_id": ["a", "b"], "category": ["car"], "azimuth": [0.0, 0.0], "elevation": [0.0, 0.0],
            "theta": [0.0, 0.0]}
    preds.close()
    bad = write_artifact(tmp_path / "bad.h5", "predictions", data)
    with pytest.raises(NtdmError, match="'category' has 1 entries, 'image_id' has 2"):
        load_predictions(bad, "x")
    data["category"] = ["car", "car"]
    data["image_id"] = ["a", "a"]
    dup = write_artifact(tmp_path / "dup.h5", "predictions", data)
    with pytest.raises(NtdmError, match="'a' occurs more than once"):
        load_predictions(dup, "x")
    # a predicted mask at the wrong resolution names the image
    wrong = write_predictions(tmp_path / "w.h5", gt)
    gt_small = [GroundTruth(r.image_id, r.category, r.azimuth, r.elevation, r.theta, r.occlusion_level, r.nuisance,
                            r.amodal_mask[:6], r.visible_mask[:6], r.image) for r in gt]
    with pytest.raises(NtdmError, match=r"amodal mask of image 'car/a' is \(12, 16\)"):
        run_eval([wrong], tmp_path, tmp_path / "r", ground_truth=FakeGroundTruth(gt_small))


def test_stored_rotation_checked_against_angles(tmp_path, capsys):
    gt = make_ground_truth()
    pred = write_predictions(tmp_path / "p.h5", gt, rotation_override={"car/a": np.eye(3)})
    runs, files = run_eval([pred], tmp_path, tmp_path / "r", ground_truth=FakeGroundTruth(gt),
                           config=EvalConfig(overlays=0))
    assert runs[0].rotation_disagreements == 1
    assert "disagrees with the stored angles for 1 images" in capsys.readouterr().err
    assert runs[0].summary["all"]["acc_pi_18"] == 1.0  # scored from the angles
    assert json.loads(files["json"].read_text())["runs"][0]["overlays"] == []


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "ntdm_cli", *args], capture_output=True, text=True,
                          env={**os.environ, "NTDM_NO_PROGRESS": "1", "COLUMNS": "200"})


def test_cli_rejects_wrong_kind(tmp_path):
    other = write_artifact(tmp_path / "bench.h5", "bench", {"x": np.zeros(3)})
    r = run_cli("eval", str(other), "--data", str(tmp_path), "--out", str(tmp_path / "r"))
    assert r.returncode == 1, r.stderr
    assert "expected a predictions artifact, found kind 'bench'" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not (tmp_path / "r").exists()


def cli_in_process(monkeypatch, capsys, *args):
    from ntdm_cli.cli.main import main

    monkeypatch.setenv("NTDM_NO_PROGRESS", "1")
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_cli_side_by_side_with_labels(tmp_path, monkeypatch, capsys):
    gt = make_ground_truth()
    full = write_predictions(tmp_path / "full.h5", gt)
    ablation = write_predictions(tmp_path / "nobg.h5", gt, offsets={"car/a": (0, 0, 60), "car/b": (0, 0, 12)})
    fake = FakeGroundTruth(gt)
    monkeypatch.setattr(scoring_mod, "load_ground_truth", fake)
    code, out, err = cli_in_process(monkeypatch, capsys, "eval", str(full), str(ablation), "--data", str(tmp_path),
                                    "--out", str(tmp_path / "rep"), "--labels", "full,no-bg", "--overlays", "1")
    assert code == 0, err
    assert len(fake.calls) == 1  # both runs scored in one pass over the annotations
    assert "full" in out and "no-bg" in out and "table 1 layout" in out and "report.md" in out
    doc = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [r["label"] for r in doc["runs"]] == ["full", "no-bg"]
    assert doc["runs"][0]["all"]["acc_pi_18"] == 1.0 and doc["same_image_sets"] is True
    assert doc["runs"][1]["by_occlusion"]["L0"]["acc_pi_6"] == pytest.approx(2 / 3)
    assert doc["runs"][1]["by_occlusion"]["L0"]["acc_pi_18"] == pytest.approx(1 / 3)
    assert [len(r["overlays"]) for r in doc["runs"]] == [1, 1]
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "| full |" in md and "| no-bg |" in md
    code, out, err = cli_in_process(monkeypatch, capsys, "eval", str(full), str(ablation), "--data", str(tmp_path),
                                    "--out", str(tmp_path / "rep2"), "--labels", "only-one")
    assert code == 2 and "--labels: 1 labels for 2 predictions files" in err


def test_ground_truth_from_samples(tmp_path, monkeypatch):
    amodal = box(2, 8, 2, 10)
    occluder = box(0, 12, 0, 6)

    def sample(image_id, level, nuisance="", occ=None):
        return types.SimpleNamespace(
            image=np.zeros((H, W, 3), np.uint8), category="car", image_id=image_id,
            viewpoint={"azimuth": 0.5, "elevation": 0.1, "theta": -0.2, "distance": 5.0, "focal": 1.0,
                       "px": 8.0, "py": 6.0, "viewport": 3000.0},
            cad_index=0, bbox=(2, 2, 10, 8), amodal_mask=amodal, occluder_mask=occ, occlusion_level=level,
            nuisance=nuisance)

    g = ground_truth_from_sample(sample("x", 2, occ=occluder))
    assert (g.visible_mask == (amodal & ~occluder)).all() and g.visible_mask.sum() == 6 * 4
    assert (g.azimuth, g.elevation, g.theta, g.occlusion_level) == (0.5, 0.1, -0.2, 2)
    g = ground_truth_from_sample(sample("y", 0))
    assert (g.visible_mask == amodal).all()
    g = ground_truth_from_sample(sample("z", 0), keep_pixels=False)
    assert g.image is None and g.amodal_mask is None and g.visible_mask is None

    opened = []

    class FakeDataset:  # the data helper's Pascal3DDataset interface
        def __init__(self, root, categories, split, occlusion=0, nuisance=None):
            opened.append((categories, split, occlusion, nuisance))
            self.items = [sample(f"{occlusion}-{nuisance}-{i}", occlusion, nuisance or "") for i in range(2)]

        def __iter__(self):
            return iter(self.items)

    monkeypatch.setitem(sys.modules, "ntdm_cli.data", types.SimpleNamespace(Pascal3DDataset=FakeDataset))
    records = list(load_ground_truth(tmp_path, "val", {"1-None-0"}, categories=["car"], occlusion_levels=[1, 0],
                                     nuisances=["", "shape"]))
    assert opened == [(["car"], "val", 0, None), (["car"], "val", 1, None), (["car"], "val", 0, "shape")]
    assert [r.image_id for r in records] == ["0-None-0", "0-None-1", "1-None-0", "1-None-1", "0-shape-0", "0-shape-1"]
    assert [r.image is not None for r in records] == [False, False, True, False, False, False]
    assert records[-1].nuisance == "shape"
    with pytest.raises(NtdmError, match="no such folder"):
        next(load_ground_truth(tmp_path / "missing", "val", set(), categories=["car"]))


def test_labels_and_masks_helpers():
    assert report_mod.default_labels(["a/full.h5", "b/full.h5", "x.h5"], None) == ["full#1", "full#2", "x"]
    with pytest.raises(NtdmUsageError, match="distinct"):
        report_mod.default_labels(["a.h5", "b.h5"], "x,x")
    assert mask_key("car/n02814533_1.JPEG", "amodal") == "masks/car|n02814533_1.JPEG/amodal"


def write_pascal3d_tree(root, size=(24, 32)):
    """A tiny PASCAL3D+-layout folder (records written with the data reader's .mat writer): three
    PASCAL3D+ val images of 'car' with amodal masks, one of them an unreadable JPEG, and one
    Occluded-PASCAL3D+ L1 image. Returns {image_id: (azimuth, elevation, theta) radians}."""
    from ntdm_cli.data import write_record

    h, w = size
    rng = np.random.default_rng(5)
    ann, img, msk, sets = (root / d for d in ("Annotations/car_imagenet", "Images/car_imagenet", "Masks/car_imagenet",
                                              "Image_sets"))
    for d in (ann, img, msk, sets):
        d.mkdir(parents=True)
    amodal = np.zeros((h, w), bool)
    amodal[6:18, 8:26] = True
    views = {"n1": (30.0, 10.0, 0.0), "n2": (120.0, 20.0, 5.0), "n3": (-45.0, 5.0, -3.0)}
    for name, (a, e, t) in views.items():
        write_record(ann / f"{name}.mat", f"{name}.JPEG", w, h, [{
            "class": "car", "bbox": (9, 7, 26, 18), "cad_index": 1,
            "viewpoint": {"azimuth": a, "elevation": e, "theta": t, "distance": 5.0, "focal": 1.0,
                          "px": w / 2 + 0.5, "py": h / 2 + 0.5, "viewport": 3000.0}}])
        if name == "n3":
            (img / f"{name}.JPEG").write_bytes(b"not a jpeg")
        else:
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img / f"{name}.JPEG", format="JPEG")
        Image.fromarray(amodal.astype(np.uint8) * 255).save(msk / f"{name}.png")
    (sets / "car_imagenet_val.txt").write_text("n1\nn2\nn3\n")
    occ = root / "OccludedPASCAL3D"
    for d in ("lists", "images/carFGL1_BGL1", "annotations/carFGL1_BGL1"):
        (occ / d).mkdir(parents=True)
    (occ / "lists" / "carFGL1_BGL1.txt").write_text("n1\n")
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(occ / "images/carFGL1_BGL1/n1.JPEG",
                                                                           format="JPEG")
    occluder = np.zeros((h, w), bool)
    occluder[:, :14] = True
    np.savez(occ / "annotations/carFGL1_BGL1/n1.npz", occluder_mask=occluder, mask=amodal)
    ids = {f"car_imagenet/{n}": v for n, v in views.items()}
    ids["carFGL1_BGL1/n1"] = views["n1"]
    return {k: tuple(math.radians(x) for x in v) for k, v in ids.items()}, amodal, occluder


def test_cli_on_pascal3d_layout(tmp_path, monkeypatch, capsys):
    pytest.importorskip("ntdm_cli.data.pascal3d")
    data = tmp_path / "pascal3d"
    views, amodal, occluder = write_pascal3d_tree(data)
    offsets = {"car_imagenet/n2": (15, 0, 0), "carFGL1_BGL1/n1": (0, 0, 40)}
    ids = list(views)
    ang = np.array([np.add(views[i], np.radians(offsets.get(i, (0, 0, 0)))) for i in ids])
    masks = {}
    for i in ids:
        visible = amodal & ~occluder if "FGL" in i else amodal
        masks[i.replace("/", "|")] = {"amodal": amodal, "visible": visible, "occluded": amodal & ~visible}
    pred = write_artifact(tmp_path / "p.h5", "predictions", {
        "image_id": ids, "category": ["car"] * 4, "azimuth": ang[:, 0], "elevation": ang[:, 1], "theta": ang[:, 2],
        "distance": np.full(4, 5.0), "loss": np.zeros(4), "rotation": pose_rotation(*ang.T),
        "categories": ["car"], "category_losses": np.zeros((4, 1)), "occlusion_level": np.array([0, 0, 0, 1]),
        "nuisance": ["", "", "", ""], "masks": masks}, attrs={"data_root": str(data), "split": "val"})
    code, out, err = cli_in_process(monkeypatch, capsys, "eval", str(pred), "--out", str(tmp_path / "rep"))
    assert code == 0, err
    assert "1 annotated images could not be read (first: car_imagenet/n3)" in err
    run = json.loads((tmp_path / "rep" / "report.json").read_text())["runs"][0]
    assert run["n_scored"] == 4 and run["mismatch"]["annotated_not_predicted"]["count"] == 0
    L0, L1 = run["by_occlusion"]["L0"], run["by_occlusion"]["L1"]
    assert L0["n"] == 3 and L0["acc_pi_6"] == 1.0 and L0["acc_pi_18"] == pytest.approx(2 / 3)
    assert L0["median_error_deg"] == pytest.approx(0.0, abs=1e-4)
    assert L0["amodal_iou"] == pytest.approx(1.0) and L0["n_amodal"] == 2  # n3's pixels are unreadable
    assert L1["acc_pi_6"] == 0.0 and L1["median_error_deg"] == pytest.approx(40.0, abs=1e-4)
    assert L1["visible_iou"] == pytest.approx(1.0) and L1["n_visible"] == 1
    # overlays: the worst (L1 image) is drawn, the unreadable one is skipped
    assert run["worst"][0]["image_id"] == "carFGL1_BGL1/n1" and run["overlays"][0].endswith(".png")


def test_symmetric_cads_get_the_symmetry_aware_error_too(tmp_path):
    """A bottle whose CAD is a lathe: its azimuth error is reported plainly and, in extra columns,
    as 0 (symmetry-aware); a car's CAD (a box) is not symmetric; images naming no CAD are left plain."""
    from ntdm_cli.data.cads import box as box_mesh
    from ntdm_cli.data.cads import lathe, write_off

    for cat, (v, f) in (("bottle", lathe([(0.1, 0.0), (0.15, 0.3), (0.05, 0.6)], 20)),
                        ("car", box_mesh((0, 0, 0), (1.0, 0.5, 0.4)))):
        (tmp_path / "CAD" / cat).mkdir(parents=True)
        write_off(tmp_path / "CAD" / cat / "01.off", v, f)
    m = box(2, 8, 2, 10)
    gt = [GroundTruth("bottle/a", "bottle", D(30), D(10), 0.0, 0, "", m, m, cad_index=0),
          GroundTruth("bottle/b", "bottle", D(30), D(10), 0.0, 0, "", m, m),  # no CAD named
          GroundTruth("car/c", "car", D(30), D(10), 0.0, 0, "", m, m, cad_index=0)]
    pred = write_predictions(tmp_path / "p.h5", gt, offsets={k: (90, 0, 0) for k in ("bottle/a", "bottle/b", "car/c")},
                             drop_ids=(), categories=("bottle", "car"))
    runs, files = run_eval([pred], tmp_path, tmp_path / "report", ground_truth=FakeGroundTruth(gt))
    run = json.loads(files["json"].read_text())["runs"][0]
    assert run["all"]["acc_pi_6"] == 0.0 and run["all"]["n_symmetric"] == 1
    assert run["all"]["acc_pi_6_sym"] == pytest.approx(1 / 3)
    assert run["by_category"]["bottle"]["acc_pi_18_sym"] == pytest.approx(1 / 2)
    assert run["by_category"]["car"]["acc_pi_6_sym"] == 0.0
    md = files["markdown"].read_text()
    assert "sym.-aware" in md and "| p | 3 | 0.0 | 0.0 | 90.0 |" in md
    rows = files["csv"].read_text().splitlines()
    assert rows[0].endswith("symmetric_cad,pose_error_sym_deg")
    assert any(r.startswith("p,bottle/a,") and r.endswith(",1,0.0000") for r in rows)


def test_pose_given_the_true_class(tmp_path):
    """With the pose of every solved class stored, eval also scores the annotated class's pose: bus/c
    was called a car with a NaN pose, but its bus solution is right; car/b's car solution is 20° off."""
    gt = make_ground_truth()

    def per_class(ids, ang):
        views = np.full((len(ids), 2, 4), np.nan)
        for i, image_id in enumerate(ids):
            truth = next(r for r in gt if r.image_id == image_id)
            k = ["bus", "car"].index(truth.category)
            views[i, k, :3] = [truth.azimuth, truth.elevation, truth.theta]
            views[i, k, 3] = 5.0
            if image_id == "car/b":
                views[i, k, :3] = ang[i]  # the (20° off) prediction itself
        return {"category_viewpoints": views}

    pred = write_predictions(tmp_path / "p.h5", gt, offsets={"car/b": (20, 0, 0)}, nan_ids=("bus/c",),
                             wrong_class={"bus/c": "car"}, extra=per_class)
    runs, files = run_eval([pred], tmp_path, tmp_path / "report", ground_truth=FakeGroundTruth(gt))
    s = runs[0].summary["all"]
    assert s["n"] == 5 and s["n_true_class"] == 5
    assert s["acc_pi_6"] == pytest.approx(4 / 5)  # bus/c's NaN pose (the car's) scores π
    assert s["acc_pi_6_true_class"] == pytest.approx(5 / 5) and s["acc_pi_18_true_class"] == pytest.approx(4 / 5)
    md = files["markdown"].read_text()
    assert "π/6 acc, true class (%)" in md and "π/6 true class L0" in md and "*true class*" in md

    bad = write_predictions(tmp_path / "bad.h5", gt,
                            extra=lambda ids, ang: {"category_viewpoints": np.zeros((len(ids), 3, 4))})
    with pytest.raises(NtdmError, match="category_viewpoints"):
        run_eval([bad], tmp_path, tmp_path / "r2", ground_truth=FakeGroundTruth(gt))


def test_search_and_model_failures(tmp_path):
    """Wrong poses are split by the loss at the annotation: car/b (40° off) has an answer loss of 0.5
    and an annotation loss of 0.2, so the optimiser missed a better optimum (search failure); car/d
    (180° off: a flip) has an answer loss of 0.3 and an annotation loss of 0.6, so the model prefers
    the wrong pose (model failure). Right answers are in neither column."""
    gt = make_ground_truth()
    answer = {"car/a": 0.1, "car/b": 0.5, "bus/c": 0.2, "car/d": 0.3, "bus/e": 0.4}
    at_annotation = {"car/a": 0.15, "car/b": 0.2, "bus/c": 0.25, "car/d": 0.6, "bus/e": 0.45}

    def losses(ids, ang):
        return {"loss": np.array([answer[i] for i in ids]),
                "annotated_loss": np.array([at_annotation[i] for i in ids])}

    pred = write_predictions(tmp_path / "p.h5", gt, offsets={"car/b": (40, 0, 0), "car/d": (180, 0, 0)}, extra=losses)
    runs, files = run_eval([pred], tmp_path, tmp_path / "report", ground_truth=FakeGroundTruth(gt))
    s = runs[0].summary["all"]
    assert (s["n_wrong"], s["n_search_failures"], s["n_model_failures"], s["n_flips"]) == (2, 1, 1, 1)
    by = {r.image_id: r for r in runs[0].results}
    assert by["car/b"].search_failure is True and by["car/d"].search_failure is False
    md = files["markdown"].read_text()
    assert "search failures" in md and "model failures" in md and "*search / model failures*" in md
    # with the refined annotation loss (optimised from the annotation, as the answer was), that one
    # decides: car/d's annotation, its shape fitted, ends at 0.25 < 0.3, so the search missed it
    refined = {"car/a": 0.12, "car/b": 0.2, "bus/c": 0.2, "car/d": 0.25, "bus/e": 0.4}

    def with_refined(ids, ang):
        return {**losses(ids, ang), "annotated_refined_loss": np.array([refined[i] for i in ids])}

    pred = write_predictions(tmp_path / "pr.h5", gt, offsets={"car/b": (40, 0, 0), "car/d": (180, 0, 0)},
                             extra=with_refined)
    runs, _ = run_eval([pred], tmp_path, tmp_path / "report_r", ground_truth=FakeGroundTruth(gt))
    s = runs[0].summary["all"]
    assert (s["n_wrong"], s["n_search_failures"], s["n_model_failures"]) == (2, 2, 0)
    # without the losses the columns are left out
    plain = write_predictions(tmp_path / "plain.h5", gt, offsets={"car/b": (40, 0, 0)})
    runs, files = run_eval([plain], tmp_path, tmp_path / "r2", ground_truth=FakeGroundTruth(gt))
    assert runs[0].summary["all"]["n_search_failures"] == 0 and "search failures" not in files["markdown"].read_text()


def test_mcnemar_exact_p():
    from ntdm_cli.eval.paired import mcnemar_p
    assert mcnemar_p(0, 0) == 1.0
    assert mcnemar_p(3, 3) == 1.0
    assert mcnemar_p(5, 0) == pytest.approx(2 / 32)  # all five discordant images one way
    assert mcnemar_p(1, 9) == pytest.approx(2 * (1 + 10) / 1024)
    assert mcnemar_p(9, 1) == mcnemar_p(1, 9)
    with pytest.raises(ValueError):
        mcnemar_p(-1, 2)


def test_paired_comparison_of_runs(tmp_path):
    """The second run gets car/a wrong (60° in-plane) and car/b wrong only at π/18 (12°), and did not
    predict bus/e: on the 4 images both scored, π/6 splits 1 / 0 and π/18 2 / 0 against the first."""
    gt = make_ground_truth()
    full = write_predictions(tmp_path / "full.h5", gt)
    worse = write_predictions(tmp_path / "worse.h5", gt, offsets={"car/a": (0, 0, 60), "car/b": (0, 0, 12)},
                              drop_ids=("car/f", "bus/e"))
    runs, files = run_eval([full, worse], tmp_path, tmp_path / "rep", ground_truth=FakeGroundTruth(gt))
    doc = json.loads(files["json"].read_text())
    (p,) = doc["paired"]
    assert (p["label"], p["reference"], p["n_common"]) == ("worse", "full", 4)
    assert p["pi_6"] == {"both": 3, "only_reference": 1, "only_run": 0, "neither": 0, "p_mcnemar": 1.0}
    assert (p["pi_18"]["only_reference"], p["pi_18"]["only_run"], p["pi_18"]["both"]) == (2, 0, 2)
    assert p["pi_18"]["p_mcnemar"] == pytest.approx(0.5)
    assert p["class"]["both"] == 4 and p["class"]["only_reference"] == p["class"]["only_run"] == 0
    md = files["markdown"].read_text()
    assert "## Paired comparison with full" in md and "| worse | full | 4 | 1 | 0 | 1 | 2 | 0 | 0.5 |" in md
    # a single run has nothing to be paired with
    runs, files = run_eval([full], tmp_path, tmp_path / "rep1", ground_truth=FakeGroundTruth(gt))
    assert "paired" not in json.loads(files["json"].read_text())
    assert "Paired comparison" not in files["markdown"].read_text()
