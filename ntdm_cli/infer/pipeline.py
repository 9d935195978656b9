"""``ntdm infer``: images (files, a folder, or a dataset split) → predictions artifact, overlays, meshes.

Over 400 lines because it is the one place where an input becomes a prediction: input building
(files, letterbox, dataset samples), the batched solve with classification, and the artifact's rows
share the InferInput / Prediction records; the command's option handling is in infer.run, the solver
in infer.solver, the side outputs in infer.outputs."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ntdm_cli.conventions import MASK_GROUP, MASK_KINDS, PREDICTED_VP_KEYS, mask_group_name
from ntdm_cli.console import progress, warn_skipped
from ntdm_cli.data.pascal3d import load_image
from ntdm_cli.data.preprocess import CropTransform, unpreprocess_mask, unpreprocess_viewpoint
from ntdm_cli.errors import ImageError, MissingInputError, NtdmUsageError, short
from ntdm_cli.geometry.holes import solid_faces, without_holes
from ntdm_cli.geometry.template import Template
from ntdm_cli.infer.classify import background_loss, classify
from ntdm_cli.infer.solver import (Hypotheses, InferConfig, RenderCompare, SolveResult, background_scores,
                                   bank_centres, pooled_features, refine, refine_answers, solve_batch)
from ntdm_cli.model.backbone import feature_stride
from ntdm_cli.model.io import NTDMModel
from ntdm_cli.render import pose_rotation, project, rasterize
from ntdm_cli.model.classifier import fast_class_scores

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_SIDE = 2048


@dataclass
class InferInput:
    """One image ready for inference: crop (H, W, 3) uint8 and the map back to the original image."""

    image_id: str
    crop: np.ndarray | None  # None once the prediction is written (run_infer frees it)
    transform: CropTransform
    original_size: tuple[int, int]
    category: str | None = None  # known category (skip classification)
    occlusion_level: int = 0
    nuisance: str = ""
    image_path: str = ""
    annotation: "Annotation | None" = None  # the ground truth of a dataset sample, in the crop frame


@dataclass
class Annotation:
    """A dataset sample's ground truth in the crop frame, as a hypothesis the solver can score:
    the annotated category, viewpoint (radians, distance in object units), CAD index (0-based: the
    deformer latent) and per-axis instance scale."""

    category: str
    azimuth: float
    elevation: float
    theta: float
    distance: float
    cad_index: int
    instance_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)


def check_bbox(bbox: tuple[float, float, float, float], width: int, height: int, where: str) -> None:
    """Refuse a box ``x0,y0,x1,y1`` (pixels) that is empty or does not overlap the width × height image."""
    x0, y0, x1, y1 = bbox
    if not all(np.isfinite(bbox)) or not (x1 > x0 and y1 > y0):
        raise NtdmUsageError(f"--bbox {','.join(f'{v:g}' for v in bbox)}: expected x0,y0,x1,y1 with x1 > x0 and y1 > y0")
    if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
        raise NtdmUsageError(f"--bbox {','.join(f'{v:g}' for v in bbox)}: entirely outside the {width}×{height} "
                             f"image {short(where)}")


def letterbox(image: np.ndarray, crop_hw: tuple[int, int], bbox: tuple[float, float, float, float] | None):
    """Fit the image (or its bbox region, with 10% margin) into the crop, centred. Returns (crop, t)."""
    from ntdm_cli.data.preprocess import warp

    H0, W0 = image.shape[:2]
    h, w = crop_hw
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        if not (x1 > x0 and y1 > y0):
            raise NtdmUsageError(f"--bbox {bbox}: expected x0,y0,x1,y1 with x1 > x0 and y1 > y0")
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 1.2, (y1 - y0) * 1.2
    else:
        cx, cy, bw, bh = W0 / 2, H0 / 2, W0, H0
    scale = min(w / bw, h / bh)
    t = CropTransform(scale=scale, px=cx, py=cy, out_h=h, out_w=w, src_h=H0, src_w=W0)
    return warp(image, t, nearest=False), t


def image_files(paths: list[Path]) -> list[Path]:
    """The image files named by ``paths`` (files, or folders: their images sorted by name). A missing
    path or a folder without images is a usage error."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and not q.name.startswith("."))
            if not found:
                raise NtdmUsageError(f"{short(p)}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        elif not p.exists():
            raise MissingInputError(f"{short(p)}: no such file")
        else:
            files.append(p)
    return files


def inputs_from_files(paths: list[Path], crop_hw, category: str | None, bbox) -> list[InferInput]:
    """Read and letterbox every image. Unreadable ones (corrupt, unsupported format) are skipped with
    one warning that counts and names them; when none is readable, the first error is raised."""
    out, bad, first_error = [], [], None
    for f in image_files(paths):
        try:
            img = load_image(f, max_side=MAX_SIDE)  # (H, W, 3) uint8, large images reduced
        except ImageError as exc:
            bad.append(str(f))
            first_error = first_error or exc
            continue
        if bbox is not None:
            check_bbox(bbox, img.shape[1], img.shape[0], str(f))
        crop, t = letterbox(img, crop_hw, bbox)
        out.append(InferInput(image_id=str(f), crop=crop, transform=t, original_size=img.shape[:2], category=category,
                              image_path=str(f)))
    if not out and first_error is not None:
        raise first_error
    if bad:
        warn_skipped("skipped", bad, "unreadable image")
    return out


def inputs_from_dataset(root: Path, split: str, categories: list[str], crop_hw, occlusion: int = 0,
                        nuisance: str | None = None, limit: int | None = None, known_category: bool = False,
                        zoom: float = 1.0):
    """Dataset samples preprocessed as in training (NeMo protocol: annotated distance and principal
    point set the crop; the object brought to the dataset's target distance / ``zoom``, the model's
    train.zoom). Yields lazily so large splits need little memory."""
    from ntdm_cli.data.pascal3d import Pascal3DDataset

    ds = Pascal3DDataset(root, categories, split=split, occlusion=occlusion, nuisance=nuisance, limit=limit)

    def gen():
        for s in ds:
            yield input_from_sample(s, crop_hw, ds.target_distance / zoom, known_category)

    return ds, gen()


def input_from_sample(sample, crop_hw, target_distance: float, known_category: bool = False) -> InferInput:
    """One dataset sample (data.pascal3d.Sample) preprocessed as in training (NeMo protocol)."""
    from ntdm_cli.data.preprocess import preprocess

    crop, t = preprocess(sample, crop_hw, target_distance)
    vp = crop.viewpoint or {}
    annotation = None if not all(k in vp for k in ("azimuth", "elevation", "theta", "distance")) else Annotation(crop.category, float(vp["azimuth"]), float(vp["elevation"]), float(vp["theta"]),
                            float(vp["distance"]), int(crop.cad_index),
                            tuple(float(x) for x in (crop.instance_scale or (1.0, 1.0, 1.0))))
    return InferInput(image_id=sample.image_id, crop=crop.image, transform=t, original_size=sample.image.shape[:2],
                      category=sample.category if known_category else None, occlusion_level=sample.occlusion_level,
                      nuisance=sample.nuisance, image_path=sample.image_path, annotation=annotation)


@dataclass
class Prediction:
    image_id: str
    category: str
    categories_tried: list[str]
    category_losses: dict[str, float]  # each category's answer, without the view classifier's term
    category_probs: dict[str, float]  # over the tried categories (calibrated when the model is)
    category_viewpoints: dict[str, dict]  # the pose solved for each tried category, original image frame
    background_loss: float  # loss of the object-absent hypothesis (infer.classify.background_loss)
    annotated_loss: float  # loss of the annotated category at the annotated pose and shape (NaN: none)
    annotated_refined_loss: float  # the same after the solver's Adam steps started there (NaN: none)
    result: SolveResult
    viewpoint: dict  # original image frame
    amodal: np.ndarray
    visible: np.ndarray
    crop_amodal: np.ndarray
    crop_visible: np.ndarray
    verts: np.ndarray  # (V, 3) predicted shape (object frame, scaled)
    template: Template  # its faces: the deformer's without the holes of the predicted shape (geometry.holes)
    timing: dict
    inp: InferInput


@torch.no_grad()
def batch_features(inputs: list[InferInput], model: NTDMModel, device) -> list[torch.Tensor]:
    """Backbone features (1, d, h, w) of each input, computed in one batch per crop size."""
    out: list[torch.Tensor | None] = [None] * len(inputs)
    by_size: dict[tuple, list[int]] = {}
    for i, inp in enumerate(inputs):
        by_size.setdefault(inp.crop.shape, []).append(i)
    for idx in by_size.values():
        images = torch.stack([torch.from_numpy(np.array(inputs[i].crop)).permute(2, 0, 1) for i in idx])
        feats = model.backbone(images.float().div(255).to(device))
        for j, i in enumerate(idx):
            out[i] = feats[j:j + 1]
    return out  # type: ignore[return-value]


def answer_template(rc: RenderCompare, hyp) -> Template:
    """The template of a (1,) hypothesis's mesh without its holes: the faces of ``rc``'s deformer
    whose gap to the CADs mixed by its latent exceeds ``infer.hole_gap`` are left out (geometry.holes);
    the whole template for a deformer without face gaps or with ``infer.hole_gap`` 0."""
    keep = solid_faces(rc.deformer.face_gaps, hyp.latent, rc.cfg.hole_gap)
    return without_holes(rc.template, None if keep is None else keep[0])


@torch.no_grad()
def final_masks(rc: RenderCompare, hyp, crop_hw, template: Template | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Amodal silhouette at the crop resolution and the visible (foreground) mask, (H, W) bool each.
    The silhouette is the mesh of ``template`` (default: :func:`answer_template`, the mesh without
    its holes)."""
    loss, inside, fg = rc.losses(hyp, return_maps=True)
    verts = rc.verts(hyp)
    screen = project(verts, rc.viewpoint(hyp), stride=1.0)
    faces = (template or answer_template(rc, hyp)).faces
    frags = rasterize(screen, faces, image_size=crop_hw, faces_per_pixel=1)
    amodal = frags.pix_to_face[0, ..., 0] >= 0
    up = F.interpolate(fg.float().unsqueeze(1), size=crop_hw, mode="bilinear", align_corners=False)[0, 0] > 0.5
    return amodal, up & amodal


def _crop_viewpoint(hyp, crop_hw) -> dict:
    """The viewpoint dict of a (1,) hypothesis in the crop frame (principal point at its centre)."""
    h, w = crop_hw
    return {"azimuth": float(hyp.azimuth), "elevation": float(hyp.elevation), "theta": float(hyp.theta),
            "distance": float(hyp.distance), "focal": 1.0, "px": w / 2.0, "py": h / 2.0, "viewport": 3000.0}


def infer_batch(inputs: list[InferInput], model: NTDMModel, cfg: InferConfig, device, generator: torch.Generator,
                features: torch.Tensor | None = None) -> list[Prediction]:
    """Infer a batch of images (same crop size). Each category is solved once for every image that
    needs it (known category, fast-classifier shortlist, or all), all of them in one batch."""
    t0 = time.perf_counter()
    if features is None:
        features = torch.cat(batch_features(inputs, model, device))
    t_feat = (time.perf_counter() - t0) / len(inputs)
    bank = model.bank.active()
    tried: list[list[str]] = []
    protos = None
    for i, inp in enumerate(inputs):
        if inp.category is not None:
            if inp.category not in model.textures:
                raise NtdmUsageError(f"--category {inp.category}: the model has no such category "
                                     f"(it has {', '.join(model.categories)})")
            tried.append([inp.category])
        elif cfg.shortlist and cfg.shortlist < len(model.categories):
            if protos is None:
                protos = [model.textures[c].prototypes(16) for c in model.categories]
            scores = fast_class_scores(features[i:i + 1], protos, bank)[0]
            tried.append([model.categories[j] for j in torch.topk(scores, cfg.shortlist).indices.tolist()])
        else:
            tried.append(list(model.categories))
    h, w = inputs[0].crop.shape[:2]
    # A model trained on zoomed crops is scored on its features pooled back to the unzoomed grid: the
    # zoom's features at the unzoomed model's cost (docs/pretrained.md)
    pool = cfg.pool or max(1, round(model.zoom))
    if pool > min(features.shape[-2:]):
        raise NtdmUsageError(f"infer.pool={pool} is larger than the {features.shape[-2]}×{features.shape[-1]} feature map")
    view = {}  # category -> its view classifier's (B, K) log-probabilities, read from the full-resolution features
    if model.view is not None and cfg.view_prior > 0:
        view = {c: model.view.log_probs(features, model.categories.index(c)) for c in model.categories
                if any(c in t for t in tried)}
    full = features  # (B, d, h, w): the answers' last refinement (infer.final_steps) is on the unpooled map
    features = pooled_features(features, pool)  # (B, d, h', w'): the grid the hypotheses are scored on
    stride = feature_stride(model.backbone) * pool
    clutter = bank_centres(bank, cfg.bank_clusters) if cfg.bank_clusters > 0 else bank  # once for all categories
    with torch.no_grad():  # once for every category's scorer and for the object-absent loss
        bg = background_scores(features, clutter, cfg.no_background)
    bg_loss = background_loss(bg).tolist()
    priors = model.pose_priors
    solved: dict[tuple[int, str], tuple[SolveResult, RenderCompare]] = {}
    timing = [{"features": t_feat, "init": 0.0, "optimise": 0.0} for _ in inputs]
    for cat in model.categories:
        rows = [i for i, t in enumerate(tried) if cat in t]
        if not rows:
            continue
        rc = RenderCompare(features[rows], model.deformers[cat], model.textures[cat], clutter, cfg, model.bin_temperature,
                           (w / 2.0, h / 2.0), stride, bg=bg[rows], prior=priors.get(cat),
                           view=(model.view, view[cat][rows]) if cat in view else None, hole_gap=model.hole_gap)
        for r, (i, res) in enumerate(zip(rows, solve_batch(rc, cfg, generator))):
            solved[(i, cat)] = (res, rc, r)
            timing[i]["init"] += res.timing["init"]
            timing[i]["optimise"] += res.timing["optimise"]
    annotated, refined = annotated_losses(inputs, features, model, cfg, clutter, bg, solved, stride, view)
    # the class from the evidence: the view term is relative to each category's own mode, so a
    # category whose classifier is unsure (an occluded object) would pay less for any pose
    classes = [classify({c: solved[(i, c)][0].evidence for c in tried[i]}, bg_loss[i], model.categories,
                        model.calibration if cfg.calibrated else None) for i in range(len(inputs))]
    answer_classes = [c for c, _ in classes]
    if cfg.final_steps > 0 and pool > 1:
        t1 = time.perf_counter()
        solved.update(answers_on_full_map(full, answer_classes, solved, model, cfg, clutter, priors,
                                          (w / 2.0, h / 2.0)))
        for t in timing:
            t["final"] = (time.perf_counter() - t1) / len(inputs)
    if cfg.distance_calibrated and model.distance_factor != 1.0:
        solved.update(calibrated_answers(answer_classes, solved, model.distance_factor))
    preds = []
    for i, inp in enumerate(inputs):
        t1 = time.perf_counter()
        losses = {c: solved[(i, c)][0].evidence for c in tried[i]}
        cat, probs = classes[i]
        res, rc, _ = solved[(i, cat)]
        template = answer_template(rc, res.best)
        amodal, visible = final_masks(rc, res.best, (h, w), template)
        hyp = res.best
        per_class = {c: unpreprocess_viewpoint(_crop_viewpoint(solved[(i, c)][0].best, (h, w)), inp.transform)
                     for c in tried[i]}
        crop_amodal, crop_visible = amodal.cpu().numpy(), visible.cpu().numpy()
        with torch.no_grad():
            verts = rc.verts(hyp)[0].cpu().numpy()
        timing[i]["masks"] = time.perf_counter() - t1
        timing[i]["total"] = sum(timing[i].values())
        preds.append(Prediction(
            image_id=inp.image_id, category=cat, categories_tried=tried[i], category_losses=losses,
            category_probs=probs, category_viewpoints=per_class, background_loss=bg_loss[i],
            annotated_loss=annotated[i], annotated_refined_loss=refined[i], result=res,
            viewpoint=per_class[cat],
            amodal=unpreprocess_mask(crop_amodal, inp.transform), visible=unpreprocess_mask(crop_visible, inp.transform),
            crop_amodal=crop_amodal, crop_visible=crop_visible, verts=verts, template=template, timing=timing[i],
            inp=inp))
    return preds


def answers_on_full_map(full: torch.Tensor, classes: list[str], solved: dict, model: NTDMModel, cfg: InferConfig,
                        clutter: torch.Tensor, priors: dict, principal: tuple[float, float]) -> dict:
    """Coarse to fine: each image's answer (the pose and shape solved for its class ``classes[i]``)
    refined on the unpooled features ``full`` (B, d, h, w) (solver.refine_answers), the images of one
    class together (``priors``: model.pose_priors, parsed once). Returns the updated ``solved``
    entries {(i, class): (result, scorer, row)}: the result's ``best`` is the refined answer; losses,
    evidence and starts stay those of the pooled search, which every category and the annotation were
    scored on, and so does the scorer (the visible mask's foreground decision on the full map was
    noisier: docs/pretrained.md)."""
    out = {}
    stride = feature_stride(model.backbone)
    for cat in dict.fromkeys(classes):
        rows = [i for i, c in enumerate(classes) if c == cat]
        with torch.no_grad():
            bg = background_scores(full[rows], clutter, cfg.no_background)
        rc = RenderCompare(full[rows], model.deformers[cat], model.textures[cat], clutter, cfg, model.bin_temperature,
                           principal, stride, bg=bg, prior=priors.get(cat), hole_gap=model.hole_gap)
        answers = [solved[(i, cat)][0].best for i in rows]
        hyp = Hypotheses(*(torch.cat(t) for t in zip(*(a.fields() for a in answers))),
                         image=torch.arange(len(rows), device=full.device))
        best, _ = refine_answers(rc, hyp, cfg)
        for r, i in enumerate(rows):
            res, coarse, row = solved[(i, cat)]
            answer = best.select(torch.tensor([r], device=full.device))
            answer.image = torch.tensor([row], device=full.device)  # its image in the pooled scorer
            out[(i, cat)] = (dataclasses.replace(res, best=answer), coarse, row)
    return out


def calibrated_answers(classes: list[str], solved: dict, factor: float) -> dict:
    """Each image's answer (the pose and shape solved for its class ``classes[i]``) with its camera
    distance multiplied by ``factor`` (the model's distance factor, ntdm_cli.calibration). Returns the
    updated ``solved`` entries {(i, class): (result, scorer, row)}; losses stay those of the search."""
    out = {}
    for i, cat in enumerate(classes):
        res, rc, row = solved[(i, cat)]
        best = res.best.detached()
        best.distance = best.distance * factor
        out[(i, cat)] = (dataclasses.replace(res, best=best), rc, row)
    return out


def annotation_hypothesis(ann: Annotation, num_latents: int, image: int, device) -> Hypotheses:
    """The (1,) hypothesis of an annotation explaining image ``image`` of a batch: its pose, the
    one-hot latent of its CAD and the log of its instance scale."""
    latent = torch.zeros(1, num_latents, device=device)
    latent[0, min(ann.cad_index, num_latents - 1)] = 1.0

    def one(x: float) -> torch.Tensor:
        return torch.tensor([x], dtype=torch.float32, device=device)

    return Hypotheses(one(ann.azimuth), one(ann.elevation), one(ann.theta), one(ann.distance), latent,
                      torch.tensor([ann.instance_scale], dtype=torch.float32, device=device).log(),
                      image=torch.tensor([image], device=device))


def annotated_losses(inputs: list[InferInput], features: torch.Tensor, model: NTDMModel, cfg: InferConfig,
                     clutter: torch.Tensor, bg: torch.Tensor, solved: dict, stride: float,
                     view: dict | None = None) -> tuple[list[float], list[float]]:
    """Loss of each input's annotation (its category at the annotated pose and shape), scored exactly
    as the solver scores its answers, and the loss after the solver's Adam steps started from the
    annotation (pose, distance, latent and scale free, as the answers had them); NaN for inputs
    without an annotation of a category the model has. Comparing the refined loss with the answer's
    tells a search failure (started at the truth, the optimiser ends lower than the answer: the search
    missed that optimum) from a model failure (the model prefers the wrong answer). The raw loss alone
    favours the answer, which had its shape optimised. ``features`` (B, d, h', w') and ``bg`` (B, h', w')
    are the ones the answers were scored on, ``stride`` their crop pixels per cell, ``view`` the view
    classifier's log-probabilities per category (B, K) they were scored with."""
    out = [float("nan")] * len(inputs)
    refined = [float("nan")] * len(inputs)
    groups: dict[int, tuple[RenderCompare, list[int], list[Hypotheses]]] = {}
    priors = model.pose_priors  # parsed once, not per image
    for i, inp in enumerate(inputs):
        ann = inp.annotation
        if ann is None or ann.category not in model.textures:
            continue
        found = solved.get((i, ann.category))
        if found is not None:  # reuse that category's scorer: image i is row `rows.index(i)` of its batch
            rc = found[1]
            row = int(found[2])
        else:
            crop_h, crop_w = inp.crop.shape[:2]
            rc = RenderCompare(features[i:i + 1], model.deformers[ann.category], model.textures[ann.category], clutter,
                               cfg, model.bin_temperature, (crop_w / 2.0, crop_h / 2.0), stride, bg=bg[i:i + 1],
                               prior=priors.get(ann.category),
                               view=(model.view, view[ann.category][i:i + 1]) if view and ann.category in view else None,
                               hole_gap=model.hole_gap)
            row = 0
        hyp = annotation_hypothesis(ann, model.deformers[ann.category].num_latents, row, features.device)
        with torch.no_grad():
            out[i] = float(rc.losses(hyp)[0])
        _, rows, hyps = groups.setdefault(id(rc), (rc, [], []))
        rows.append(i)
        hyps.append(hyp)
    for rc, rows, hyps in groups.values():  # one batch per scorer: every annotation of a category at once
        hyp = Hypotheses(*(torch.cat(t) for t in zip(*(x.fields() for x in hyps))),
                         image=torch.cat([x.image for x in hyps]))
        start = torch.tensor([out[i] for i in rows], dtype=torch.float32, device=features.device)
        with torch.enable_grad():
            _, best_loss, _ = refine(rc, hyp, start, cfg, len(rows))
        for i, v in zip(rows, best_loss.tolist()):
            refined[i] = float(v)
    return out, refined


def infer_one(inp: InferInput, model: NTDMModel, cfg: InferConfig, device, generator: torch.Generator,
              features: torch.Tensor | None = None) -> Prediction:
    """Infer one image (see :func:`infer_batch`)."""
    return infer_batch([inp], model, cfg, device, generator, features)[0]


def predictions_data(preds: list[Prediction], categories: list[str]) -> dict:
    """Datasets of the predictions artifact (one row per image)."""
    n = len(preds)
    rows = {k: np.array([p.viewpoint[k] for p in preds], dtype=np.float64)
            for k in PREDICTED_VP_KEYS}
    rot = pose_rotation(torch.tensor(rows["azimuth"]), torch.tensor(rows["elevation"]), torch.tensor(rows["theta"]))
    closs = np.full((n, len(categories)), np.nan)
    cprob = np.zeros((n, len(categories)))
    cview = np.full((n, len(categories), 4), np.nan)
    for i, p in enumerate(preds):
        for c, l in p.category_losses.items():
            closs[i, categories.index(c)] = l
        for c, q in p.category_probs.items():
            cprob[i, categories.index(c)] = q
        for c, v in p.category_viewpoints.items():
            cview[i, categories.index(c)] = [v["azimuth"], v["elevation"], v["theta"], v["distance"]]
    kmax = max(len(p.result.topk) for p in preds) if preds else 0
    topk = np.full((n, kmax, 5), np.nan)
    for i, p in enumerate(preds):
        t = p.result.topk
        for j in range(len(t)):
            topk[i, j] = [float(t.azimuth[j]), float(t.elevation[j]), float(t.theta[j]), float(t.distance[j]),
                          float(p.result.topk_losses[j])]
    masks = {}
    for p in preds:
        masks[mask_group_name(p.image_id)] = dict(zip(MASK_KINDS, (p.amodal, p.visible, p.amodal & ~p.visible)))
    data = {
        "image_id": [p.image_id for p in preds],
        "image_path": [p.inp.image_path for p in preds],
        "category": [p.category for p in preds],
        "categories": list(categories),
        "category_losses": closs,
        "category_probs": cprob,
        "category_viewpoints": cview,
        "loss": np.array([p.result.loss for p in preds]),
        "background_loss": np.array([p.background_loss for p in preds]),
        "annotated_loss": np.array([p.annotated_loss for p in preds], dtype=np.float64),
        "annotated_refined_loss": np.array([p.annotated_refined_loss for p in preds], dtype=np.float64),
        "init_loss": np.array([p.result.init_loss for p in preds]),
        "rotation": rot.numpy(),
        "occlusion_level": np.array([p.inp.occlusion_level for p in preds], dtype=np.int64),
        "nuisance": [p.inp.nuisance for p in preds],
        "topk": topk,
        "timing": {k: np.array([p.timing.get(k, 0.0) for p in preds]) for k in ("features", "init", "optimise", "masks", "total")},
        MASK_GROUP: masks,
    }
    data.update(rows)
    if preds:
        L = max(p.result.best.latent.shape[-1] for p in preds)
        lat = np.full((n, L), np.nan)
        for i, p in enumerate(preds):
            z = p.result.best.latent[0].detach().cpu().numpy()
            lat[i, : z.shape[0]] = z
        data["latent"] = lat
        data["scale"] = np.stack([p.result.best.log_scale[0].exp().detach().cpu().numpy() for p in preds])
    return data


def _same_size(inputs: list[InferInput]) -> list[list[InferInput]]:
    groups: dict[tuple, list[InferInput]] = {}
    for inp in inputs:
        groups.setdefault(inp.crop.shape, []).append(inp)
    return list(groups.values())


def run_infer(inputs: Iterable[InferInput], model: NTDMModel, cfg: InferConfig, device, output: Path,
              overlay: Path | None = None, export: Path | None = None, config_yaml: str = "",
              attrs: dict | None = None, total: int | None = None, several: bool | None = None) -> list[Prediction]:
    """Infer every input in batches of ``cfg.batch_images`` images (features and solves batched), write
    the overlays and meshes as it goes (into folders when there are several inputs) and the predictions
    artifact.

    ``inputs`` may be a lazy iterable (a dataset stream): only one batch of crops is held at a time,
    and each prediction drops its crop once its overlay/mesh is written. ``total`` (the number of
    inputs, for the progress bar and the folder decision) is required for iterables without ``len``.
    ``several`` (default: ``total > 1``) writes overlays and meshes into folders."""
    from ntdm_cli.artifacts import write_artifact
    from ntdm_cli.fsutil import make_output_folder
    from ntdm_cli.infer.outputs import output_stem, write_prediction_outputs

    if total is None:
        total = len(inputs)  # type: ignore[arg-type]
    several = total > 1 if several is None else several
    for path, option in ((overlay, "--overlay"), (export, "--export")):
        if path is not None and several:
            make_output_folder(path, option)
    preds: list[Prediction] = []
    generator = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    stream = iter(inputs)
    with progress() as prog:
        task = prog.add_task("infer", total=total, info="")
        while True:
            chunk = list(itertools.islice(stream, cfg.batch_images))
            if not chunk:
                break
            for group in _same_size(chunk):
                for p in infer_batch(group, model, cfg, device, generator):
                    preds.append(p)
                    stem = output_stem(p)
                    write_prediction_outputs(
                        p, p.template,
                        (overlay / f"{stem}.png" if several else overlay) if overlay is not None else None,
                        (export / f"{stem}.obj" if several else export) if export is not None else None)
                    p.inp.crop = None  # written: the crop is not needed any more (memory on large splits)
            rate = len(preds) / (time.perf_counter() - t0)
            prog.update(task, advance=len(chunk), info=f"{rate:.2f} img/s")
    write_artifact(output, "predictions", predictions_data(preds, model.categories), config_yaml=config_yaml,
                   attrs=attrs or {})
    return preds
