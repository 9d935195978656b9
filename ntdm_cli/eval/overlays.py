"""Worst-case overlays for ``ntdm eval``: the image with the predicted amodal mask (red) and the
annotated outline (green), captioned with the image's error."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from ntdm_cli.console import warn
from ntdm_cli.eval.scoring import RunResult, WorstCase
from ntdm_cli.eval.tables import pct, safe_name
from ntdm_cli.fsutil import write_bytes

def boundary(mask: np.ndarray) -> np.ndarray:
    m = mask.astype(bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    edge = m & ~inner
    thick = edge.copy()  # 2-pixel outline
    thick[1:, :] |= edge[:-1, :]
    thick[:, 1:] |= edge[:, :-1]
    return thick


def overlay_image(case: WorstCase) -> np.ndarray | None:
    """(H,W,3) uint8: the image with the predicted amodal mask tinted red and the annotated amodal
    outline in green; None when the image is missing or the masks do not fit it."""
    img = case.image
    if img is None:
        return None
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, -1)
    if img.ndim != 3 or img.shape[-1] not in (3, 4):
        return None
    out = img[..., :3].astype(np.float32)
    if out.max() <= 1.0 and img.dtype != np.uint8:
        out *= 255.0
    hw = out.shape[:2]
    if case.pred_mask is not None and case.pred_mask.shape == hw:
        m = case.pred_mask.astype(bool)
        out[m] = 0.55 * out[m] + 0.45 * np.array([255.0, 40.0, 40.0])
        out[boundary(m)] = (255.0, 0.0, 0.0)
    if case.gt_mask is not None and case.gt_mask.shape == hw:
        out[boundary(case.gt_mask)] = (0.0, 255.0, 0.0)
    return np.clip(out, 0, 255).astype(np.uint8)


def write_overlays(runs: Sequence[RunResult], folder: Path) -> dict[str, list[str]]:
    from PIL import Image, ImageDraw

    paths: dict[str, list[str]] = {}
    skipped = 0
    for r in runs:
        paths[r.label] = []
        for rank, w in enumerate(r.worst, 1):
            pixels = overlay_image(w)
            if pixels is None:
                skipped += 1
                paths[r.label].append("")
                continue
            folder.mkdir(exist_ok=True)
            im = Image.fromarray(pixels)
            scale = max(1, math.ceil(256 / max(im.width, im.height)))  # small images: enlarge (nearest)
            if scale > 1:
                im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
            res = w.result
            lines = [f"{res.image_id}", f"err {math.degrees(res.pose_error):.1f} deg, amodal IoU {pct(res.amodal_iou)}%, "
                     f"pred {res.pred_category} (gt {res.category})"]
            canvas = Image.new("RGB", (im.width, im.height + 28), (0, 0, 0))
            canvas.paste(im, (0, 28))
            draw = ImageDraw.Draw(canvas)
            for j, text in enumerate(lines):
                draw.text((3, 2 + 12 * j), text, fill=(255, 255, 255))
            im = canvas
            name = f"{safe_name(r.label)}_{rank:02d}_{safe_name(res.image_id)}.png"
            buf = io.BytesIO()
            im.save(buf, format="PNG")
            write_bytes(folder / name, buf.getvalue())
            paths[r.label].append(f"{folder.name}/{name}")
    if skipped:
        warn(f"{skipped} worst-case overlays skipped: image not readable or not loaded")
    return paths

