"""Mesh reading (OFF variants, OBJ, PLY), validation errors, cleaning, and the OBJ/OFF writers."""

import os
import subprocess
import sys

import numpy as np
import pytest

from ntdm_cli.errors import NtdmError
from ntdm_cli.geometry import find_meshes, load_mesh, write_obj, write_off

CUBE_V = ["0 0 0", "1 0 0", "1 1 0", "0 1 0", "0 0 1", "1 0 1", "1 1 1", "0 1 1"]
CUBE_QUADS = ["4 0 3 2 1", "4 4 5 6 7", "4 0 1 5 4", "4 1 2 6 5", "4 2 3 7 6", "4 3 0 4 7"]


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def _cube_area_ok(m):
    assert m.faces.shape == (12, 3)
    assert np.isclose(m.face_areas().sum(), 6.0)


def test_off_plain_and_pascal_variants(tmp_path):
    plain = "OFF\n8 6 0\n" + "\n".join(CUBE_V) + "\n" + "\n".join(CUBE_QUADS) + "\n"
    _cube_area_ok(load_mesh(_write(tmp_path, "plain.off", plain)))
    # PASCAL3D+: OFF glued to the counts, comments, blank lines, trailing colours on faces and vertices
    glued = ("OFF8 6 0\n# a comment\n\n" + "\n".join(v + " 0.5 0.5 0.5" for v in CUBE_V) + "\n\n"
             + "\n".join(q + " 255 0 0" for q in CUBE_QUADS) + "  # end\n\n")
    m = load_mesh(_write(tmp_path, "glued.off", glued))
    _cube_area_ok(m)
    assert m.name == "glued" and m.verts.dtype == np.float64 and m.faces.dtype == np.int64
    # COFF header, counts on the header line after a space, CRLF line endings
    coff = ("COFF 8 6 0\r\n" + "\r\n".join(CUBE_V) + "\r\n" + "\r\n".join(CUBE_QUADS) + "\r\n")
    _cube_area_ok(load_mesh(_write(tmp_path, "c.off", coff)))


def test_off_polygons_are_fan_triangulated_with_outward_orientation(tmp_path):
    hexagon = "OFF\n6 1 0\n" + "\n".join(f"{np.cos(a):.6f} {np.sin(a):.6f} 0" for a in np.arange(6) * np.pi / 3) \
        + "\n6 0 1 2 3 4 5\n"
    m = load_mesh(_write(tmp_path, "hex.off", hexagon))
    assert m.faces.shape == (4, 3)
    assert np.isclose(m.face_areas().sum(), 3 * np.sqrt(3) / 2, atol=1e-5)
    t = m.verts[m.faces]
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    assert (n[:, 2] > 0).all()  # counter-clockwise order kept


def test_degenerate_and_duplicate_faces_dropped_with_count(tmp_path, capsys):
    text = ("OFF\n5 6 0\n0 0 0\n1 0 0\n0 1 0\n2 0 0\n0 0 1\n"
            "3 0 1 2\n3 0 2 1\n3 1 2 0\n3 0 0 1\n3 0 1 3\n3 0 1 4\n")  # dup, dup, repeated index, collinear
    m = load_mesh(_write(tmp_path, "d.off", text))
    assert sorted(map(tuple, np.sort(m.faces, 1).tolist())) == [(0, 1, 2), (0, 1, 4)]
    err = capsys.readouterr().err
    assert "dropped 2 degenerate and 2 duplicate faces" in err


BAD_OFF = {
    "empty.off": ("", "empty file"),
    "notoff.off": ("PLY\n3 1 0\n", "not an OFF file"),
    "counts.off": ("OFF\nthree 1 0\n", "bad counts line"),
    "zero.off": ("OFF\n0 0 0\n", "empty mesh"),
    "short_v.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n", "declares 3 vertices but the file ends after 2"),
    "short_f.off": ("OFF\n3 2 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "declares 2 faces but the file ends after 1"),
    "extra.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n3 0 1 2\n", "wrong counts"),
    "nan.off": ("OFF\n3 1 0\n0 0 0\nnan 0 0\n0 1 0\n3 0 1 2\n", "vertex 1 has a non-finite coordinate"),
    "inf.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 inf 0\n3 0 1 2\n", "vertex 2 has a non-finite coordinate"),
    "range.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "face 0 references vertex 7, out of range"),
    "neg.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 -1 2\n", "references vertex -1"),
    "word.off": ("OFF\n3 1 0\n0 0 0\n1 x 0\n0 1 0\n3 0 1 2\n", "vertex 1 is not numeric"),
    "fewidx.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n4 0 1 2\n", "declares 4 vertices but lists 3"),
    "twoidx.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "has 2 vertices, expected at least 3"),
    "alldegen.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "all 1 faces are degenerate"),
}


@pytest.mark.parametrize("name", sorted(BAD_OFF))
def test_bad_off_files_raise_one_line_naming_file(tmp_path, name):
    text, message = BAD_OFF[name]
    p = _write(tmp_path, name, text)
    with pytest.raises(NtdmError) as exc:
        load_mesh(p)
    msg = str(exc.value)
    assert message in msg and name in msg and "\n" not in msg


def test_binary_and_missing_and_unknown_files(tmp_path):
    b = tmp_path / "bin.off"
    b.write_bytes(b"\xff\xfe\x00\x81" * 10)
    with pytest.raises(NtdmError, match="bin.off: unreadable OFF file"):
        load_mesh(b)
    with pytest.raises(NtdmError, match="no such file"):
        load_mesh(tmp_path / "nope.off")
    with pytest.raises(NtdmError, match="unsupported mesh format"):
        load_mesh(_write(tmp_path, "x.stp", "solid"))
    with pytest.raises(NtdmError, match="unreadable PLY"):
        load_mesh(_write(tmp_path, "bad.ply", "ply\nformat ascii 1.0\nelement vertex nope\nend_header\n"))


def test_obj_reader(tmp_path):
    text = ("# cube\nmtllib x.mtl\n" + "\n".join("v " + v for v in CUBE_V) + "\nvt 0 0\nvn 0 0 1\n"
            + "\n".join("f " + " ".join(f"{int(i) + 1}/1/1" for i in q.split()[1:]) for q in CUBE_QUADS) + "\n")
    _cube_area_ok(load_mesh(_write(tmp_path, "c.obj", text)))
    rel = "v 0 0 0\nv 1 0 0\nv 0 1 0\nf -3 -2 -1\n"  # negative (relative) indices
    assert load_mesh(_write(tmp_path, "rel.obj", rel)).faces.tolist() == [[0, 1, 2]]
    with pytest.raises(NtdmError, match="r.obj: face 0 references vertex 3, out of range"):
        load_mesh(_write(tmp_path, "r.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n"))
    with pytest.raises(NtdmError, match="z.obj: line 4: face index 0"):
        load_mesh(_write(tmp_path, "z.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n"))
    with pytest.raises(NtdmError, match="e.obj: empty mesh"):
        load_mesh(_write(tmp_path, "e.obj", "# nothing\n"))


def test_ply_reader(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=(1, 2, 3))
    p = tmp_path / "box.ply"
    box.export(str(p))
    m = load_mesh(p)
    assert m.faces.shape == (12, 3) and np.isclose(m.face_areas().sum(), box.area)
    bad = tmp_path / "nan.ply"
    text = ("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
            "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 nan 0\n0 1 0\n3 0 1 2\n")
    bad.write_text(text)
    with pytest.raises(NtdmError, match="nan.ply: vertex 1 has a non-finite"):
        load_mesh(bad)


def test_write_obj_colours_uvs_texture_round_trip(tmp_path):
    import open3d as o3d
    import trimesh

    from ntdm_cli.geometry import make_template

    t = make_template(2)
    colors = np.random.default_rng(0).random((t.num_verts, 3))
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:4] = 255  # top half white: v < 0.5 in the grid_sample layout
    p = write_obj(tmp_path / "s.obj", t.verts, t.faces, vertex_colors=colors, verts_uvs=t.verts_uvs,
                  faces_uvs=t.faces_uvs, texture=tex)
    assert {q.name for q in tmp_path.iterdir()} == {"s.obj", "s.mtl", "s.png"}
    m = load_mesh(p)
    np.testing.assert_allclose(m.verts, t.verts.numpy(), atol=1e-6)
    assert (m.faces == t.faces.numpy()).all()
    tm = trimesh.load(str(p), process=False)
    assert len(tm.faces) == t.num_faces
    om = o3d.io.read_triangle_mesh(str(p))
    assert len(om.triangles) == t.num_faces and om.has_triangle_uvs() and om.has_vertex_colors()
    # OBJ's vt has v pointing up: a vertex at the north pole (v = 0, top row) is written with vt.v = 1
    vt = np.array([[float(x) for x in line.split()[1:]] for line in p.read_text().splitlines()
                   if line.startswith("vt ")])
    np.testing.assert_allclose(vt[:, 1], 1 - t.verts_uvs[:, 1].numpy(), atol=1e-6)
    q = write_obj(tmp_path / "plain.obj", t.verts, t.faces)
    assert len(trimesh.load(str(q), process=False).vertices) == t.num_verts
    with pytest.raises(NtdmError, match="out of range"):
        write_obj(tmp_path / "bad.obj", t.verts, t.faces + 1000)
    assert not (tmp_path / "bad.obj").exists()


def test_write_off_round_trip(tmp_path):
    from ntdm_cli.geometry import make_template

    t = make_template(1)
    p = write_off(tmp_path / "t.off", t.verts, t.faces)
    m = load_mesh(p)
    np.testing.assert_allclose(m.verts, t.verts.numpy(), atol=1e-7)
    assert (m.faces == t.faces.numpy()).all()
    assert not [q for q in tmp_path.iterdir() if q.name.endswith(".tmp")]


def test_find_meshes_files_globs_folders(tmp_path):
    d = tmp_path / "car"
    d.mkdir()
    for i in (1, 2, 10):
        write_off(d / f"{i:d}.off", np.eye(3), [[0, 1, 2]])
    (d / "notes.txt").write_text("x")
    by_folder = find_meshes([str(d)])
    assert [p.name for p in by_folder] == ["1.off", "2.off", "10.off"]  # natural order
    assert find_meshes([str(d / "*.off")]) == by_folder
    assert find_meshes([str(d / "2.off"), str(d / "*.off")])[0].name == "2.off"
    assert len(find_meshes([str(d / "2.off"), str(d / "*.off")])) == 3
    with pytest.raises(NtdmError, match="pattern matches no files"):
        find_meshes([str(d / "*.ply")])
    with pytest.raises(NtdmError, match="no such file or folder"):
        find_meshes([str(d / "nope.off")])


def test_cli_bad_cad_exits_1_with_one_line(tmp_path):
    bad = _write(tmp_path, "broken.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 9\n")
    r = subprocess.run([sys.executable, "-m", "ntdm_cli", "fit-deformer", "--cads", str(bad), "-o",
                        str(tmp_path / "d.h5")], capture_output=True, text=True,
                       env={**os.environ, "NTDM_NO_PROGRESS": "1", "COLUMNS": "200"})
    assert r.returncode == 1, r.stderr
    assert "broken.off" in r.stderr and "out of range" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert not (tmp_path / "d.h5").exists()
