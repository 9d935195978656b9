"""NeMo-style preprocessing: rescale the image so the object sits at ``target_distance`` (5), crop a
per-category window (multiples of 32) centred on the principal point, zero-pad where the window
leaves the image; and the inverse maps (points, masks, viewpoints) for predictions.

The map is one isotropic scale ``s = distance / target_distance`` about the principal point::

    x' = s·(x − px) + W/2,   y' = s·(y − py) + H/2      (continuous pixel coordinates, pixel centres
                                                         at c + 0.5 as in docs/design.md)

It is applied with a single affine resampling (no resize-then-crop rounding), so the preprocessed
viewpoint is exactly ``px' = W/2, py' = H/2`` and ``distance' = target_distance`` (NeMo's weak-perspective
approximation: scaling the image about the principal point stands in for moving the camera).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ntdm_cli.errors import NtdmError

#: NeMo's per-category crop sizes (H, W) for PASCAL3D+ at distance 5 ("top_50_size_dict")
NEMO_SIZES: dict[str, tuple[float, float]] = {
    "aeroplane": (320, 1024), "bicycle": (600, 600), "boat": (455, 1120), "bottle": (512, 720),
    "bus": (320, 800), "car": (256, 672), "chair": (530, 370), "diningtable": (320, 800),
    "motorbike": (512, 512), "sofa": (337, 720), "train": (240, 600), "tvmonitor": (468, 463),
}


def round32(x: float) -> int:
    return int(max(32, math.ceil(x / 32.0) * 32))


def crop_size(category: str) -> tuple[int, int]:
    """NeMo's crop (H, W) for a PASCAL3D+ category, rounded up to multiples of 32 (default 512²)."""
    h, w = NEMO_SIZES.get(category, (512, 512))
    return round32(h), round32(w)


@dataclass(frozen=True)
class CropTransform:
    """The preprocessing map: ``x' = scale·(x − px) + out_w/2`` (same for y with py, out_h).

    src_h/src_w: original image size; out_h/out_w: crop size."""

    scale: float
    px: float
    py: float
    out_h: int
    out_w: int
    src_h: int
    src_w: int

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) original pixel (x, y) -> crop pixel (x, y)."""
        p = np.asarray(points, dtype=np.float64)
        return np.stack([self.scale * (p[..., 0] - self.px) + self.out_w / 2,
                         self.scale * (p[..., 1] - self.py) + self.out_h / 2], -1)

    def to_original(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) crop pixel (x, y) -> original pixel (x, y)."""
        p = np.asarray(points, dtype=np.float64)
        return np.stack([(p[..., 0] - self.out_w / 2) / self.scale + self.px,
                         (p[..., 1] - self.out_h / 2) / self.scale + self.py], -1)


def warp(arr: np.ndarray, t: CropTransform, nearest: bool) -> np.ndarray:
    """Resample ``arr`` (H, W[, C]) into the crop: output pixel centre (c + 0.5, r + 0.5) reads the
    original at the inverse-mapped point (bilinear or nearest), zero outside the image."""
    from PIL import Image

    is_bool = arr.dtype == bool
    src = arr.astype(np.uint8) * (255 if is_bool else 1)
    img = Image.fromarray(src)
    inv = 1.0 / t.scale
    # PIL's affine transform evaluates at output pixel centres and reads input continuous coordinates
    coeffs = (inv, 0.0, t.px - (t.out_w / 2) * inv, 0.0, inv, t.py - (t.out_h / 2) * inv)
    method = Image.Resampling.NEAREST if (nearest or is_bool) else Image.Resampling.BILINEAR
    out = np.asarray(img.transform((t.out_w, t.out_h), Image.Transform.AFFINE, coeffs, resample=method, fillcolor=0))
    return out > 127 if is_bool else out


def preprocess(sample, crop_hw: tuple[int, int] | None = None, target_distance: float = 5.0):
    """Rescale and crop a :class:`~ntdm_cli.data.pascal3d.Sample` NeMo-style.

    crop_hw: (H, W) of the crop (default: NeMo's size for the category). Returns ``(sample', t)``:
    the image (H, W, 3) uint8, masks and bbox mapped into the crop, viewpoint with ``distance =
    target_distance``, ``px = W/2``, ``py = H/2`` (angles, focal, viewport unchanged), and the
    :class:`CropTransform` ``t`` for the inverse maps."""
    vp = sample.viewpoint
    d = float(vp["distance"])
    if not (d > 0 and math.isfinite(d)):
        raise NtdmError(f"{sample.image_id}: cannot preprocess, distance is {d}")
    if not target_distance > 0:
        raise NtdmError(f"target distance must be positive, got {target_distance}")
    h, w = crop_hw if crop_hw is not None else crop_size(sample.category)
    H0, W0 = sample.image.shape[:2]
    t = CropTransform(scale=d / target_distance, px=float(vp["px"]), py=float(vp["py"]), out_h=int(h), out_w=int(w),
                      src_h=H0, src_w=W0)
    image = warp(sample.image, t, nearest=False)
    amodal = warp(sample.amodal_mask, t, True) if sample.amodal_mask is not None else None
    occl = warp(sample.occluder_mask, t, True) if sample.occluder_mask is not None else None
    b = t.to_crop(np.array([[sample.bbox[0], sample.bbox[1]], [sample.bbox[2], sample.bbox[3]]]))
    new_vp = dict(vp, distance=float(target_distance), px=w / 2.0, py=h / 2.0)
    out = replace(sample, image=image, amodal_mask=amodal, occluder_mask=occl, viewpoint=new_vp,
                  bbox=(float(b[0, 0]), float(b[0, 1]), float(b[1, 0]), float(b[1, 1])))
    return out, t


def unpreprocess_points(points: np.ndarray, t: CropTransform) -> np.ndarray:
    """(..., 2) crop pixel coordinates -> original image pixel coordinates."""
    return t.to_original(points)


def unpreprocess_viewpoint(viewpoint: dict, t: CropTransform) -> dict:
    """A viewpoint estimated on the crop -> the original image: ``distance·scale`` and the principal
    point mapped back; angles, focal and viewport unchanged. Exact inverse of :func:`preprocess`."""
    p = t.to_original(np.array([float(viewpoint["px"]), float(viewpoint["py"])]))
    return dict(viewpoint, distance=float(viewpoint["distance"]) * t.scale, px=float(p[0]), py=float(p[1]))


def unpreprocess_mask(mask: np.ndarray, t: CropTransform) -> np.ndarray:
    """(out_h, out_w) bool mask on the crop -> (src_h, src_w) bool mask on the original image
    (nearest sampling at original pixel centres; False where the crop does not reach)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (t.out_h, t.out_w):
        raise NtdmError(f"mask is {mask.shape}, the crop is {(t.out_h, t.out_w)}")
    xs = (np.arange(t.src_w) + 0.5 - t.px) * t.scale + t.out_w / 2
    ys = (np.arange(t.src_h) + 0.5 - t.py) * t.scale + t.out_h / 2
    ci, ri = np.floor(xs).astype(np.int64), np.floor(ys).astype(np.int64)
    okc, okr = (ci >= 0) & (ci < t.out_w), (ri >= 0) & (ri < t.out_h)
    out = np.zeros((t.src_h, t.src_w), dtype=bool)
    sub = mask[np.clip(ri, 0, t.out_h - 1)][:, np.clip(ci, 0, t.out_w - 1)]
    out[:] = sub & okr[:, None] & okc[None, :]
    return out
