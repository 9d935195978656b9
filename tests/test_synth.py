"""``ntdm synth``: a tiny run read back through the PASCAL3D+ / occluded / OOD-CV readers."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from ntdm_cli.artifacts import read_artifact
from ntdm_cli.data import cads
from ntdm_cli.data.pascal3d import NUISANCES, Pascal3DDataset, read_record
from ntdm_cli.data.preprocess import preprocess, unpreprocess_mask
from ntdm_cli.data.synth import OCCLUSION_BANDS, SynthConfig, parse_levels, parse_nuisances, synthesize
from ntdm_cli.errors import NtdmUsageError

CATS = ["car", "chair"]
CFG = SynthConfig(categories=CATS, per_category=5, size=96, val_fraction=0.4, occlusion=[1, 2, 3],
                  ood=list(NUISANCES), ood_per_category=1, seed=3, workers=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "bench"
    os.environ["NTDM_NO_PROGRESS"] = "1"
    synthesize(out, CFG)
    return out


def _load_off(path):
    lines = [ln for ln in path.read_text().split("\n") if ln.strip()]
    nv, nf, _ = map(int, lines[1].split())
    v = np.array([[float(x) for x in ln.split()] for ln in lines[2:2 + nv]])
    f = np.array([[int(x) for x in ln.split()[1:4]] for ln in lines[2 + nv:2 + nv + nf]])
    return v, f


def _silhouette(verts, faces, viewpoint, hw):
    from ntdm_cli.render import rasterize
    from ntdm_cli.render.camera import Viewpoint, project

    vp = Viewpoint.from_dict(viewpoint, dtype=torch.float64)
    screen = project(torch.as_tensor(verts, dtype=torch.float64)[None], vp).float()
    frags = rasterize(screen, torch.as_tensor(faces, dtype=torch.int64), image_size=hw)
    return frags.pix_to_face[0, :, :, 0].numpy() >= 0


def test_layout_and_index(root):
    for cat in CATS:
        offs = sorted((root / "CAD" / cat).glob("*.off"))
        assert [p.name for p in offs] == [f"{i + 1:02d}.off" for i in cads.train_subtypes(cat)]
        assert (root / "OOD_CV" / "CAD_heldout" / cat).is_dir()
        assert len((root / "Image_sets" / f"{cat}_imagenet_train.txt").read_text().split()) == 3
        assert len((root / "Image_sets" / f"{cat}_imagenet_val.txt").read_text().split()) == 2
    idx = read_artifact(root / "dataset_index.h5", "dataset-index")
    assert int(idx["counts/train"]) == 6 and int(idx["counts/val"]) == 4 and int(idx["counts/L2"]) == 4
    assert int(idx["counts/ood_weather"]) == 2 and len(idx["image_id"]) == 10 + 10
    assert "synth" in idx.config or idx.attrs["size"] == 96


def test_annotation_projects_cad_onto_mask(root):
    ds = Pascal3DDataset(root, CATS, "train", warn=False)
    val = Pascal3DDataset(root, CATS, "val", warn=False)
    assert len(ds) == 6 and len(val) == 4 and not ds.skipped
    for s in list(ds) + list(val):
        assert s.image.shape == (96, 96, 3) and s.amodal_mask is not None and s.amodal_mask.any()
        v, f = _load_off(root / "CAD" / s.category / f"{s.cad_index + 1:02d}.off")
        sil = _silhouette(v * np.array(s.instance_scale), f, s.viewpoint, (96, 96))
        iou = (sil & s.amodal_mask).sum() / (sil | s.amodal_mask).sum()
        assert iou >= 0.98, (s.image_id, iou)
        rows, cols = np.nonzero(s.amodal_mask)
        assert s.bbox == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
        assert -np.pi / 18 <= s.viewpoint["elevation"] <= np.pi / 6 + 1e-6
        assert s.viewpoint["viewport"] == 3000 and s.viewpoint["distance"] > 0


def test_occlusion_levels(root):
    for lv, (lo, hi) in OCCLUSION_BANDS.items():
        ds = Pascal3DDataset(root, CATS, "val", occlusion=lv, warn=False)
        assert len(ds) == 4
        for s in ds:
            assert s.occlusion_level == lv and s.image_id.startswith(f"{s.category}FGL{lv}_BGL{lv}/")
            ratio = (s.amodal_mask & s.occluder_mask).sum() / s.amodal_mask.sum()
            assert lo <= ratio <= hi, (s.image_id, ratio)
            vis = s.visible_mask
            assert vis.sum() == s.amodal_mask.sum() - (s.amodal_mask & s.occluder_mask).sum()


def test_ood_splits(root):
    for nz in NUISANCES:
        ds = Pascal3DDataset(root, CATS, nuisance=nz, warn=False)
        assert len(ds) == 2 and all(s.nuisance == nz for s in ds)
    for s in Pascal3DDataset(root, CATS, nuisance="pose", warn=False):
        el, th = np.degrees(s.viewpoint["elevation"]), abs(np.degrees(s.viewpoint["theta"]))
        assert el > 35 or th > 14
    for s in Pascal3DDataset(root, CATS, nuisance="shape", warn=False):
        assert s.cad_index in cads.train_subtypes(s.category) and s.instance_scale is None
    names = (root / "OOD_CV" / "lists" / "car_shape.txt").read_text().split()
    assert names == ["car_shape_00000"]


def test_preprocess_synth_sample(root):
    ds = Pascal3DDataset(root, ["car"], "val", warn=False)
    s = ds[0]
    p, t = preprocess(s, ds.crop_size("car"), ds.target_distance)
    assert p.image.shape[:2] == ds.crop_size("car") and p.viewpoint["distance"] == ds.target_distance
    assert p.amodal_mask.sum() > 0.5 * s.amodal_mask.sum() * t.scale ** 2  # the object stays inside the crop
    back = unpreprocess_mask(p.amodal_mask, t)
    assert (back & s.amodal_mask).sum() / (back | s.amodal_mask).sum() > 0.9


def test_deterministic_and_resumable(tmp_path):
    """The same files for a seed whatever the worker count (the recipe runs one worker per core);
    a resumed run writes only the missing images; another seed into the same folder is refused."""
    cfg = dataclasses.replace(CFG, categories=["bottle"], per_category=2, occlusion=[2], ood=["texture"], ood_per_category=1)
    a, b = tmp_path / "a", tmp_path / "b"
    synthesize(a, cfg)
    synthesize(b, dataclasses.replace(cfg, workers=2))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.suffix in (".JPEG", ".png", ".npz"))
    assert len(files) == 2 * 2 + 1 * 2 + 2  # images + masks (iid + ood) + occluded image + npz
    for rel in files:
        if rel.suffix == ".npz":  # zip members carry a timestamp: compare the arrays
            with np.load(a / rel) as za, np.load(b / rel) as zb:
                assert za.files == zb.files and all(np.array_equal(za[k], zb[k]) for k in za.files)
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    ra, rb = read_record(a / "Annotations/bottle_imagenet/bottle_00000.mat"), read_record(b / "Annotations/bottle_imagenet/bottle_00000.mat")
    assert ra == rb
    mtime = (a / "Images/bottle_imagenet/bottle_00001.JPEG").stat().st_mtime_ns
    (a / "Images/bottle_imagenet/bottle_00000.JPEG").unlink()
    summary = synthesize(a, cfg)
    assert summary.skipped == 2 and summary.images == 1
    assert (a / "Images/bottle_imagenet/bottle_00001.JPEG").stat().st_mtime_ns == mtime
    assert (a / "Images/bottle_imagenet/bottle_00000.JPEG").read_bytes() == (b / "Images/bottle_imagenet/bottle_00000.JPEG").read_bytes()
    with pytest.raises(NtdmUsageError, match="different seed"):
        synthesize(a, dataclasses.replace(cfg, seed=9))


def test_option_parsing():
    assert parse_levels("L1,L3") == [1, 3] and parse_levels("none") == []
    assert parse_nuisances("all") == list(NUISANCES) and parse_nuisances("weather,pose") == ["pose", "weather"]
    with pytest.raises(NtdmUsageError):
        parse_levels("L4")
    with pytest.raises(NtdmUsageError):
        parse_nuisances("fog")
    with pytest.raises(NtdmUsageError):
        dataclasses.replace(CFG, categories=["cat"]).validate()


def test_cli(tmp_path):
    env = {**os.environ, "NTDM_NO_PROGRESS": "1"}
    r = subprocess.run([sys.executable, "-m", "ntdm_cli", "synth", str(tmp_path / "o"), "--categories", "tvmonitor",
                        "--per-category", "1", "--size", "64", "--occlusion", "none", "--ood", "none"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "o" / "Images" / "tvmonitor_imagenet" / "tvmonitor_00000.JPEG").is_file()
    assert "1 images written" in r.stdout
    r = subprocess.run([sys.executable, "-m", "ntdm_cli", "synth", str(tmp_path / "p"), "--occlusion", "L5"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "L5" in r.stderr and "Traceback" not in r.stderr


def test_twelve_categories_as_pascal3d():
    """The procedural catalogue has PASCAL3D+'s twelve categories, 6-7 subtypes each (the last held out),
    every part closed and outward oriented, models centred and sized like the others (largest dimension 0.5-1.35)."""
    from ntdm_cli.data.pascal3d import PASCAL3D_CATEGORIES

    assert sorted(cads.CATEGORIES) == sorted(PASCAL3D_CATEGORIES)
    assert cads.CATEGORIES[:8] == ("car", "bus", "aeroplane", "sofa", "chair", "bottle", "tvmonitor", "boat")
    for cat in cads.CATEGORIES:
        n = cads.num_subtypes(cat)
        assert 6 <= n <= 7 and cads.heldout_subtypes(cat) == [n - 1], cat
        for i in range(n):
            m = cads.build_cad(cat, i)
            v, f, _ = m.mesh()
            assert np.isfinite(v).all() and m.held_out == (i == n - 1)
            assert np.allclose(v.max(0) + v.min(0), 0, atol=1e-9), (cat, m.name)
            assert 0.5 <= m.extent.max() <= 1.35, (cat, m.name, m.extent)
            for pv, pf, _ in m.parts:
                vol = np.einsum("ij,ij->i", pv[pf[:, 0]], np.cross(pv[pf[:, 1]], pv[pf[:, 2]])).sum() / 6
                assert vol > 0, (cat, m.name)
                edges = np.sort(np.concatenate([pf[:, [0, 1]], pf[:, [1, 2]], pf[:, [2, 0]]]), 1)
                assert (np.unique(edges, axis=0, return_counts=True)[1] == 2).all(), (cat, m.name)  # closed


def test_new_categories_synthesize_all_splits(tmp_path):
    """bicycle, diningtable, motorbike and train in the same layout, with occlusion and OOD splits."""
    new = ["bicycle", "diningtable", "motorbike", "train"]
    cfg = dataclasses.replace(CFG, categories=new, per_category=2, size=64, val_fraction=0.5)
    synthesize(tmp_path / "b", cfg)
    root = tmp_path / "b"
    for cat in new:
        assert len(list((root / "CAD" / cat).glob("*.off"))) == len(cads.train_subtypes(cat))
        assert len(list((root / "OOD_CV" / "CAD_heldout" / cat).glob("*.off"))) == 1
    assert len(Pascal3DDataset(root, new, "train", warn=False)) == 4
    for lv in OCCLUSION_BANDS:
        assert len(Pascal3DDataset(root, new, "val", occlusion=lv, warn=False)) == 4
    for nz in NUISANCES:
        ds = Pascal3DDataset(root, new, nuisance=nz, warn=False)
        assert len(ds) == 4 and all(s.amodal_mask.any() for s in ds)
