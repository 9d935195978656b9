"""Names shared by every layer (core): the viewpoint fields and the predictions artifact's keys.

A viewpoint is the PASCAL3D+ camera (docs/design.md, "Conventions"): angles in radians, distance in
world units, focal unitless, principal point (px, py) and viewport in pixels. Code that stores a
viewpoint as a row of numbers uses :data:`VP_KEYS` order.
"""

from __future__ import annotations

#: every field of a viewpoint, in the order of a stored row (8,)
VP_KEYS = ("azimuth", "elevation", "theta", "distance", "focal", "px", "py", "viewport")
#: the three rotation angles (radians)
ANGLE_KEYS = VP_KEYS[:3]
#: the viewpoint fields a predictions artifact stores per image (focal and viewport are the model's)
PREDICTED_VP_KEYS = ("azimuth", "elevation", "theta", "distance", "px", "py")

#: group of the predictions artifact that holds the per-image masks
MASK_GROUP = "masks"
#: the masks stored per image: amodal (the whole object), visible, occluded (amodal and not visible)
MASK_KINDS = ("amodal", "visible", "occluded")


def mask_group_name(image_id: str) -> str:
    """Member of :data:`MASK_GROUP` that holds one image's masks (HDF5 names cannot hold ``/``)."""
    return image_id.replace("/", "|")


def mask_key(image_id: str, which: str | None = None) -> str:
    """Path of a predicted mask in a predictions artifact: ``masks/<image_id, '/' → '|'>[/<which>]``."""
    key = f"{MASK_GROUP}/{mask_group_name(image_id)}"
    return f"{key}/{which}" if which else key

#: faces of a deformed template farther from its CAD's surface than this fraction of the CAD's
#: bounding-box diagonal span empty space (geometry.holes) and are left out of silhouettes and meshes:
#: about twice the median face's distance in the demo's fits (docs/pretrained.md)
DEFAULT_HOLE_GAP = 0.0125
