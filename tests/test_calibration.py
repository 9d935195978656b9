"""The distance calibration: the log-ratio of annotated to solved distance, its fit, the factor the
model stores, and inference applying it to the answer only."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from ntdm_cli.calibration import distance_log_ratio, fit_distance_factor
from ntdm_cli.errors import ArtifactError
from ntdm_cli.infer.pipeline import Annotation
from ntdm_cli.infer.solver import Hypotheses, InferConfig
from ntdm_cli.model.io import load_model, save_model


def _prediction(category: str, azimuth: float, distance: float, annotated: Annotation | None):
    """What distance_log_ratio reads of an infer.pipeline.Prediction: the class, the answer, the input's
    annotation."""
    one = lambda x: torch.tensor([x], dtype=torch.float32)  # noqa: E731
    best = Hypotheses(one(azimuth), one(0.2), one(0.0), one(distance), torch.tensor([[1.0, 0.0]]), torch.zeros(1, 3))
    return SimpleNamespace(category=category, result=SimpleNamespace(best=best),
                           inp=SimpleNamespace(annotation=annotated))


def test_distance_log_ratio_uses_right_answers_only():
    """log(annotated / solved distance) for an answer of the right class within π/6 of the annotation;
    NaN for a wrong class, a pose 40° off, or no annotation."""
    ann = Annotation("car", azimuth=1.0, elevation=0.2, theta=0.0, distance=5.0, cad_index=0)
    assert distance_log_ratio(_prediction("car", 1.1, 4.8, ann)) == pytest.approx(math.log(5.0 / 4.8), rel=1e-6)
    assert math.isnan(distance_log_ratio(_prediction("bus", 1.0, 4.8, ann)))
    assert math.isnan(distance_log_ratio(_prediction("car", 1.0 + math.radians(40), 4.8, ann)))
    assert math.isnan(distance_log_ratio(_prediction("car", 1.0, 4.8, None)))


def test_fit_distance_factor_is_the_trimmed_mean_ratio():
    """exp of the trimmed mean of the finite log-ratios (a stray one cut off); NaNs are not used;
    fewer than three give 1."""
    r = np.log([1.02, 1.05, 0.99, 1.04, 1.03, 1.01, 1.06, 1.00, 1.04, 1.80])
    fit = fit_distance_factor(np.concatenate([r, [np.nan, np.nan]]))
    assert fit["distance_factor"] == pytest.approx(np.exp(np.log([1.02, 1.05, 1.04, 1.03, 1.01, 1.06, 1.00, 1.04]).mean()))
    assert int(fit["distance_images"]) == 10 and fit["distance_log_ratios"].shape == (12,)
    assert fit_distance_factor(r, trim=0.0)["distance_factor"] > fit["distance_factor"]  # the stray 1.8 pulls
    few = fit_distance_factor([math.log(1.1), math.log(1.2), float("nan")])
    assert few["distance_factor"] == 1.0 and int(few["distance_images"]) == 2


def test_training_stores_the_distance_calibration(tiny_pipeline):
    """train-textures fits the factor from the class calibration's solves: one log-ratio per solved
    image (NaN where the answer was wrong), a factor within the load's bounds."""
    cal = load_model(tiny_pipeline.model).calibration
    assert cal["distance_log_ratios"].shape == cal["class_labels"].shape
    used = np.isfinite(cal["distance_log_ratios"]).sum()
    assert int(cal["distance_images"]) == used
    assert 0.5 <= float(cal["distance_factor"]) <= 2.0


def test_inference_applies_the_factor_to_the_answer(tiny_pipeline, tmp_path):
    """infer.distance_calibrated multiplies the answer's distance by the model's factor (and nothing
    else: pose, losses and class are the search's); False, or a model without a factor, keeps the
    solver's distance. A factor outside [0.5, 2] is a damaged artifact."""
    from ntdm_cli.infer.pipeline import batch_features, infer_batch, inputs_from_dataset

    model = load_model(tiny_pipeline.model)
    for d in model.deformers.values():
        d.requires_grad_(False)
    crop = tuple(int(x) for x in model.extra["crop_hw"].split(","))
    _, stream = inputs_from_dataset(tiny_pipeline.data, "val", ["car"], crop, limit=2)
    inputs = list(stream)
    feats = torch.cat(batch_features(inputs, model, "cpu"))
    cfg = InferConfig(steps=3, azimuths=4, elevations=2, thetas=1, init_distance=float(model.extra["target_distance"]))

    def solve(m, c):
        return infer_batch(inputs, m, c, "cpu", torch.Generator().manual_seed(0), features=feats)

    model.calibration["distance_factor"] = np.float64(1.0)
    plain = solve(model, cfg)
    model.calibration["distance_factor"] = np.float64(1.1)
    scaled = solve(model, cfg)
    off = solve(model, dataclasses.replace(cfg, distance_calibrated=False))
    for a, b, c in zip(plain, scaled, off):
        assert a.category == b.category and a.result.loss == b.result.loss
        assert b.viewpoint["azimuth"] == pytest.approx(a.viewpoint["azimuth"])
        assert b.viewpoint["distance"] == pytest.approx(1.1 * a.viewpoint["distance"], rel=1e-5)
        assert c.viewpoint["distance"] == pytest.approx(a.viewpoint["distance"], rel=1e-6)
        assert b.crop_amodal.sum() < a.crop_amodal.sum()  # farther: a smaller silhouette
    model.calibration["distance_factor"] = np.float64(3.0)
    bad = tmp_path / "bad.h5"
    save_model(bad, model)
    with pytest.raises(ArtifactError, match="distance_factor"):
        load_model(bad)
