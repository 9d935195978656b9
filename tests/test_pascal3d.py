"""PASCAL3D+ records, the dataset reader (PASCAL3D+, occluded, OOD-CV layouts) and preprocessing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.io
from PIL import Image

from ntdm_cli.data.pascal3d import PASCAL3D_CATEGORIES, Pascal3DDataset, Sample, read_record, write_record
from ntdm_cli.data.preprocess import (CropTransform, crop_size, preprocess, unpreprocess_mask, unpreprocess_points,
                                      unpreprocess_viewpoint)
from ntdm_cli.errors import NtdmError, NtdmUsageError


def _mstruct(**fields):
    """A 1×1 MATLAB struct as MATLAB writes it (every scalar a 1×1 double, strings as char arrays)."""
    arr = np.zeros((1, 1), dtype=[(k, object) for k in fields])
    for k, v in fields.items():
        arr[0, 0][k] = v
    return arr


def _d(x):
    return np.array([[float(x)]])


def _viewpoint(az, el, th, dist, px, py):
    return _mstruct(azimuth_coarse=_d(az), azimuth=_d(az), elevation_coarse=_d(el), elevation=_d(el),
                    distance=_d(dist), focal=_d(1), px=_d(px), py=_d(py), theta=_d(th), error=_d(0),
                    interval_azimuth=_d(0), interval_elevation=_d(0), num_anchor=_d(8), viewport=_d(3000))


def _object(cls, bbox, cad, viewpoint):
    anchors = _mstruct(left_front_wheel=_mstruct(location=np.array([[10.0, 20.0]]), status=_d(1)))
    return dict(**{"class": np.array([cls])}, view=np.array(["Frontal"]), truncated=_d(0), occluded=_d(0),
                difficult=_d(0), bbox=np.array([bbox], dtype=float),
                bndbox=_mstruct(xmin=np.array(["1"]), ymin=np.array(["1"]), xmax=np.array(["9"]), ymax=np.array(["9"])),
                anchors=anchors, cad_index=_d(cad), viewpoint=viewpoint,
                polygon=np.zeros((0, 0)), mask=np.zeros((0, 0)), hasparts=_d(0), part=np.zeros((0, 0)),
                subtype=np.array(["sedan"]))


def _handwritten_mat(path, objects, width=500, height=375):
    """A record laid out exactly like PASCAL3D+ release 1.1 (fields in the real order)."""
    keys = list(objects[0])
    objs = np.zeros((1, len(objects)), dtype=[(k, object) for k in keys])
    for i, o in enumerate(objects):
        for k in keys:
            objs[0, i][k] = o[k]
    record = _mstruct(filename=np.array([path.stem + ".JPEG"]), folder=np.array(["car_imagenet"]),
                      source=_mstruct(database=np.array(["ImageNet"])), imgname=np.array([path.stem + ".JPEG"]),
                      size=_mstruct(width=_d(width), height=_d(height), depth=_d(3)), segmented=_d(0),
                      imgsize=np.array([[float(width), float(height), 3.0]]), database=np.array(["ImageNet"]),
                      objects=objs)
    scipy.io.savemat(path, {"record": record})


def test_handwritten_record_parses(tmp_path):
    p = tmp_path / "n02814533_1.mat"
    _handwritten_mat(p, [
        _object("car", [11, 21, 110, 80], 3, _viewpoint(30.0, 10.0, -5.0, 6.5, 250.5, 180.5)),
        _object("car", [1, 1, 5, 5], 1, np.zeros((0, 0))),  # not annotated: empty viewpoint
        _object("bus", [1, 1, 5, 5], 2, _viewpoint(0, 0, 0, 0.0, 1, 1)),  # distance 0
    ])
    # the raw layout as scipy returns it (NeMo's indexing)
    rec = scipy.io.loadmat(p)["record"]
    assert rec["objects"][0, 0]["viewpoint"][0, 0]["px"][0, 0][0, 0] == 250.5
    assert rec["imgsize"][0, 0][0][0] == 500
    r = read_record(p)
    assert (r.width, r.height, r.filename) == (500, 375, "n02814533_1.JPEG")
    o = r.objects[0]
    assert o.category == "car" and o.problem == "" and o.cad_index == 2
    assert o.bbox == (10.0, 20.0, 110.0, 80.0)
    assert o.viewpoint["azimuth"] == pytest.approx(math.radians(30))
    assert o.viewpoint["theta"] == pytest.approx(math.radians(-5))
    assert o.viewpoint["px"] == pytest.approx(250.0) and o.viewpoint["py"] == pytest.approx(180.0)
    assert o.viewpoint["distance"] == 6.5 and o.viewpoint["viewport"] == 3000
    assert r.objects[1].problem == "empty viewpoint"
    assert r.objects[2].problem == "distance <= 0"


def test_write_record_round_trip(tmp_path):
    p = tmp_path / "x.mat"
    vp = dict(azimuth=123.0, elevation=12.5, theta=-3.0, distance=17.0, focal=1.0, px=100.5, py=90.25, viewport=3000.0)
    write_record(p, "x.JPEG", 256, 200, [{"class": "sofa", "bbox": [3, 4, 200, 150], "cad_index": 2, "viewpoint": vp,
                                          "instance_scale": [1.0, 0.9, 1.1]}])
    rec = scipy.io.loadmat(p)["record"]
    assert rec["objects"][0, 0]["class"][0, 0][0] == "sofa"
    assert rec["objects"][0, 0]["viewpoint"][0, 0]["azimuth"][0, 0][0, 0] == 123.0
    r = read_record(p)
    o = r.objects[0]
    assert (r.width, r.height) == (256, 200) and o.cad_index == 1 and o.problem == ""
    assert o.viewpoint["elevation"] == pytest.approx(math.radians(12.5))
    assert o.viewpoint["px"] == pytest.approx(100.0)
    assert o.instance_scale == pytest.approx((1.0, 0.9, 1.1))


def test_corrupt_and_missing_mat(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"MATLAB 5.0 MAT-file, truncated" + bytes(20))
    with pytest.raises(NtdmError, match="bad.mat"):
        read_record(bad)
    with pytest.raises(NtdmError, match="not found"):
        read_record(tmp_path / "none.mat")
    nostruct = tmp_path / "nostruct.mat"
    scipy.io.savemat(nostruct, {"other": np.ones(3)})
    with pytest.raises(NtdmError, match="record"):
        read_record(nostruct)


def _make_root(tmp_path):
    """A small PASCAL3D+ tree with good and broken entries."""
    root = tmp_path / "P3D"
    (root / "Annotations" / "car_imagenet").mkdir(parents=True)
    (root / "Images" / "car_imagenet").mkdir(parents=True)
    (root / "Image_sets").mkdir()
    names = []
    for i in range(3):
        n = f"n0_{i}"
        names.append(n)
        _handwritten_mat(root / "Annotations" / "car_imagenet" / f"{n}.mat",
                         [_object("car", [11, 21, 110, 80], 1 + i, _viewpoint(30.0 * i, 10.0, 0.0, 6.5, 50.5, 40.5))],
                         width=120, height=90)
        Image.fromarray(np.full((90, 120), 100, np.uint8)).save(root / "Images" / "car_imagenet" / f"{n}.JPEG")
    _handwritten_mat(root / "Annotations" / "car_imagenet" / "noview.mat",
                     [_object("car", [1, 1, 5, 5], 1, np.zeros((0, 0)))])
    Image.new("RGB", (10, 10)).save(root / "Images" / "car_imagenet" / "noview.JPEG")
    (root / "Annotations" / "car_imagenet" / "corrupt.mat").write_bytes(b"garbage")
    _handwritten_mat(root / "Annotations" / "car_imagenet" / "noimage.mat",
                     [_object("car", [1, 1, 5, 5], 1, _viewpoint(0, 0, 0, 5, 1, 1))])
    (root / "Image_sets" / "car_imagenet_val.txt").write_text("\n".join(names + ["noview", "corrupt", "noimage", "missing"]) + "\n")
    return root


def test_dataset_skips_bad_entries(tmp_path):
    root = _make_root(tmp_path)
    ds = Pascal3DDataset(root, ["car"], "val", warn=False)
    assert len(ds) == 3
    assert ds.skipped == {"empty viewpoint": 1, "unreadable .mat": 1, "missing image": 1, "missing annotation": 1}
    s = ds[1]
    assert isinstance(s, Sample) and s.image.shape == (90, 120, 3) and s.image.dtype == np.uint8  # grey -> RGB
    assert s.cad_index == 1 and s.image_id == "car_imagenet/n0_1" and s.amodal_mask is None
    assert s.viewpoint["azimuth"] == pytest.approx(math.radians(30))
    assert ds.crop_size("car") == (256, 672) and ds.target_distance == 5.0
    with pytest.raises(NtdmError, match="image-set list"):
        Pascal3DDataset(root, ["bus"], "val", warn=False)
    with pytest.raises(NtdmUsageError):
        Pascal3DDataset(root, ["car"], "train", occlusion=2, warn=False)
    with pytest.raises(NtdmError, match="not found"):
        Pascal3DDataset(tmp_path / "nope", ["car"], "val")


def _sample(h=120, w=160, seed=0):
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[30:90, 40:130] = True
    vp = dict(azimuth=1.0, elevation=0.2, theta=0.05, distance=7.3, focal=1.0, px=83.3, py=61.7, viewport=3000.0)
    return Sample(image=img, category="car", image_id="car/x", viewpoint=vp, cad_index=0, bbox=(40.0, 30.0, 130.0, 90.0),
                  amodal_mask=mask, occluder_mask=None)


def test_preprocess_round_trip():
    s = _sample()
    p, t = preprocess(s, (96, 128), target_distance=5.0)
    assert p.image.shape == (96, 128, 3) and p.amodal_mask.shape == (96, 128)
    assert p.viewpoint["distance"] == 5.0 and p.viewpoint["px"] == 64.0 and p.viewpoint["py"] == 48.0
    assert t.scale == pytest.approx(7.3 / 5.0)
    # points: exact round trip; the principal point lands on the crop centre
    pts = np.random.default_rng(1).uniform(0, 100, (50, 2))
    assert np.abs(unpreprocess_points(t.to_crop(pts), t) - pts).max() < 1e-9
    assert np.allclose(t.to_crop(np.array([83.3, 61.7])), [64.0, 48.0])
    # a marked pixel moves where the map says, within a pixel
    img = np.zeros((120, 160, 3), np.uint8)
    img[70, 100] = 255
    q, _ = preprocess(Sample(**{**s.__dict__, "image": img}), (96, 128))
    ys, xs = np.nonzero(q.image[..., 0] > 60)
    expect = t.to_crop(np.array([100.5, 70.5]))
    assert abs(xs.mean() + 0.5 - expect[0]) < 1.0 and abs(ys.mean() + 0.5 - expect[1]) < 1.0
    # mask back to the original: identical away from the crop border
    back = unpreprocess_mask(p.amodal_mask, t)
    assert back.shape == s.amodal_mask.shape
    inside = np.zeros_like(back)
    inside[45:75, 55:115] = True  # well inside the crop window
    assert (back[inside] == s.amodal_mask[inside]).all()
    assert (back ^ s.amodal_mask).sum() <= 2 * (60 + 90) + 8  # only edge pixels / outside the window
    # viewpoint back
    v = unpreprocess_viewpoint(p.viewpoint, t)
    for k in ("distance", "px", "py", "azimuth", "theta"):
        assert v[k] == pytest.approx(s.viewpoint[k])
    # bbox maps forward consistently
    b = t.to_crop(np.array([[40.0, 30.0], [130.0, 90.0]]))
    assert p.bbox == pytest.approx((b[0, 0], b[0, 1], b[1, 0], b[1, 1]))


def test_crop_sizes_are_multiples_of_32():
    for cat in PASCAL3D_CATEGORIES:
        h, w = crop_size(cat)
        assert h % 32 == 0 and w % 32 == 0
    assert crop_size("car") == (256, 672)
    with pytest.raises(NtdmError):
        s = _sample()
        preprocess(Sample(**{**s.__dict__, "viewpoint": {**s.viewpoint, "distance": 0.0}}))
    assert isinstance(CropTransform(1, 0, 0, 1, 1, 1, 1), CropTransform)
