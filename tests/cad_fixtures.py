"""Procedural CAD-like meshes for the deformer tests and benchmark.

Ten vehicle-like part soups in a PASCAL3D+-like category frame (x: length, y: width, z: up, origin at
the centre, roughly unit length), built like real CAD models: overlapping closed parts (boxes,
cylinders) that are not merged, so hidden interior faces exist. They vary in proportions and carry
wheels (protruding cylinders), thin parts (spoiler fin, roof rack, mirrors) and concavities (pickup
bed, open cockpit, the gap under the body between the wheels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh

from ntdm_cli.geometry import Mesh, write_off


def _box(center, size) -> trimesh.Trimesh:
    return trimesh.creation.box(extents=size, transform=trimesh.transformations.translation_matrix(center))


def _wheel(x, y, z, radius, width, sections=24) -> trimesh.Trimesh:
    m = trimesh.creation.cylinder(radius=radius, height=width, sections=sections)
    m.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    m.apply_translation([x, y, z])
    return m


def _vehicle(length, width, body_h, clearance, cabin_len, cabin_h, cabin_shift, wheel_r, wheel_w=0.07,
             axles=2, extras=()) -> list[trimesh.Trimesh]:
    parts = [_box([0, 0, clearance + body_h / 2], [length, width, body_h]),
             _box([cabin_shift, 0, clearance + body_h + cabin_h / 2], [cabin_len, width * 0.86, cabin_h])]
    xs = np.linspace(-length * 0.33, length * 0.33, axles)
    for x in xs:
        for side in (-1, 1):
            parts.append(_wheel(x, side * (width / 2 - wheel_w * 0.3), wheel_r, wheel_r, wheel_w))
    parts.extend(extras)
    return parts


def cad_parts() -> list[tuple[str, list[trimesh.Trimesh]]]:
    """(name, parts) of the ten procedural CADs."""
    L = 1.0
    shapes = [
        ("sedan", _vehicle(L, 0.42, 0.14, 0.06, 0.5, 0.12, -0.02, 0.07)),
        ("hatchback", _vehicle(0.85, 0.42, 0.15, 0.06, 0.5, 0.15, -0.1, 0.07)),
        ("suv", _vehicle(1.0, 0.46, 0.22, 0.1, 0.62, 0.17, -0.08, 0.1, wheel_w=0.09,
                         extras=[_box([-0.08, 0.12, 0.515], [0.5, 0.02, 0.02]),
                                 _box([-0.08, -0.12, 0.515], [0.5, 0.02, 0.02])])),       # roof rack bars
        ("pickup", [_box([0.0, 0, 0.13], [1.05, 0.44, 0.12]),                             # chassis
                    _box([0.22, 0, 0.29], [0.36, 0.42, 0.22]),                             # cab
                    _box([-0.24, 0, 0.21], [0.55, 0.44, 0.04]),                            # bed floor
                    _box([-0.24, 0.21, 0.28], [0.55, 0.02, 0.14]),                         # bed walls
                    _box([-0.24, -0.21, 0.28], [0.55, 0.02, 0.14]),
                    _box([-0.505, 0, 0.28], [0.04, 0.44, 0.14])]
         + [_wheel(x, s * 0.2, 0.08, 0.08, 0.08) for x in (-0.33, 0.33) for s in (-1, 1)]),
        ("sports", _vehicle(1.05, 0.45, 0.1, 0.04, 0.38, 0.09, 0.02, 0.065,
                            extras=[_box([-0.49, 0, 0.215], [0.07, 0.42, 0.015]),          # spoiler fin
                                    _box([-0.49, 0, 0.165], [0.05, 0.3, 0.09])])),         # its solid stand
        ("van", _vehicle(0.95, 0.45, 0.3, 0.07, 0.7, 0.12, -0.1, 0.075)),
        ("bus", _vehicle(1.2, 0.36, 0.34, 0.06, 1.1, 0.08, 0.0, 0.07, axles=3)),
        ("coupe", _vehicle(0.95, 0.43, 0.12, 0.05, 0.42, 0.11, -0.06, 0.068,
                           extras=[_box([0.12, 0.235, 0.24], [0.04, 0.05, 0.03]),
                                   _box([0.12, -0.235, 0.24], [0.04, 0.05, 0.03])])),     # mirrors
        ("convertible", [_box([0, 0, 0.1], [0.95, 0.42, 0.08]),                           # floor
                         _box([0.3, 0, 0.19], [0.35, 0.42, 0.1]),                         # hood block
                         _box([-0.33, 0, 0.19], [0.29, 0.42, 0.1]),                       # trunk block
                         _box([0.0, 0.195, 0.19], [0.32, 0.03, 0.1]),                     # cockpit walls
                         _box([0.0, -0.195, 0.19], [0.32, 0.03, 0.1]),
                         _box([0.07, 0, 0.27], [0.03, 0.4, 0.06])]                        # windscreen
         + [_wheel(x, s * 0.19, 0.07, 0.07, 0.07) for x in (-0.3, 0.3) for s in (-1, 1)]),
        ("truck", [_box([0.38, 0, 0.27], [0.3, 0.44, 0.34]),                              # cab
                   _box([-0.14, 0, 0.33], [0.7, 0.46, 0.46]),                              # cargo box
                   _box([0, 0, 0.12], [1.1, 0.4, 0.08])]                                   # frame
         + [_wheel(x, s * 0.19, 0.09, 0.09, 0.08) for x in (-0.35, 0.38) for s in (-1, 1)]),
    ]
    return shapes


def make_cads(count: int = 10) -> list[Mesh]:
    """The first ``count`` procedural CADs as :class:`Mesh` objects (part soups, centred)."""
    out = []
    for name, parts in cad_parts()[:count]:
        m = trimesh.util.concatenate(parts)
        v = np.asarray(m.vertices, np.float64)
        v = v - (v.max(0) + v.min(0)) / 2
        out.append(Mesh(verts=v, faces=np.asarray(m.faces, np.int64), name=name))
    return out


def write_cads(folder: str | Path, count: int = 10) -> list[Path]:
    """Write the CADs as ``NN_<name>.off`` into ``folder``; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, m in enumerate(make_cads(count)):
        paths.append(write_off(folder / f"{i + 1:02d}_{m.name}.off", m.verts, m.faces))
    return paths
