"""What a person looks at: overlay PNGs and the predicted mesh as a coloured OBJ (visible / occluded /
not in view, the occlusion carried onto the surface with ``image_to_surface`` as in NTDM fig. 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ntdm_cli.fsutil import atomic_write
from ntdm_cli.geometry.visibility import OCCLUDED, VISIBLE, export_prediction_obj, vertex_visibility
from ntdm_cli.render import Viewpoint, project

def overlay_png(path: Path, image: np.ndarray, amodal: np.ndarray, visible: np.ndarray, verts: np.ndarray,
                template, vp: dict, title: str = "") -> Path:
    """The image with visible (green) / occluded (red) regions, the silhouette outline and the mesh
    wireframe, written atomically."""
    from PIL import Image, ImageDraw

    img = image.astype(np.float32) / 255.0
    occluded = amodal & ~visible
    for m, c in ((visible, VISIBLE), (occluded, OCCLUDED)):
        img[m] = 0.55 * img[m] + 0.45 * np.array(c)
    edge = amodal ^ np.pad(amodal, 1, mode="edge")[1:-1, 2:] | amodal ^ np.pad(amodal, 1, mode="edge")[2:, 1:-1]
    img[edge] = (1.0, 1.0, 0.2)
    pil = Image.fromarray((img * 255).clip(0, 255).astype(np.uint8)).convert("RGBA")
    # wireframe of the faces that face the camera, drawn semi-transparent on its own layer
    wire = Image.new("RGBA", pil.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(wire)
    view = Viewpoint.create(**{k: float(v) for k, v in vp.items()})
    pts = project(torch.from_numpy(verts).float()[None], view)[0].numpy()
    faces = template.faces.cpu().numpy()
    a, b, c = pts[faces[:, 0]], pts[faces[:, 1]], pts[faces[:, 2]]
    signed = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    front = faces[(signed < 0) & (a[:, 2] > 0) & (b[:, 2] > 0) & (c[:, 2] > 0)]  # counter-clockwise in the world
    edges = np.unique(np.sort(np.concatenate([front[:, [0, 1]], front[:, [1, 2]], front[:, [2, 0]]]), 1), axis=0)
    for i, j in edges:
        draw.line([(pts[i, 0], pts[i, 1]), (pts[j, 0], pts[j, 1])], fill=(255, 255, 255, 70), width=1)
    pil = Image.alpha_composite(pil, wire).convert("RGB")
    draw = ImageDraw.Draw(pil)
    if title:
        draw.rectangle([0, 0, 8 * len(title) + 8, 14], fill=(0, 0, 0))
        draw.text((4, 1), title, fill=(255, 255, 255))
    return atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


def output_stem(pred) -> str:
    """File stem for one prediction: the file name for image files, the dataset id made flat otherwise."""
    if pred.inp.image_path and pred.inp.image_path == pred.image_id:
        return Path(pred.image_id).stem
    return pred.image_id.rsplit(".", 1)[0].replace("/", "__").replace("|", "_").replace(" ", "_").lstrip("._")


def write_prediction_outputs(pred, template, overlay: Path | None, export: Path | None) -> None:
    """The overlay PNG (on the original image when it can be read at the mask's resolution, else on
    the crop) and the coloured OBJ of one prediction."""
    from ntdm_cli.data.pascal3d import load_image

    if overlay is not None:
        original = load_image(pred.inp.image_path) if pred.inp.image_path else None
        title = f"{pred.category} az {pred.viewpoint['azimuth']:.2f} el {pred.viewpoint['elevation']:.2f}"
        if original is not None and original.shape[:2] == pred.amodal.shape:
            overlay_png(overlay, original, pred.amodal, pred.visible, pred.verts, template, pred.viewpoint, title)
        else:  # resized on reading (very large image): draw on the crop in the crop's frame
            h, w = pred.inp.crop.shape[:2]
            vp = dict(pred.viewpoint, distance=float(pred.result.best.distance), px=w / 2, py=h / 2)
            overlay_png(overlay, pred.inp.crop, pred.crop_amodal, pred.crop_visible, pred.verts, template, vp, title)
    if export is not None:
        h, w = pred.crop_amodal.shape
        hyp = pred.result.best
        vp_crop = Viewpoint.create(azimuth=hyp.azimuth, elevation=hyp.elevation, theta=hyp.theta,
                                   distance=hyp.distance, px=w / 2.0, py=h / 2.0)
        state = vertex_visibility(torch.from_numpy(pred.verts).float(), template, vp_crop, pred.crop_visible,
                                  pred.crop_amodal)
        export_prediction_obj(export, pred.verts, template, state)
