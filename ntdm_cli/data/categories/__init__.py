"""One module per procedural category of the synthetic benchmark (PASCAL3D+ names). Each has
``build(params) -> [(verts (V,3), faces (F,3), role), ...]`` (closed parts in the category frame of
:mod:`ntdm_cli.data.cads`, before centring) and ``SUBTYPES = [(name, params), ...]`` whose last entry is
held out for the OOD shape split."""

from __future__ import annotations

from types import ModuleType

from ntdm_cli.data.categories import (aeroplane, bicycle, boat, bottle, bus, car, chair, diningtable, motorbike,
                                      sofa, train, tvmonitor)

#: category name -> its module, in the benchmark's order (new categories go last so that the
#: per-category seeds and defaults of the older ones stay the same)
MODULES: dict[str, ModuleType] = {
    "car": car, "bus": bus, "aeroplane": aeroplane, "sofa": sofa, "chair": chair, "bottle": bottle,
    "tvmonitor": tvmonitor, "boat": boat,
    "bicycle": bicycle, "diningtable": diningtable, "motorbike": motorbike, "train": train,
}
