"""Holes in the deformed sphere: per-face gaps to the CADs, the faces kept for a latent, their storage
with the deformer, and their use in silhouettes and exported meshes."""

import numpy as np
import pytest
import torch

from ntdm_cli.artifacts import write_artifact
from ntdm_cli.cli.main import main as ntdm_main
from ntdm_cli.errors import ArtifactError
from ntdm_cli.geometry import (Deformer, Mesh, deformer_from_artifact_data, deformer_to_artifact_data, load_deformer,
                               load_mesh, make_template)
from ntdm_cli.geometry.holes import face_gaps, hole_area_share, mixed_gaps, solid_faces, without_holes
from ntdm_cli.render import Viewpoint, project, rasterize


def _sphere_and_cap():
    """An untrained deformer (its shape is the unit sphere) and a CAD made of the sphere's faces above
    z = -0.3 (an open cap): the faces below span space the CAD does not fill."""
    t = make_template(2)
    d = Deformer(t, 1, hidden=8, layers=1, pe_frequencies=0, cad_names=["cap"])
    v = t.verts.numpy().astype(np.float64)
    f = t.faces.numpy()
    top = v[f].mean(1)[:, 2] > -0.3
    return d, Mesh(v, f[top], "cap"), top


def test_face_gaps_are_zero_on_the_cad_and_large_off_it():
    d, cap, top = _sphere_and_cap()
    g = face_gaps(d, [cap])
    assert g.shape == (1, len(top)) and g.dtype == np.float32
    assert g[0, top].max() < 1e-5                               # these faces are the CAD's own
    bottom = d.template_verts[d.faces].mean(1)[:, 2].numpy() < -0.8
    diag = cap.bbox_diagonal
    assert g[0, bottom].min() > 0.3 / diag                      # at least 0.3 units below the cap's rim
    with pytest.raises(ValueError, match="2 CADs for a deformer with 1 latents"):
        face_gaps(d, [cap, cap])


def test_solid_faces_mix_the_cads_gaps():
    gaps = torch.tensor([[0.0, 0.0, 0.02, 0.04], [0.0, 0.04, 0.0, 0.04]])
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [2.0, 2.0], [-1.0, 1.0]])
    keep = solid_faces(gaps, z, 0.015)
    assert keep.tolist() == [[True, True, False, False],
                             [True, False, True, False],
                             [True, False, True, False],           # mixed gaps 0, 0.02, 0.01, 0.04
                             [True, False, True, False],           # the latent is normalised onto the simplex
                             [True, False, True, False]]           # after clamping at 0: CAD 1 alone
    torch.testing.assert_close(mixed_gaps(gaps, z[2:3]), torch.tensor([[0.0, 0.02, 0.01, 0.04]]))
    assert solid_faces(gaps, z, 0.0) is None                     # 0: every face
    assert solid_faces(None, z, 0.015) is None                   # a deformer without gaps


def test_mixed_half_half_keeps_a_face_only_one_cad_leaves_out_when_below_threshold():
    gaps = torch.tensor([[0.0, 0.02], [0.0, 0.0]])
    keep = solid_faces(gaps, torch.tensor([[0.5, 0.5]]), 0.0125)
    assert keep.tolist() == [[True, True]]                      # mixed gap 0.01 ≤ 0.0125


def test_face_gaps_round_trip_and_old_artifacts(tmp_path):
    d, cap, top = _sphere_and_cap()
    assert deformer_from_artifact_data(deformer_to_artifact_data(d)).face_gaps is None  # written before gaps
    d.face_gaps = torch.from_numpy(face_gaps(d, [cap]))
    p = write_artifact(tmp_path / "d.h5", "deformer", deformer_to_artifact_data(d))
    d2 = load_deformer(p)
    torch.testing.assert_close(d2.face_gaps, d.face_gaps)
    share = hole_area_share(d2, 0.0125)
    assert share.shape == (1,) and 0.2 < share[0] < 0.5       # the faces below the cap, by area
    bad = deformer_to_artifact_data(d)
    bad["face_gaps"] = np.zeros((2, 3), np.float32)
    with pytest.raises(ArtifactError, match="face_gaps must be"):
        deformer_from_artifact_data(bad, where="model.h5:deformers/car")
    bad["face_gaps"] = -np.ones_like(deformer_to_artifact_data(d)["face_gaps"])
    with pytest.raises(ArtifactError, match="face_gaps must be"):
        deformer_from_artifact_data(bad)


def test_without_holes_silhouette_leaves_the_gap_out():
    """Seen from the side, the sphere's silhouette is a disc; without the faces under the cap its
    lower part (z < -0.3, the rows below the centre) is gone."""
    d, cap, top = _sphere_and_cap()
    keep = solid_faces(torch.from_numpy(face_gaps(d, [cap])), torch.ones(1, 1), 0.0125)[0]
    assert keep.tolist() == top.tolist()
    holed = without_holes(d.template, keep)
    assert holed.faces.shape[0] == int(top.sum()) and holed.faces_uvs.shape == holed.faces.shape
    whole_template = d.template
    assert without_holes(whole_template, None) is whole_template
    vp = Viewpoint.create(azimuth=0.3, elevation=0.0, distance=5.0, px=32.0, py=32.0, viewport=64.0)
    with torch.no_grad():
        screen = project(d(torch.ones(1, 1)), vp)
    whole = rasterize(screen, d.faces, image_size=(64, 64)).pix_to_face[0, ..., 0] >= 0
    cut = rasterize(screen, holed.faces, image_size=(64, 64)).pix_to_face[0, ..., 0] >= 0
    # 12.8 pixels per unit: row 43 is z ≈ -0.86, row 28 is z ≈ 0.3
    assert bool((cut <= whole).all()) and whole[43, 32] and not cut[43, 32] and cut[28, 32]
    assert cut.sum() < 0.8 * whole.sum()


def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        ntdm_main(list(args))
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def test_export_obj_leaves_holes_out(tmp_path, capsys):
    d, cap, top = _sphere_and_cap()
    d.face_gaps = torch.from_numpy(face_gaps(d, [cap]))
    p = write_artifact(tmp_path / "d.h5", "deformer", deformer_to_artifact_data(d))
    code, _, err = _cli(capsys, "export-obj", str(p), "--latent", "0", "--uv", "-o", str(tmp_path / "holes.obj"))
    assert code == 0, err
    assert len(load_mesh(tmp_path / "holes.obj").faces) == int(top.sum())
    code, _, err = _cli(capsys, "export-obj", str(p), "--latent", "0", "--hole-gap", "0", "-o", str(tmp_path / "all.obj"))
    assert code == 0, err
    assert len(load_mesh(tmp_path / "all.obj").faces) == len(top)
    code, _, err = _cli(capsys, "export-obj", str(p), "--latent", "0", "--hole-gap", "-1", "-o", str(tmp_path / "x.obj"))
    assert code == 2 and "--hole-gap" in err and not (tmp_path / "x.obj").exists()


# ------------------------------------------------------- rendering without the holes (train.hole_gap)

def test_rasterize_surface_without_holes_sees_through_them():
    """All faces solid: the same fragments as the shared-face path. The faces under the cap holed:
    from below, the centre pixel sees the inside of the cap (farther) instead of the bottom pole."""
    from ntdm_cli.model.surface import rasterize_surface

    d, cap, top = _sphere_and_cap()
    t = d.template
    verts = d(torch.ones(2, 1)).detach().requires_grad_(True)
    vp = Viewpoint.create(azimuth=[0.3, 0.3], elevation=[-np.pi / 2 + 0.05, 0.0], distance=[5.0, 5.0],
                          px=[16.0, 16.0], py=[16.0, 16.0], viewport=[32.0, 32.0])
    args = (t.faces, t.verts_uvs, t.faces_uvs, vp, (32, 32), 1.0, 3)
    closed = rasterize_surface(verts, *args)
    same = rasterize_surface(verts, *args, solid=torch.ones(2, len(top), dtype=torch.bool))
    assert torch.equal(same.mask, closed.mask) and torch.equal(same.idx, closed.idx)
    torch.testing.assert_close(same.uv_covered, closed.uv_covered)
    torch.testing.assert_close(same.alpha_covered, closed.alpha_covered)
    holed = rasterize_surface(verts, *args, solid=torch.from_numpy(top).expand(2, -1))
    z_closed = closed.fragments.zbuf[0, 16, 16, 0]
    z_holed = holed.fragments.zbuf[0, 16, 16, 0]
    assert holed.mask[0, 16, 16] and z_holed > z_closed + 1.0     # the cap's inside, about 2 units farther
    assert holed.mask[1].sum() < closed.mask[1].sum()            # from the side: the bottom is gone
    holed.uv_covered.sum().backward()                             # differentiable in the vertices
    assert verts.grad is not None and verts.grad.abs().sum() > 0


def test_trainer_renders_each_cad_without_its_holes(tiny_pipeline):
    """train.hole_gap: the ground-truth meshes are rasterised without their holes (a silhouette inside
    the closed one; a tiny threshold leaves most faces out), the model records the threshold, and a
    deformer without face gaps is refused."""
    from ntdm_cli.errors import NtdmUsageError
    from ntdm_cli.train.data import TrainingSet, collate
    from ntdm_cli.train.loop import load_deformers
    from ntdm_cli.train.settings import TrainConfig
    from ntdm_cli.train.trainer import Trainer

    cats = sorted(p.stem for p in tiny_pipeline.deformers.glob("*.h5"))
    deformers = load_deformers(sorted(tiny_pipeline.deformers.glob("*.h5")), "cpu")
    assert all(d.face_gaps is not None for d in deformers.values())
    dataset = TrainingSet(tiny_pipeline.data, cats, "train")
    batch = collate([dataset[i] for i in range(4)])
    h, w = (x // 8 for x in dataset.crop_hw)
    masks = {}
    for gap in (0.0, 0.0125, 1e-4):
        cfg = TrainConfig(backbone="small", feature_dim=8, texture_size=32, observe_upsample=2, hole_gap=gap)
        trainer, _ = Trainer.build(cfg, cats, deformers, "cpu")
        assert bool(trainer.solid) == (gap > 0)
        masks[gap] = trainer.fine_surface(batch, (h, w)).mask
    assert bool((masks[0.0125] <= masks[0.0]).all()) and bool((masks[1e-4] <= masks[0.0]).all())
    assert masks[1e-4].sum() < 0.5 * masks[0.0].sum()
    deformers[cats[0]].face_gaps = None
    with pytest.raises(NtdmUsageError, match="has no face gaps"):
        Trainer.build(TrainConfig(backbone="small", feature_dim=8, texture_size=32, hole_gap=0.0125), cats,
                      deformers, "cpu")
    with pytest.raises(NtdmUsageError, match="train.hole_gap"):
        TrainConfig(hole_gap=-1.0).validate()
