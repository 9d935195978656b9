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
