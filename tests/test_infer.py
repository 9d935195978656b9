"""infer: render-and-compare on a tiny model and on noiseless rendered features; outputs; errors."""

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import trimesh

from ntdm_cli.artifacts import read_artifact
from ntdm_cli.errors import NtdmUsageError
from ntdm_cli.infer.solver import (Hypotheses, InferConfig, RenderCompare, project_simplex, refine, separated_topk, solve,
                                   view_angle)
from ntdm_cli.model.backbone import STRIDE
from ntdm_cli.model.io import load_model
from ntdm_cli.model.surface import rasterize_surface, render_features
from ntdm_cli.model.texture import NeuralTexture
from ntdm_cli.render import pose_rotation
from tests.conftest import run_cli
from tests.helpers import random_scorer_scene

FAST = ["--set", "infer.steps=8", "--set", "infer.azimuths=6", "--set", "infer.elevations=2", "--set", "infer.thetas=1"]


def _rotation_error(a, b):
    R = a.transpose(-1, -2) @ b
    return torch.arccos(((R.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1, 1))


def _noiseless_scene(tiny_pipeline, stride: int, truth: dict, cfg: InferConfig):
    """A random texture on the tiny car deformer rendered at ``truth`` (its second CAD's latent) over a
    constant background: the features (1, 16, h, w) of a 128-pixel crop, the deformer and texture."""
    model = load_model(tiny_pipeline.model)
    deformer = model.deformers["car"].requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    tex = NeuralTexture(3, 32, 16, generator=g)
    tex.counts += 1
    bank = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    h = w = 128 // stride
    with torch.no_grad():
        z = deformer.latents[1:2].float()
        hyp = Hypotheses(truth["azimuth"], truth["elevation"], truth["theta"], truth["distance"], z, torch.zeros(1, 3))
        rc0 = RenderCompare(torch.zeros(1, 16, h, w), deformer, tex, bank, cfg, 5.0, (64.0, 64.0), stride)
        surf = rasterize_surface(rc0.verts(hyp), deformer.template.faces, deformer.template.verts_uvs,
                                 deformer.template.faces_uvs, rc0.viewpoint(hyp), (h, w), float(stride), 3, 5.0)
        feats = render_features(surf, deformer.template.verts_uvs, deformer.template.faces_uvs, tex.theta)
        background = bank[0].view(1, 16, 1, 1).expand(1, 16, h, w)
        feats = torch.where(surf.mask.unsqueeze(1), feats, background)
    return RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (64.0, 64.0), stride), hyp


@pytest.mark.parametrize("init_poses,stride,grid_pool", [(0, STRIDE, 1), (6, STRIDE, 1), (6, 4, 1), (6, 4, 2)])
def test_recovers_pose_from_noiseless_rendered_features(tiny_pipeline, init_poses, stride, grid_pool):
    """Ground-truth textures and a rendered feature map: the rotation comes back within π/18, with the
    full pose × latent grid and with the coarse-to-fine initialisation; at stride 4 (a 128-pixel crop
    gives a 32² map) the distance comes back too, so the solver renders at the backbone's stride, also
    with the grid scored on features pooled to stride 8."""
    truth = dict(azimuth=torch.tensor([2.2]), elevation=torch.tensor([0.25]), theta=torch.tensor([0.1]),
                 distance=torch.tensor([5.0]))
    cfg = InferConfig(steps=80, azimuths=12, elevations=4, thetas=3, init_distance=5.0, init_poses=init_poses,
                      grid_pool=grid_pool)
    rc, _ = _noiseless_scene(tiny_pipeline, stride, truth, cfg)
    res = solve(rc, cfg, torch.Generator().manual_seed(0))
    assert res.loss <= res.init_loss + 1e-6  # optimisation never ends worse than its best start
    Rp = pose_rotation(res.best.azimuth, res.best.elevation, res.best.theta)
    Rt = pose_rotation(truth["azimuth"], truth["elevation"], truth["theta"])
    assert _rotation_error(Rp, Rt).item() < math.pi / 18
    size = res.best.distance / res.best.log_scale.exp().mean()  # the apparent size: distance ÷ scale
    assert abs(float(size) / 5.0 - 1) < 0.1


def test_polish_moves_the_silhouette_where_adam_cannot(tiny_pipeline):
    """Compass search (infer.polish_levels) from a start 20° off in azimuth, 12° in elevation and 12 %
    too far: with no Adam step at all it comes back within 5° and 3 % of the truth, its losses never
    rise (to a tenth of the start's), and with polish_levels=0 the start is returned unchanged."""
    truth = dict(azimuth=torch.tensor([2.2]), elevation=torch.tensor([0.25]), theta=torch.tensor([0.1]),
                 distance=torch.tensor([5.0]))
    cfg = InferConfig(steps=0, init_distance=5.0, polish_levels=4, polish_step_deg=15.0)
    rc, hyp = _noiseless_scene(tiny_pipeline, 4, truth, cfg)
    start_hyp = hyp.detached()
    start_hyp.azimuth += math.radians(20)
    start_hyp.elevation -= math.radians(12)
    start_hyp.distance *= 1.12
    with torch.no_grad():
        start = rc.losses(start_hyp)
        truth_loss = rc.losses(hyp)
    off = InferConfig(steps=0, init_distance=5.0, polish_levels=0)
    same, same_loss, _ = refine(rc, start_hyp.detached(), start.clone(), off)
    assert float(same.azimuth) == float(start_hyp.azimuth) and float(same_loss) == float(start)
    best, loss, _ = refine(rc, start_hyp.detached(), start.clone(), cfg)
    assert float(loss) <= float(start) and float(loss) == pytest.approx(float(rc.losses(best)), abs=1e-6)
    assert float(loss) < 0.1 * float(start) and float(truth_loss) < 1e-3
    R = pose_rotation(best.azimuth, best.elevation, best.theta)
    Rt = pose_rotation(truth["azimuth"], truth["elevation"], truth["theta"])
    assert _rotation_error(R, Rt).item() < math.radians(5)
    assert abs(float(best.distance) / 5.0 - 1) < 0.03


def test_infer_cli_outputs(tiny_pipeline, tmp_path):
    pred = tmp_path / "pred.h5"
    run_cli("infer", "--data", str(tiny_pipeline.data), "--split", "val", "--occlusion", "0,2", "--limit", "1",
            "--model", str(tiny_pipeline.model), "-o", str(pred), "--overlay", str(tmp_path / "ov"),
            "--export", str(tmp_path / "meshes"), *FAST)
    art = read_artifact(pred, "predictions")
    n = len(art["image_id"])
    assert n == 4  # 2 categories × 1 image × levels 0 and 2
    for key in ("azimuth", "elevation", "theta", "distance", "loss", "init_loss", "occlusion_level"):
        assert art[key].shape == (n,), key
    assert art["rotation"].shape == (n, 3, 3)
    assert art["category_losses"].shape == (n, 2) and art["categories"] == ["bus", "car"]
    assert art["latent"].shape[0] == n and art["scale"].shape == (n, 3)
    assert art["topk"].shape == (n, 1, 5)
    assert (art["loss"] <= art["init_loss"] + 1e-5).all()
    # the annotation's loss, and after optimising from it (never worse than where it started)
    assert np.isfinite(art["annotated_loss"]).all() and np.isfinite(art["annotated_refined_loss"]).all()
    assert (art["annotated_refined_loss"] <= art["annotated_loss"] + 1e-6).all()
    assert sorted(set(art["occlusion_level"].tolist())) == [0, 2]
    key = art["image_id"][0].replace("/", "|")
    masks = art[f"masks/{key}"]
    assert masks["amodal"].dtype == bool and masks["amodal"].shape == masks["visible"].shape
    assert not (masks["visible"] & ~masks["amodal"]).any()
    assert np.array_equal(masks["occluded"], masks["amodal"] & ~masks["visible"])
    pngs = sorted((tmp_path / "ov").glob("*.png"))
    objs = sorted((tmp_path / "meshes").glob("*.obj"))
    assert len(pngs) == n and len(objs) == n
    mesh = trimesh.load(objs[0], process=False)
    assert mesh.visual.vertex_colors.shape[0] == len(mesh.vertices) and len(mesh.faces) > 0
    # the same mesh afterwards from the predictions artifact, and a model's embedded deformer
    run_cli("export-obj", str(pred), "--index", "0", "-o", str(tmp_path / "again.obj"))
    again = trimesh.load(tmp_path / "again.obj", process=False)
    assert len(again.vertices) == len(mesh.vertices)
    colours = {tuple(c) for c in again.visual.vertex_colors[:, :3].tolist()}
    assert len(colours) >= 2  # some vertices in view, some not
    run_cli("export-obj", str(tiny_pipeline.model), "--category", "car", "--mean", "-o", str(tmp_path / "mean.obj"))
    assert len(trimesh.load(tmp_path / "mean.obj", process=False).faces) > 0


def test_infer_single_image_file(tiny_pipeline, tmp_path):
    img = next((tiny_pipeline.data / "Images").glob("car_imagenet/*.JPEG"))
    pred = tmp_path / "one.h5"
    run_cli("infer", str(img), "--model", str(tiny_pipeline.model), "-o", str(pred), "--category", "car",
            "--export", str(tmp_path / "mesh.obj"), "--overlay", str(tmp_path / "ov.png"), *FAST)
    art = read_artifact(pred, "predictions")
    assert art["category"] == ["car"] and (tmp_path / "mesh.obj").exists() and (tmp_path / "ov.png").exists()


def test_bad_inputs(tiny_pipeline, tmp_path):
    from ntdm_cli.cli.main import main

    def code(*args):
        with pytest.raises(SystemExit) as e:
            main(list(args))
        return e.value.code

    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    assert code("infer", str(bad), "--model", str(tiny_pipeline.model), "-o", str(tmp_path / "p.h5")) == 1
    img = next((tiny_pipeline.data / "Images").glob("car_imagenet/*.JPEG"))
    assert code("infer", str(img), "--model", str(tiny_pipeline.model), "--category", "sofa",
                "-o", str(tmp_path / "p.h5")) == 2
    deformer = next(tiny_pipeline.deformers.glob("*.h5"))
    assert code("infer", str(img), "--model", str(deformer), "-o", str(tmp_path / "p.h5")) == 1
    assert code("infer", str(img), "--model", str(tiny_pipeline.model), "--shard", "3/2") == 2
    assert not (tmp_path / "p.h5").exists()


def test_batched_images_match_one_at_a_time(tiny_pipeline):
    """Solving several images in one batch gives what solving each alone gives."""
    from ntdm_cli.infer.pipeline import infer_batch, infer_one, inputs_from_dataset

    model = load_model(tiny_pipeline.model)
    for d in model.deformers.values():
        d.requires_grad_(False)
    crop = tuple(int(x) for x in model.extra["crop_hw"].split(","))
    _, stream = inputs_from_dataset(tiny_pipeline.data, "val", ["car", "bus"], crop, limit=1)
    inputs = list(stream)
    assert len(inputs) == 2
    cfg = InferConfig(steps=6, azimuths=4, elevations=2, thetas=1, topk=2, early_stop_patience=10**6,
                      init_distance=float(model.extra["target_distance"]))
    together = infer_batch(inputs, model, cfg, "cpu", torch.Generator().manual_seed(0))
    alone = [infer_one(i, model, cfg, "cpu", torch.Generator().manual_seed(0)) for i in inputs]
    for a, b in zip(together, alone):
        assert a.category == b.category
        assert a.result.loss == pytest.approx(b.result.loss, abs=1e-5)
        assert a.viewpoint["azimuth"] == pytest.approx(b.viewpoint["azimuth"], abs=1e-4)
        assert len(a.result.topk) == len(b.result.topk) == 2
        assert a.result.evidence == pytest.approx(b.result.evidence, abs=1e-5)


def _tiny_model_and_cars(tiny_pipeline, limit: int):
    """The tiny model (deformers frozen), its crop size (H, W) and its first ``limit`` car val inputs."""
    from ntdm_cli.infer.pipeline import inputs_from_dataset

    model = load_model(tiny_pipeline.model)
    for d in model.deformers.values():
        d.requires_grad_(False)
    crop = tuple(int(x) for x in model.extra["crop_hw"].split(","))
    _, stream = inputs_from_dataset(tiny_pipeline.data, "val", ["car"], crop, limit=limit)
    return model, crop, list(stream)


def test_infer_pool_scores_on_pooled_features(tiny_pipeline):
    """infer.pool=2: every hypothesis is scored on the features average-pooled 2× and renormalised, at
    twice the backbone's stride, the answers and the annotation alike; a pool larger than the feature
    map is one clear error."""
    from ntdm_cli.infer.pipeline import annotation_hypothesis, batch_features, infer_batch
    from ntdm_cli.infer.solver import pooled_features
    from ntdm_cli.model.backbone import feature_stride

    model, crop, inputs = _tiny_model_and_cars(tiny_pipeline, 1)
    inputs[0].category = "car"  # known category: the answer is the car solve
    feats = torch.cat(batch_features(inputs, model, "cpu"))
    pooled = pooled_features(feats, 2)
    h, w = feats.shape[-2:]
    assert pooled.shape[-2:] == (math.ceil(h / 2), math.ceil(w / 2))
    assert torch.allclose(pooled.norm(dim=1), torch.ones_like(pooled[:, 0]), atol=1e-5)
    cfg = InferConfig(steps=4, azimuths=4, elevations=2, thetas=1, pool=2,
                      init_distance=float(model.extra["target_distance"]))
    pred = infer_batch(inputs, model, cfg, "cpu", torch.Generator().manual_seed(0), features=feats)[0]
    bank = model.bank.active()
    rc = RenderCompare(pooled[:1], model.deformers["car"], model.textures["car"], bank, cfg, model.bin_temperature,
                       (crop[1] / 2.0, crop[0] / 2.0), feature_stride(model.backbone) * 2,
                       prior=model.pose_priors["car"],
                       view=(model.view, model.view.log_probs(feats, model.categories.index("car"))))
    with torch.no_grad():
        assert float(rc.losses(pred.result.best)[0]) == pytest.approx(pred.result.loss, abs=1e-5)
        ann = annotation_hypothesis(inputs[0].annotation, model.deformers["car"].num_latents, 0, "cpu")
        assert float(rc.losses(ann)[0]) == pytest.approx(pred.annotated_loss, abs=1e-5)
    with pytest.raises(NtdmUsageError, match="infer.pool=64 is larger than"):
        infer_batch(inputs, model, InferConfig(pool=64, init_distance=5.0), "cpu", torch.Generator(), features=feats)
    with pytest.raises(NtdmUsageError, match="infer.pool must be ≥ 0"):
        InferConfig(pool=-1).validate()
    # pool 0: the model's zoom (the tiny model is unzoomed: no pooling)
    assert model.zoom == 1
    auto = infer_batch(inputs, model, dataclasses.replace(cfg, pool=0), "cpu", torch.Generator().manual_seed(0),
                       features=feats)[0]
    one = infer_batch(inputs, model, dataclasses.replace(cfg, pool=1), "cpu", torch.Generator().manual_seed(0),
                      features=feats)[0]
    assert auto.result.loss == one.result.loss


def test_refine_answers_brings_a_coarse_answer_closer(tiny_pipeline):
    """solver.refine_answers from an answer 6° off in azimuth and elevation (what a search on a
    coarser map leaves): on the noiseless full-resolution map it lowers the loss and comes closer."""
    from ntdm_cli.infer.solver import refine_answers

    truth = dict(azimuth=torch.tensor([2.2]), elevation=torch.tensor([0.25]), theta=torch.tensor([0.1]),
                 distance=torch.tensor([5.0]))
    cfg = InferConfig(steps=0, init_distance=5.0, polish_levels=3, polish_step_deg=15.0, final_steps=10)
    rc, hyp = _noiseless_scene(tiny_pipeline, 4, truth, cfg)
    start = hyp.detached()
    start.azimuth += math.radians(6)
    start.elevation -= math.radians(6)
    best, loss = refine_answers(rc, start, cfg)
    with torch.no_grad():
        assert float(loss) < float(rc.losses(start)[0]) and float(loss) == pytest.approx(float(rc.losses(best)[0]), abs=1e-6)
    Rt = pose_rotation(truth["azimuth"], truth["elevation"], truth["theta"])
    before = _rotation_error(pose_rotation(start.azimuth, start.elevation, start.theta), Rt).item()
    after = _rotation_error(pose_rotation(best.azimuth, best.elevation, best.theta), Rt).item()
    assert after < 0.5 * before


def test_final_steps_refine_the_answer_on_the_unpooled_map(tiny_pipeline):
    """infer.final_steps (coarse to fine): with pooled scoring the answer is refined once more on the
    unpooled features; it scores no worse there than the pooled search's answer, and the search's
    losses (and so the class) are unchanged."""
    from ntdm_cli.infer.pipeline import batch_features, infer_batch
    from ntdm_cli.model.backbone import feature_stride

    model, crop, inputs = _tiny_model_and_cars(tiny_pipeline, 2)
    feats = torch.cat(batch_features(inputs, model, "cpu"))
    cfg = InferConfig(steps=4, azimuths=4, elevations=2, thetas=1, pool=2, polish_levels=2,
                      init_distance=float(model.extra["target_distance"]))
    coarse = infer_batch(inputs, model, cfg, "cpu", torch.Generator().manual_seed(0), features=feats)
    fine = infer_batch(inputs, model, dataclasses.replace(cfg, final_steps=5), "cpu",
                       torch.Generator().manual_seed(0), features=feats)
    bank = model.bank.active()
    for i, (a, b) in enumerate(zip(coarse, fine)):
        assert a.category == b.category and a.result.loss == b.result.loss and a.category_losses == b.category_losses
        rc = RenderCompare(feats[i:i + 1], model.deformers[b.category], model.textures[b.category], bank, cfg,
                           model.bin_temperature, (crop[1] / 2.0, crop[0] / 2.0), feature_stride(model.backbone),
                           prior=model.pose_priors[b.category])
        hyp_a, hyp_b = a.result.best, b.result.best
        hyp_a.image = hyp_b.image = torch.zeros(1, dtype=torch.long)
        with torch.no_grad():
            assert float(rc.losses(hyp_b)[0]) <= float(rc.losses(hyp_a)[0]) + 1e-6
        assert "final" in b.timing and "final" not in a.timing
    with pytest.raises(NtdmUsageError, match="infer.final_steps"):
        InferConfig(final_steps=-1).validate()


def test_dataset_inputs_are_streamed(tiny_pipeline, tmp_path, monkeypatch):
    """run_infer pulls one batch of crops at a time from a lazy dataset stream and frees each crop once
    its prediction is written, so a large split does not sit in memory."""
    import ntdm_cli.infer.pipeline as pl

    model = load_model(tiny_pipeline.model)
    for d in model.deformers.values():
        d.requires_grad_(False)
    crop = tuple(int(x) for x in model.extra["crop_hw"].split(","))
    ds, stream = pl.inputs_from_dataset(tiny_pipeline.data, "val", ["car", "bus"], crop, limit=2)
    pulled = []

    def counted():
        for item in stream:
            pulled.append(item)
            yield item

    seen = []
    real = pl.infer_batch

    def spy(group, *args, **kwargs):
        seen.append(len(pulled))
        return real(group, *args, **kwargs)

    monkeypatch.setattr(pl, "infer_batch", spy)
    cfg = InferConfig(steps=2, azimuths=4, elevations=1, thetas=1, batch_images=1,
                      init_distance=float(model.extra["target_distance"]))
    preds = pl.run_infer(counted(), model, cfg, "cpu", tmp_path / "p.h5", overlay=tmp_path / "ov", total=len(ds))
    assert len(ds) == 4 and len(preds) == 4
    assert seen == [1, 2, 3, 4]  # never more than one batch ahead
    assert all(p.inp.crop is None for p in preds)
    assert len(list((tmp_path / "ov").glob("*.png"))) == 4
    assert len(read_artifact(tmp_path / "p.h5", "predictions")["image_id"]) == 4


def test_infer_shards_a_dataset(tiny_pipeline, tmp_path):
    ids = []
    for i in range(2):
        out = tmp_path / f"s{i}.h5"
        run_cli("infer", "--data", str(tiny_pipeline.data), "--split", "val", "--limit", "2", "--category", "car",
                "--model", str(tiny_pipeline.model), "-o", str(out), "--shard", f"{i}/2", *FAST)
        ids.append(read_artifact(out, "predictions")["image_id"])
    assert len(ids[0]) == 1 and len(ids[1]) == 1 and ids[0] != ids[1]


def test_coarse_to_fine_init_scores_fewer_hypotheses(tiny_pipeline, monkeypatch):
    """init_poses=N renders P + N·L grid hypotheses per image instead of P·L, and keeps the latent grid."""
    import ntdm_cli.infer.solver as sv

    model = load_model(tiny_pipeline.model)
    deformer = model.deformers["car"].requires_grad_(False)
    feats = F.normalize(torch.randn(2, 8, 6, 6, generator=torch.Generator().manual_seed(1)), dim=1)
    tex = NeuralTexture(3, 16, 8, generator=torch.Generator().manual_seed(2))
    bank = F.normalize(torch.randn(4, 8), dim=-1)
    counts = []
    real = sv.RenderCompare.losses

    def counting(self, hyp, return_maps=False):
        counts.append(len(hyp))
        return real(self, hyp, return_maps)

    monkeypatch.setattr(sv.RenderCompare, "losses", counting)
    for n in (0, 3):
        cfg = InferConfig(steps=0, azimuths=6, elevations=2, thetas=1, init_distance=5.0, init_poses=n, score_chunk=10**6)
        rc = sv.RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (24.0, 24.0))
        counts.clear()
        res = sv.solve_batch(rc, cfg, torch.Generator().manual_seed(0))
        L = deformer.num_latents + 1
        assert len(res) == 2
        assert sum(counts) == (2 * 12 * L if n == 0 else 2 * 12 + 2 * n * L)
    with pytest.raises(Exception):
        InferConfig(init_poses=-1).validate()


def test_bank_centres_is_a_compact_clutter_model():
    from ntdm_cli.infer.solver import bank_centres

    g = torch.Generator().manual_seed(0)
    # three tight clusters of unit features
    means = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    bank = F.normalize(means.repeat_interleave(50, 0) + 0.05 * torch.randn(150, 8, generator=g), dim=-1)
    c = bank_centres(bank, 3)
    assert c.shape == (3, 8) and torch.allclose(c.norm(dim=1), torch.ones(3), atol=1e-5)
    assert (c @ means.T).amax(0).min() > 0.99  # each true cluster found
    assert bank_centres(bank, 0) is bank and bank_centres(bank, 500) is bank


def test_pooled_scorer_matches_a_coarser_backbone():
    """RenderCompare.pooled(2) renders at twice the stride on 2×-pooled features: a silhouette of the
    same size in crop pixels, a quarter of the cells; losses stay in [0, 2]."""
    from ntdm_cli.geometry.template import make_template
    from ntdm_cli.geometry.deformer import Deformer

    torch.manual_seed(0)
    deformer = Deformer(make_template(2), num_latents=2).requires_grad_(False)
    tex = NeuralTexture(3, 16, 8, generator=torch.Generator().manual_seed(0))
    tex.counts += 1
    cfg = InferConfig(init_distance=5.0)
    bank = F.normalize(torch.randn(4, 8), dim=-1)
    feats = F.normalize(torch.randn(1, 8, 32, 32), dim=1)
    rc = RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (64.0, 64.0), 4)
    coarse = rc.pooled(2)
    assert coarse.f.shape == (1, 8, 16, 16) and coarse.stride == 8.0 and rc.pooled(1) is rc
    assert rc.pooled(3).f.shape == (1, 8, 11, 11)  # the partial last cell is kept
    with pytest.raises(NtdmUsageError, match="grid_pool=64 is larger than the 32×32 feature map"):
        rc.pooled(64)
    assert torch.allclose(coarse.f.norm(dim=1), torch.ones(1, 16, 16), atol=1e-5)
    hyp = Hypotheses(torch.tensor([0.5]), torch.tensor([0.2]), torch.tensor([0.0]), torch.tensor([5.0]),
                     torch.full((1, 2), 0.5), torch.zeros(1, 3))
    _, fine_mask, _ = rc.losses(hyp, return_maps=True)
    loss, coarse_mask, _ = coarse.losses(hyp, return_maps=True)
    assert 0 <= float(loss) <= 2
    # the same silhouette: its area in crop pixels agrees within the border cells
    fine_area, coarse_area = fine_mask.sum() * 16, coarse_mask.sum() * 64
    assert abs(float(coarse_area) / float(fine_area) - 1) < 0.25


@pytest.mark.parametrize("no_background", [False, True])
def test_losses_on_covered_pixels_equal_the_full_map_formula(tiny_pipeline, no_background):
    """RenderCompare.losses (only covered pixels rendered and compared) equals eq. 10 on full maps:
    score = max(f·rendered, bg) on the silhouette and bg elsewhere (f·rendered without a background
    model), loss = 1 − mean score; the same maps and the same gradients w.r.t. every pose parameter."""
    model = load_model(tiny_pipeline.model)
    deformer = model.deformers["car"].requires_grad_(False)
    g = torch.Generator().manual_seed(0)
    tex = NeuralTexture(7, 32, 16, generator=g)
    B, h, w = 2, 16, 16
    feats = F.normalize(torch.randn(B, 16, h, w, generator=g), dim=1)
    bank = F.normalize(torch.randn(8, 16, generator=g), dim=-1)
    cfg = InferConfig(init_distance=5.0, no_background=no_background)
    rc = RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (64.0, 64.0), STRIDE)
    n = 5
    make = lambda: Hypotheses(torch.tensor([0.3, 1.2, 2.5, 4.0, 5.5]), torch.tensor([0.1, 0.3, -0.1, 0.2, 0.0]),
                              torch.tensor([0.0, 0.1, -0.1, 0.0, 0.2]), torch.tensor([5.0, 4.5, 6.0, 5.0, 60.0]),
                              deformer.latents[[0, 1, 0, 1, 0]].float().clone(), torch.zeros(n, 3),
                              image=torch.tensor([0, 1, 1, 0, 1]))
    grads = {}
    for name in ("covered", "full"):
        hyp = make()
        params = [hyp.azimuth, hyp.elevation, hyp.theta, hyp.distance, hyp.latent, hyp.log_scale]
        for p in params:
            p.requires_grad_(True)
        if name == "covered":
            loss, inside, fg = rc.losses(hyp, return_maps=True)
        else:
            surf = rasterize_surface(rc.verts(hyp), rc.template.faces, rc.template.verts_uvs, rc.template.faces_uvs,
                                     rc.viewpoint(hyp), (h, w), rc.stride, 7, 5.0)
            rendered = render_features(surf, rc.template.verts_uvs, rc.template.faces_uvs, rc.theta)
            fg_score = (rendered * feats[hyp.image]).sum(1)
            inside = surf.mask
            bg = torch.zeros_like(fg_score) if no_background else rc.bg[hyp.image]
            fg = inside if no_background else inside & (fg_score > bg)
            loss = 1 - torch.where(fg, fg_score, bg).mean((1, 2))
        loss.sum().backward()
        grads[name] = (loss.detach(), inside, fg, [p.grad.clone() for p in params])
    (la, ia, fa, ga), (lb, ib, fb, gb) = grads["covered"], grads["full"]
    assert ia[:4].sum() > 0 and ia[4].sum() < ia[0].sum()  # the far hypothesis covers little
    torch.testing.assert_close(la, lb, rtol=1e-5, atol=1e-6)
    assert torch.equal(ia, ib) and torch.equal(fa, fb)
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)


def test_project_simplex_is_the_euclidean_projection():
    """Each row lands on the simplex and satisfies the projection's optimality conditions: p = max(z − τ, 0)
    for one τ per row (z − p = τ where p > 0, z ≤ τ where p = 0); points already on it stay put."""
    z = torch.randn(64, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2
    p = project_simplex(z)
    assert torch.allclose(p.sum(1), torch.ones(64, dtype=torch.float64)) and bool((p >= 0).all())
    for zi, pi in zip(z, p):
        support = pi > 0
        tau = (zi - pi)[support]
        assert float(tau.max() - tau.min()) < 1e-9
        assert bool((zi[~support] <= tau[0] + 1e-9).all())
    assert torch.allclose(project_simplex(p), p)


def test_refine_keeps_the_shape_plausible(tiny_pipeline):
    """With infer.scale_bound and latent_simplex the optimised hypotheses stay inside the plausible set
    after Adam (whose steps of lr = 0.05 leave a bound of 0.02 at once) and the compass search,
    started 20° off."""
    truth = dict(azimuth=torch.tensor([2.2]), elevation=torch.tensor([0.25]), theta=torch.tensor([0.1]),
                 distance=torch.tensor([5.0]))
    cfg = InferConfig(steps=15, init_distance=5.0, scale_bound=0.02, latent_simplex=True,
                      polish_levels=2, early_stop_patience=10**6)
    rc, hyp = _noiseless_scene(tiny_pipeline, STRIDE, truth, cfg)
    start = hyp.detached()
    start.azimuth += math.radians(20)
    with torch.no_grad():
        loss0 = rc.losses(start)
    best, loss, _ = refine(rc, start, loss0.clone(), cfg)
    assert float(loss) < float(loss0)
    assert float(best.log_scale.abs().max()) <= 0.02 + 1e-6
    assert bool((best.latent >= 0).all()) and float(best.latent.sum()) == pytest.approx(1.0, abs=1e-5)
    assert float(loss) == pytest.approx(float(rc.losses(best)), abs=1e-6)


@pytest.mark.parametrize("key,value", [("scale_bound", -0.1), ("scale_bound", float("nan")),
                                       ("polish_levels", -1), ("polish_step_deg", 0.0), ("pose_prior", -1.0),
                                       ("pose_prior_outliers", 0.0), ("pose_prior_outliers", 1.0)])
def test_search_options_are_validated(key, value):
    with pytest.raises(NtdmUsageError, match=f"infer.{key}"):
        InferConfig(**{key: value}).validate()


@pytest.mark.parametrize("value", [-1.0, 180.0, float("nan")])
def test_separation_is_validated(value):
    with pytest.raises(NtdmUsageError, match="infer.separation_deg"):
        InferConfig(separation_deg=value).validate()


def test_separated_topk_picks_distinct_views():
    """Greedy: the lowest loss, then the lowest at least the separation away from every pick; when
    none is that far, the lowest left; the first ``diverse`` picks only are separated."""
    losses = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.4, 0.3, 0.2, 0.1]])
    az = torch.tensor([[0.0, 0.2, 3.1, 0.1, 1.5], [0.0, 0.2, 3.1, 0.1, 1.5]])
    el = torch.zeros(2, 5)
    sep = math.radians(60)
    assert separated_topk(losses, az, el, 3, sep).tolist() == [[0, 2, 4], [4, 3, 2]]
    assert separated_topk(losses, az, el, 3, 0.0).tolist() == [[0, 1, 2], [4, 3, 2]]
    assert separated_topk(losses, az, el, 4, sep, diverse=2).tolist() == [[0, 2, 1, 3], [4, 3, 2, 1]]
    assert separated_topk(losses, az, el, 5, sep).tolist()[0] == [0, 2, 4, 1, 3]  # runs out of far ones
    assert float(view_angle(torch.tensor(0.0), torch.tensor(math.pi / 2), torch.tensor(2.0), torch.tensor(math.pi / 2))) \
        == pytest.approx(0.0, abs=1e-3)  # from the pole every azimuth is one view


@pytest.mark.parametrize("init_poses", [0, 6])
def test_solver_starts_are_separated(tiny_pipeline, init_poses):
    """With infer.separation_deg the topk starts handed to Adam view the object from directions at
    least that far apart (steps 0: the starts are the answers), with and without the shortlist; with 0
    the best two grid hypotheses are neighbours."""
    truth = dict(azimuth=torch.tensor([2.2]), elevation=torch.tensor([0.25]), theta=torch.tensor([0.1]),
                 distance=torch.tensor([5.0]))
    angles = {}
    for sep in (0.0, 60.0):
        cfg = InferConfig(steps=0, azimuths=12, elevations=4, thetas=3, init_distance=5.0, topk=3,
                          init_poses=init_poses, separation_deg=sep)
        rc, _ = _noiseless_scene(tiny_pipeline, STRIDE, truth, cfg)
        t = solve(rc, cfg, torch.Generator().manual_seed(0)).topk
        assert len(t) == 3
        angles[sep] = [float(view_angle(t.azimuth[i], t.elevation[i], t.azimuth[j], t.elevation[j]))
                       for i in range(3) for j in range(i + 1, 3)]
    assert min(angles[60.0]) >= math.radians(60) - 1e-4
    assert min(angles[0.0]) < math.radians(60)


def test_pose_prior_adds_its_negative_log_density_to_the_loss(tiny_pipeline):
    """With a viewpoint prior the solver's loss is the evidence's loss plus weight · temperature ·
    nll / cells of the scored map, also on a pooled copy (the grid) and with gradients to elevation
    and theta; weight 0 scores the evidence alone. On features that favour no pose (all ties), the
    pose at the prior's mean wins over the same pose rolled 30°."""
    from ntdm_cli.model.pose_prior import PosePrior

    deformer, tex, feats, bank = random_scorer_scene(load_model(tiny_pipeline.model))
    prior = PosePrior((0.15, 0.15), (0.0, 0.05), 0.07)
    make = lambda th=(0.0, 0.52, -0.3): Hypotheses(torch.tensor([0.3, 0.3, 2.0]), torch.tensor([0.15, 0.15, 0.6]), torch.tensor(th),
                              torch.tensor([5.0, 5.0, 5.0]), deformer.latents[[0, 0, 1]].float().clone(), torch.zeros(3, 3))
    plain = RenderCompare(feats, deformer, tex, bank, InferConfig(init_distance=5.0), 5.0, (64.0, 64.0), STRIDE)
    cfg = InferConfig(init_distance=5.0, pose_prior=2.0, pose_prior_outliers=0.2)
    rc = RenderCompare(feats, deformer, tex, bank, cfg, 5.0, (64.0, 64.0), STRIDE, prior=prior)
    hyp = make()
    expected = plain.losses(hyp) + 2.0 * 0.07 / 256 * prior.nll(hyp.elevation, hyp.theta, 0.2)
    torch.testing.assert_close(rc.losses(hyp), expected)
    coarse, coarse_plain = rc.pooled(2), plain.pooled(2)
    torch.testing.assert_close(coarse.losses(hyp), coarse_plain.losses(hyp) + 2.0 * 0.07 / 256 * prior.nll(hyp.elevation, hyp.theta, 0.2))
    off = RenderCompare(feats, deformer, tex, bank, dataclasses.replace(cfg, pose_prior=0.0), 5.0, (64.0, 64.0), STRIDE,
                        prior=prior)
    torch.testing.assert_close(off.losses(hyp), plain.losses(hyp))
    grads = []
    for scorer in (rc, plain):
        hyp = make((0.0, 0.08, -0.06))  # within two standard deviations: far out the robust prior is flat
        hyp.theta.requires_grad_(True)
        grads.append(torch.autograd.grad(scorer.losses(hyp).sum(), hyp.theta)[0])
    pull = grads[0] - grads[1]  # the prior's part: towards its mean theta 0
    assert float(pull[0]) == pytest.approx(0.0, abs=1e-9) and float(pull[1]) > 0 and float(pull[2]) < 0
    ties = RenderCompare(torch.zeros(1, 16, 16, 16), deformer, tex, bank, cfg, 5.0, (64.0, 64.0), STRIDE, prior=prior)
    loss = ties.losses(make())
    assert float(loss[0]) < float(loss[1])


def test_pose_prior_density():
    """PosePrior.fit takes the annotations' mean and standard deviation (theta wrapped, std floored);
    nll is 0 at the mean, grows with the distance from it, is bounded by the outlier share and is
    periodic in theta; its gradient is checked numerically."""
    from ntdm_cli.model.pose_prior import MIN_STD, PosePrior, priors_from_json, priors_to_json

    e = np.array([0.1, 0.2, 0.3, 0.4])
    t = np.array([2 * math.pi - 0.02, 0.02, 0.0, 0.0])
    p = PosePrior.fit(e, t, 0.07)
    assert p.elevation == pytest.approx((e.mean(), e.std()))
    assert p.theta[0] == pytest.approx(0.0, abs=1e-12) and p.theta[1] == MIN_STD  # wrapped, then floored
    assert priors_from_json(priors_to_json({"car": p})) == {"car": p} and priors_from_json(None) == {}
    el = torch.tensor([0.25, 0.35, 0.6, 1.4, 0.25], dtype=torch.float64)
    th = torch.tensor([0.0, 0.0, 0.0, 0.0, 2 * math.pi], dtype=torch.float64)
    nll = p.nll(el, th, 0.1)
    assert float(nll[0]) == pytest.approx(0.0, abs=1e-12) and float(nll[4]) == pytest.approx(0.0, abs=1e-9)
    assert 0 < nll[1] < nll[2] < nll[3]
    bound = sum(-math.log(0.1 * sd * math.sqrt(2 * math.pi) / span) for sd, span in ((p.elevation[1], math.pi),
                                                                                   (p.theta[1], 2 * math.pi)))
    far = p.nll(torch.tensor([1.5], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64), 0.1)
    assert 0.5 * bound < float(far) <= bound
    x = (el[:4].clone().requires_grad_(True), (th[:4] + 0.03).requires_grad_(True))
    assert torch.autograd.gradcheck(lambda a, b: p.nll(a, b, 0.1), x)
    with pytest.raises(ValueError):
        PosePrior.fit([], [], 0.07)


def test_trained_model_stores_the_pose_prior_of_its_training_annotations(tiny_pipeline):
    """train-textures stores each category's prior: the robust Gaussian of its training images'
    elevations and thetas (the calibration split left out), weighed by the training temperature."""
    from ntdm_cli.model.pose_prior import PosePrior
    from ntdm_cli.train.data import TrainingSet

    model = load_model(tiny_pipeline.model)
    priors = model.pose_priors
    assert sorted(priors) == model.categories
    ds = TrainingSet(tiny_pipeline.data, model.categories, "train")
    train = ds.split(0.1).train
    for c in model.categories:
        vps = [ds.dataset.entries[i].record_object.viewpoint for i in train if ds.dataset.entries[i].category == c]
        want = PosePrior.fit([v["elevation"] for v in vps], [v["theta"] for v in vps], 0.07)
        assert priors[c].elevation == pytest.approx(want.elevation) and priors[c].theta == pytest.approx(want.theta)
        assert priors[c].temperature == pytest.approx(0.07)
