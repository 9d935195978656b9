"""Point-to-face distance, mesh regularisers, the Deformer, a tiny fit, the CLI and the OBJ export."""

import dataclasses

import numpy as np
import pytest
import torch

from ntdm_cli.artifacts import write_artifact
from ntdm_cli.cli.main import main as ntdm_main
from ntdm_cli.errors import ArtifactError
from ntdm_cli.geometry import (Deformer, deformer_from_artifact_data, deformer_to_artifact_data, load_deformer,
                               load_mesh, make_template)
from ntdm_cli.geometry.distance import (FaceSearch, closest_point_on_triangle, point_face_distance,
                                        point_triangle_distance)
from ntdm_cli.conventions import DEFAULT_HOLE_GAP
from ntdm_cli.geometry.fit import DeformerConfig, evaluate_deformer, fit_deformer
from ntdm_cli.geometry.holes import solid_faces
from ntdm_cli.geometry.losses import edge_face_pairs, laplacian_smoothing, normal_consistency, uniform_laplacian
from tests.cad_fixtures import make_cads, write_cads

TINY = DeformerConfig(subdivisions=2, hidden=32, layers=2, pe_frequencies=2, steps=40, lr=5e-3, mesh_samples=200,
                      cad_samples=400, pool_samples=2000, exterior_rays=24, eval_samples=1500, cross_samples=500,
                      threads=1)


# ------------------------------------------------------------------------------------ distances

def _reference_distance(p: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Brute force, a different algorithm: projection onto each triangle's plane when it falls inside
    (barycentric test), else the nearest of the three edge segments; min over all triangles."""
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    out = np.empty(len(p))
    for i, q in enumerate(p):
        h = np.einsum("fj,fj->f", q - a, n)
        proj = q - h[:, None] * n
        v0, v1, v2 = b - a, c - a, proj - a
        d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
        d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
        den = d00 * d11 - d01 * d01
        bv, bw = (d11 * d20 - d01 * d21) / den, (d00 * d21 - d01 * d20) / den
        inside = (bv >= 0) & (bw >= 0) & (bv + bw <= 1)
        best = np.where(inside, np.abs(h), np.inf)
        for s, e in ((a, b), (b, c), (c, a)):
            t = np.clip(np.einsum("fj,fj->f", q - s, e - s) / np.einsum("fj,fj->f", e - s, e - s), 0, 1)
            best = np.minimum(best, np.linalg.norm(q - (s + t[:, None] * (e - s)), axis=1))
        out[i] = best.min()
    return out


def _test_points(verts, faces, rng):
    """Points on faces, inside, outside, near edges and near vertices of a mesh."""
    t = verts[faces]
    f = rng.integers(len(faces), size=40)
    w = rng.dirichlet([1, 1, 1], size=40)
    on = (t[f] * w[..., None]).sum(1)
    inside = 0.6 * on
    outside = 1.4 * on + 0.05 * rng.normal(size=on.shape)
    e = rng.integers(len(faces), size=40)
    k = rng.random(40)[:, None]
    edge = t[e, 0] * k + t[e, 1] * (1 - k) + 1e-3 * rng.normal(size=(40, 3))
    vert = verts[rng.integers(len(verts), size=40)] * (1 + 1e-3 * rng.normal(size=(40, 1))) + 1e-4 * rng.normal(size=(40, 3))
    far = rng.normal(size=(20, 3)) * 3
    return {"on": on, "inside": inside, "outside": outside, "edge": edge, "vertex": vert, "far": far}


def test_point_face_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    t = make_template(2)
    v = t.verts.double().numpy() * np.array([1.0, 0.6, 0.35])
    v[:, 2] += 0.3 * np.sin(3 * v[:, 0])                                    # non-convex bumps
    f = t.faces.numpy()
    search = FaceSearch(v, f)
    vt, ft = torch.from_numpy(v), torch.from_numpy(f)
    for kind, pts in _test_points(v, f, rng).items():
        ref = _reference_distance(pts, v[f])
        got = point_face_distance(torch.from_numpy(pts), vt, ft, search).numpy()
        np.testing.assert_allclose(got, ref, atol=2e-6, rtol=1e-5, err_msg=kind)
        if kind == "on":
            assert got.max() < 1e-5


def test_closest_point_regions_and_gradcheck():
    a, b, c = torch.tensor([0.0, 0, 0]), torch.tensor([1.0, 0, 0]), torch.tensor([0.0, 1, 0])
    cases = {  # point: expected closest point (each Voronoi region of the triangle)
        (0.2, 0.2, 0.5): (0.2, 0.2, 0), (-1, -1, 0.3): (0, 0, 0), (2, -0.5, 0): (1, 0, 0), (-0.5, 2, 0): (0, 1, 0),
        (0.5, -1, 0.2): (0.5, 0, 0), (-1, 0.5, -0.2): (0, 0.5, 0), (1, 1, 0.1): (0.5, 0.5, 0)}
    for p, q in cases.items():
        got = closest_point_on_triangle(torch.tensor(p, dtype=torch.float32), a, b, c)
        torch.testing.assert_close(got, torch.tensor(q, dtype=torch.float32))
    g = torch.Generator().manual_seed(1)
    p = (torch.randn(8, 3, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    tri = (torch.randn(8, 3, 3, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda p, t: point_triangle_distance(p, t), (p, tri))
    # degenerate triangle and zero distance: finite gradients
    deg = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [2, 0, 0]], [[0.0, 0, 0], [0, 0, 0], [0, 0, 0]]], requires_grad=True)
    pts = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    point_triangle_distance(pts, deg).sum().backward()
    assert torch.isfinite(deg.grad).all() and torch.isfinite(pts.grad).all()


def test_exterior_mask_drops_hidden_parts():
    import trimesh

    from ntdm_cli.geometry.distance import exterior_mask

    outer = trimesh.creation.box(extents=(2, 2, 2))
    inner = trimesh.creation.box(extents=(0.5, 0.5, 0.5))                  # a part hidden inside the body
    soup = trimesh.util.concatenate([outer, inner])
    pts_outer = trimesh.sample.sample_surface(outer, 200, seed=1)[0]
    pts_inner = trimesh.sample.sample_surface(inner, 200, seed=2)[0]
    mask = exterior_mask(np.asarray(soup.vertices), np.asarray(soup.faces), np.concatenate([pts_outer, pts_inner]),
                         directions=32)
    assert mask[:200].all() and not mask[200:].any()


def test_regularisers():
    quad = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3]])
    pairs = edge_face_pairs(faces)
    assert pairs.shape == (1, 2) and sorted(pairs[0].tolist()) == [0, 1]
    assert normal_consistency(quad, faces, pairs).item() == pytest.approx(0.0, abs=1e-7)
    folded = quad.clone()
    folded[0, 3] = torch.tensor([0.0, 0, 1])                               # fold to 90°: 1 - cos = 1
    folded[0, 2] = torch.tensor([1.0, 0, 1])
    folded[0, 1] = torch.tensor([1.0, 0, 0])
    f2 = torch.tensor([[0, 1, 2], [0, 2, 3]])
    assert normal_consistency(folded, f2).item() == pytest.approx(0.0, abs=1e-6)  # coplanar (xz plane)
    bent = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]])
    fb = torch.tensor([[0, 1, 2], [0, 3, 1]])                              # share edge 0-1, normals -z and -y
    assert normal_consistency(bent, fb).item() == pytest.approx(1.0, abs=1e-6)
    t = make_template(2)
    L = uniform_laplacian(t.faces, t.num_verts)
    ones = torch.ones(t.num_verts, 1)
    assert torch.sparse.mm(L, ones).abs().max() < 1e-6                     # rows sum to zero
    flat = torch.zeros(1, t.num_verts, 3)
    assert laplacian_smoothing(flat, L) < 1e-6
    assert laplacian_smoothing(t.verts[None], L) > 0


# ------------------------------------------------------------------------------------- deformer

@pytest.mark.parametrize("conditioning", ["linear", "concat"])
def test_deformer_forward_and_artifact_round_trip(tmp_path, conditioning):
    t = make_template(2)
    d = Deformer(t, 3, hidden=16, layers=2, pe_frequencies=2, conditioning=conditioning, cad_names=["a", "b", "c"],
                 category="car", scale=[2.0, 1.0, 0.5])
    z = torch.eye(3)
    out = d(z)
    assert out.shape == (3, t.num_verts, 3)
    torch.testing.assert_close(out[0], t.verts * torch.tensor([2.0, 1.0, 0.5]))   # zero-initialised head
    torch.nn.init.normal_(d.out.weight, std=0.1)
    torch.nn.init.normal_(d.out.bias, std=0.1)
    out = d(torch.cat([z, d.mean_latent()]))
    assert not torch.allclose(out[0], out[1])
    if conditioning == "linear":                                           # the mean latent blends the shapes
        torch.testing.assert_close(out[3], out[:3].mean(0), atol=1e-5, rtol=1e-5)
    p = write_artifact(tmp_path / "d.h5", "deformer", deformer_to_artifact_data(d))
    d2 = load_deformer(p)
    assert (d2.cad_names, d2.category, d2.conditioning) == (["a", "b", "c"], "car", conditioning)
    torch.testing.assert_close(d2(z), d(z))
    torch.testing.assert_close(d2.verts_uvs, t.verts_uvs)
    # embedded in another artifact's group, as the model artifact does
    data = deformer_to_artifact_data(d)
    del data["weights"]["first.weight"]
    with pytest.raises(ArtifactError, match="inconsistent deformer data"):
        deformer_from_artifact_data(data, where="model.h5:deformers/car")
    with pytest.raises(ValueError, match="z must be"):
        d(torch.ones(2, 4))


def test_tiny_fit_lowers_the_distance():
    cads = make_cads(10)
    cads = [cads[0], cads[9]]                                              # sedan, truck
    start = fit_deformer(cads, dataclasses.replace(TINY, steps=1, lr=1e-9), show_progress=False)
    fit = fit_deformer(cads, TINY, show_progress=False)
    assert np.all(fit.errors.mean < 0.6 * start.errors.mean), (fit.errors.mean, start.errors.mean)
    assert np.all(fit.errors.p95 < start.errors.p95)
    assert np.mean(fit.history[-5:]) < 0.6 * fit.history[0]
    assert fit.errors.cross.shape == (2, 2) and np.all(np.isfinite(fit.errors.cross))
    # the stored scale is in CAD units: the fitted shape's extent is close to the CAD's
    with torch.no_grad():
        shape = fit.deformer(fit.deformer.latents)[1].numpy()
    ext_fit, ext_cad = np.ptp(shape, 0), np.ptp(cads[1].verts, 0)
    np.testing.assert_allclose(ext_fit, ext_cad, rtol=0.15)
    again = evaluate_deformer(fit.deformer, cads, eval_samples=1500, cross_samples=500, exterior_rays=24)
    np.testing.assert_allclose(again.mean, fit.errors.mean, rtol=0.1)


def test_normalize_stores_the_length_unit():
    cads = make_cads(2)
    for m in cads:
        m.verts = m.verts * 40.0                                           # CAD in other units
    cfg = dataclasses.replace(TINY, steps=5, normalize=True)
    fit = fit_deformer(cads, cfg, show_progress=False)
    c = np.mean([m.bbox_diagonal for m in cads])
    assert fit.deformer.normalization == pytest.approx(c)
    with torch.no_grad():
        shape = fit.deformer(fit.deformer.latents)[0].numpy()
    assert np.linalg.norm(np.ptp(shape, 0)) < 2.0                         # normalised units (diag ≈ 1)
    assert fit.errors.mean_pct.max() < 20                                 # errors still reported in CAD units


# ------------------------------------------------------------------------------------------ CLI

def _cli(capsys, *args):
    with pytest.raises(SystemExit) as exc:
        ntdm_main(["--set", "deformer.steps=25", *args])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A deformer artifact fitted by the CLI (in-process) on 2 procedural CADs, tiny config."""
    import contextlib
    import io
    import os
    from types import SimpleNamespace

    root = tmp_path_factory.mktemp("fit")
    write_cads(root / "car", count=2)
    args = []
    for k, v in dataclasses.asdict(TINY).items():
        args += ["--set", f"deformer.{k}={25 if k == 'steps' else v}"]
    out, err = io.StringIO(), io.StringIO()
    os.environ["NTDM_NO_PROGRESS"] = "1"
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        ntdm_main(args + ["fit-deformer", "--cads", str(root / "car"), "-o", str(root / "car.h5")])
    assert exc.value.code == 0, err.getvalue()
    return root, SimpleNamespace(stdout=out.getvalue(), stderr=err.getvalue())


def test_fit_deformer_cli_artifact_and_table(fitted):
    from ntdm_cli.artifacts import read_artifact

    root, r = fitted
    assert "per-CAD fit errors" in r.stdout and "01_sedan" in r.stdout and "02_hatchback" in r.stdout
    assert r.stdout.strip().endswith("car.h5")
    art = read_artifact(root / "car.h5", "deformer")
    assert art["category"] == "car" and art["cad_names"] == ["01_sedan", "02_hatchback"]
    assert art["errors/mean"].shape == (2,) and art["errors/cross"].shape == (2, 2)
    assert np.all(art["errors/mean_pct"] > 0) and np.all(art["errors/p95"] >= art["errors/mean"])
    assert art.config["deformer"]["subdivisions"] == 2 and art.config["deformer"]["steps"] == 25
    assert art["template/verts"].shape == (162, 3) and art["template/faces_uvs"].shape == (320, 3)
    assert art["scale"].shape == (3,)
    # each CAD's face gaps (geometry.holes) are stored, and the table gives the share of holes
    assert art["face_gaps"].shape == (2, 320) and np.all(np.isfinite(art["face_gaps"]))
    assert np.median(art["face_gaps"]) < 0.05 and "holes" in r.stdout


def test_export_obj_round_trip(fitted, tmp_path, capsys):
    import open3d as o3d
    import trimesh

    root, _ = fitted
    d = load_deformer(root / "car.h5")
    with torch.no_grad():
        shapes = d(torch.cat([d.latents, d.mean_latent()])).numpy()
    code, out, err = _cli(capsys, "export-obj", str(root / "car.h5"), "--latent", "1", "--hole-gap", "0",
                          "-o", str(tmp_path / "k1.obj"))
    assert code == 0, err
    m = load_mesh(tmp_path / "k1.obj")
    np.testing.assert_allclose(m.verts, shapes[1], atol=1e-6)
    assert (m.faces == d.faces.numpy()).all()
    assert len(trimesh.load(str(tmp_path / "k1.obj"), process=False).faces) == 320
    assert len(o3d.io.read_triangle_mesh(str(tmp_path / "k1.obj")).triangles) == 320
    # by default the faces farther from CAD 1 than DEFAULT_HOLE_GAP are left out (this short fit has many)
    code, out, err = _cli(capsys, "export-obj", str(root / "car.h5"), "--latent", "1", "-o", str(tmp_path / "h.obj"))
    assert code == 0, err
    keep = solid_faces(d.face_gaps, d.latents[1:2], DEFAULT_HOLE_GAP)[0].numpy()
    holed = trimesh.load(str(tmp_path / "h.obj"), process=False)
    assert 0 < len(holed.faces) == keep.sum() < 320
    np.testing.assert_allclose(np.asarray(holed.vertices)[np.asarray(holed.faces)], shapes[1][d.faces.numpy()[keep]],
                               atol=1e-6)  # the kept faces in order, compared by position (the file may number vertices anew)
    code, _, err = _cli(capsys, "export-obj", str(root / "car.h5"), "--latent", "01_sedan", "--scale", "2",
                        "--hole-gap", "0", "-o", str(tmp_path / "s.obj"))
    assert code == 0, err
    np.testing.assert_allclose(load_mesh(tmp_path / "s.obj").verts, 2 * shapes[0], atol=2e-6)
    code, _, err = _cli(capsys, "export-obj", str(root / "car.h5"), "--mean", "--uv", "--hole-gap", "0",
                        "-o", str(tmp_path / "m.obj"))
    assert code == 0, err
    np.testing.assert_allclose(load_mesh(tmp_path / "m.obj").verts, shapes[2], atol=1e-6)
    assert (tmp_path / "m.png").exists() and (tmp_path / "m.mtl").exists()
    assert o3d.io.read_triangle_mesh(str(tmp_path / "m.obj")).has_triangle_uvs()
    code, out, err = _cli(capsys, "export-obj", str(root / "car.h5"), "--all", "--hole-gap", "0",
                          "-o", str(tmp_path / "all"))
    assert code == 0, err
    files = sorted(p.name for p in (tmp_path / "all").iterdir())
    assert files == ["00_01_sedan.obj", "01_02_hatchback.obj"]
    np.testing.assert_allclose(load_mesh(tmp_path / "all" / files[1]).verts, shapes[1], atol=1e-6)


def test_export_obj_errors(fitted, tmp_path, capsys):
    root, _ = fitted
    h5 = str(root / "car.h5")
    code, _, err = _cli(capsys, "export-obj", h5, "--latent", "7", "-o", str(tmp_path / "x.obj"))
    assert code == 2 and "--latent 7" in err and "01_sedan" in err
    code, _, err = _cli(capsys, "export-obj", h5, "--latent", "0", "--mean", "-o", str(tmp_path / "x.obj"))
    assert code == 2 and "exactly one of" in err
    code, _, err = _cli(capsys, "export-obj", h5, "--mean", "--scale", "-1", "-o", str(tmp_path / "x.obj"))
    assert code == 2 and "--scale" in err
    bench = write_artifact(tmp_path / "b.h5", "bench", {"x": np.ones(2)})
    code, _, err = _cli(capsys, "export-obj", str(bench), "--mean", "-o", str(tmp_path / "x.obj"))
    assert code == 1 and "does not support bench artifacts" in err
    assert not (tmp_path / "x.obj").exists()
