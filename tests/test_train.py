"""train-textures on a tiny synthetic set: loss, artifact, resume, torchrun, errors."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ntdm_cli.artifacts import read_artifact
from ntdm_cli.model.io import load_model
from tests.conftest import TINY_TRAIN, run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_model_artifact_reads_back(tiny_pipeline):
    model = load_model(tiny_pipeline.model)
    assert model.categories == ["bus", "car"]
    assert model.texture_size == 32 and model.feature_dim == 16 and model.num_bins == 7
    for c in model.categories:
        t = model.textures[c]
        assert t.theta.shape == (7, 32, 32, 16)
        assert torch.allclose(t.theta.norm(dim=-1), torch.ones(()), atol=1e-4)
        assert t.counts.sum() > 0  # observed texels exist
    art = read_artifact(tiny_pipeline.model, "model")
    assert art.attrs["crop_hw"] and "train" in art.config
    curves = art["curves"]
    assert len(curves["loss"]) == 3 and np.isfinite(curves["loss"]).all()
    assert art["calibration/confusion"].shape == (2, 2)
    feats = model.backbone.eval()(torch.rand(1, 3, 64, 64))
    assert feats.shape == (1, 16, 8, 8)
    assert torch.allclose(feats.norm(dim=1), torch.ones(()), atol=1e-4)


def test_loss_decreases(tiny_pipeline):
    loss = read_artifact(tiny_pipeline.model, "model")["curves/loss"]
    assert len(loss) == 3 and loss[-1] < loss[0]


def test_resume_reproduces_uninterrupted_run(tiny_pipeline, tmp_path):
    """1 epoch + resume for 1 more equals 2 epochs straight (fixed seed), also with the refit after the
    last epoch (the checkpoints keep the momentum textures it starts from)."""
    common = ["--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers), *TINY_TRAIN,
              "--set", "train.refit_textures=true"]
    straight = tmp_path / "straight.h5"
    run_cli("train-textures", *common, "-o", str(straight), "--epochs", "2")
    first = tmp_path / "first.h5"
    run_cli("train-textures", *common, "-o", str(first), "--epochs", "1")
    resumed = tmp_path / "resumed.h5"
    run_cli("train-textures", *common, "-o", str(resumed), "--epochs", "2", "--resume", str(first) + ".ckpt.h5")
    a, b = load_model(straight), load_model(resumed)
    for k, v in a.backbone.state_dict().items():
        torch.testing.assert_close(v, b.backbone.state_dict()[k], rtol=1e-5, atol=1e-6)
    for c in a.categories:
        torch.testing.assert_close(a.textures[c].theta, b.textures[c].theta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(read_artifact(resumed, "model")["curves/loss"],
                               read_artifact(straight, "model")["curves/loss"], rtol=1e-5)


def test_torchrun_two_processes(tiny_pipeline, tmp_path):
    out = tmp_path / "ddp.h5"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NTDM_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "ntdm_cli", "--device", "cpu", "train-textures", "--data", str(tiny_pipeline.data),
           "--deformers", str(tiny_pipeline.deformers), "-o", str(out), "--epochs", "1", *TINY_TRAIN,
           "--set", "infer.batch_images=1",  # images solved one by one, as in the single-process check below
           "--set", "train.refit_textures=true"]  # each process refits its share; the sums and bank are joined
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert out.exists() and not (tmp_path / "ddp.h5.tmp").exists()
    assert r.stdout.count("wrote") == 1  # only rank 0 reports and writes
    model = load_model(out)
    assert model.categories == ["bus", "car"]
    # the class calibration: each process solved one of the two calibration images, gathered in order
    cal = model.calibration
    assert cal["class_losses"].shape == (2, 2) and np.isfinite(cal["class_losses"]).all()
    assert cal["class_labels"].tolist() == [0, 1]
    single = tmp_path / "single.h5"  # the same checkpoint calibrated by one process: the same rows
    run_cli("train-textures", "--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers),
            "-o", str(single), "--epochs", "1", "--resume", str(out) + ".ckpt.h5", *TINY_TRAIN,
            "--set", "infer.batch_images=1", "--set", "train.refit_textures=true")
    one = load_model(single).calibration
    for key in ("class_losses", "class_background_loss", "distance_log_ratios"):
        np.testing.assert_allclose(one[key], cal[key], rtol=1e-5)
    two, single_model = load_model(out), load_model(single)  # the refit: the same textures and bank
    for c in two.categories:
        torch.testing.assert_close(two.textures[c].theta, single_model.textures[c].theta, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(two.bank.features, single_model.bank.features, rtol=1e-5, atol=1e-5)


def test_bad_inputs(tiny_pipeline, tmp_path):
    from ntdm_cli.cli.main import main

    def code(*args):
        with pytest.raises(SystemExit) as e:
            main(list(args))
        return e.value.code

    base = ["train-textures", "--data", str(tiny_pipeline.data), "-o", str(tmp_path / "m.h5")]
    assert code(*base, "--deformers", str(tmp_path / "none*.h5")) == 2
    assert code(*base, "--deformers", str(tiny_pipeline.model)) == 1  # a model is not a deformer
    assert code(*base, "--deformers", str(tiny_pipeline.deformers), "--set", "train.momentum=2") == 2
    assert code("train-textures", "--data", str(tmp_path / "nowhere"), "--deformers", str(tiny_pipeline.deformers),
                "-o", str(tmp_path / "m.h5")) == 2
    assert not (tmp_path / "m.h5").exists()


def test_occluder_augmentation_trains(tiny_pipeline, tmp_path):
    """train.occlude=1: every image occluded; training runs, is deterministic and differs from the plain run."""
    from ntdm_cli.cli.main import main

    common = ["--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers), *TINY_TRAIN,
              "--epochs", "1"]
    runs = {}
    for name, extra in (("occ_a", ["--set", "train.occlude=1.0"]), ("occ_b", ["--set", "train.occlude=1.0"]),
                        ("plain", [])):
        runs[name] = tmp_path / f"{name}.h5"
        run_cli("train-textures", *common, "-o", str(runs[name]), *extra)
    a, b, plain = (load_model(runs[k]) for k in ("occ_a", "occ_b", "plain"))
    assert np.isfinite(read_artifact(runs["occ_a"], "model")["curves/loss"]).all()
    for c in a.categories:
        torch.testing.assert_close(a.textures[c].theta, b.textures[c].theta)
        assert not torch.allclose(a.textures[c].theta, plain.textures[c].theta)
    with pytest.raises(SystemExit) as e:
        main(["train-textures", *common, "-o", str(tmp_path / "bad.h5"), "--set", "train.occlude=1.5"])
    assert e.value.code == 2 and not (tmp_path / "bad.h5").exists()
    with pytest.raises(SystemExit) as e:
        main(["train-textures", *common, "-o", str(tmp_path / "bad.h5"), "--set", "train.occluder_variants=-1"])
    assert e.value.code == 2 and not (tmp_path / "bad.h5").exists()


def test_precision_options_train_alike(tiny_pipeline, tmp_path):
    """train.amp=off (float32) and train.amp=bf16 both train; the losses of their first epoch agree to
    a few percent and the stored backbones give features pointing the same way (the model artifact
    does not depend on the precision it was trained in)."""
    common = ["--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers), *TINY_TRAIN,
              "--epochs", "1", "--set", "train.class_calib_images=0"]
    out = {}
    for amp in ("off", "bf16"):
        out[amp] = tmp_path / f"{amp}.h5"
        run_cli("train-textures", *common, "-o", str(out[amp]), "--set", f"train.amp={amp}")
        assert read_artifact(out[amp], "model").config["train"]["amp"] == amp
    loss = {k: float(read_artifact(v, "model")["curves/loss"][0]) for k, v in out.items()}
    assert abs(loss["bf16"] - loss["off"]) < 0.05 * abs(loss["off"]), loss
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        f = {k: load_model(v).backbone.eval()(x) for k, v in out.items()}
    assert (f["off"] * f["bf16"]).sum(1).mean() > 0.9


def test_pretrained_effnet_trains_with_a_cached_frozen_body(tiny_pipeline, tmp_path):
    """effnet-lite0 from its ImageNet checkpoint, body frozen (outputs cached once), head and textures
    trained: the loss falls every epoch, the stored body equals the checkpoint's, and the model
    artifact reads back as a working backbone."""
    from ntdm_cli.model.backbone import make_backbone

    out = tmp_path / "effnet.h5"
    run_cli("train-textures", "--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers),
            "-o", str(out), "--epochs", "3", *TINY_TRAIN, "--set", "train.backbone=effnet-lite0",
            "--set", "train.class_calib_images=0", "--set", "train.lr=1e-3",  # the presets' rate; 5e-3 can overshoot in epoch 3
            "--set", "train.calib_every=10")  # ω fixed: the cross-category term stays comparable across epochs
    loss = read_artifact(out, "model")["curves/loss"]
    assert len(loss) == 3 and loss[2] < loss[1] < loss[0], loss
    model = load_model(out)
    ref = make_backbone("effnet-lite0", 16)
    ref.load_pretrained()
    trained = model.backbone.state_dict()
    for k, v in ref.state_dict().items():
        if not k.startswith(("fuse", "proj")):
            assert torch.equal(trained[k], v), k  # frozen: weights and BatchNorm statistics as pretrained
    f = model.backbone(torch.rand(1, 3, 64, 64))
    assert f.shape == (1, 16, 8, 8)


@pytest.mark.parametrize("variants", [0, 1])
def test_pretrained_effnet_with_occluders_and_a_cached_body(tiny_pipeline, tmp_path, variants):
    """train.occlude with a frozen, cached body, occluders pasted at each step (variants 0: the
    cache keeps the images and occluded batches run the body) or cached once (variants 1): training
    proceeds (finite losses, textures observed)."""
    out = tmp_path / "effnet-occ.h5"
    run_cli("train-textures", "--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers),
            "-o", str(out), "--epochs", "2", *TINY_TRAIN, "--set", "train.backbone=effnet-lite0",
            "--set", "train.class_calib_images=0", "--set", "train.occlude=0.5",
            "--set", f"train.occluder_variants={variants}")
    loss = read_artifact(out, "model")["curves/loss"]
    assert len(loss) == 2 and np.isfinite(loss).all()
    model = load_model(out)
    assert all(model.textures[c].counts.sum() > 0 for c in model.categories)


def test_body_cache_keeps_occluded_variants(tiny_pipeline):
    """BodyCache with occlude > 0 and K variants: each image gets K, the body's maps of the pasted
    image (float16) with its occluder's cells; a batch shows one with probability occlude."""
    from ntdm_cli.model.backbone import make_backbone
    from ntdm_cli.train.augment import occluder_cells, paste_occluders
    from ntdm_cli.train.cache import BodyCache
    from ntdm_cli.train.data import TrainingSet

    backbone = make_backbone("effnet-lite0", 8)
    backbone.load_pretrained()
    backbone.freeze(-1)
    dataset = TrainingSet(tiny_pipeline.data, sorted(p.stem for p in tiny_pipeline.deformers.glob("*.h5")), "train")
    rows = list(range(len(dataset)))
    plain = BodyCache(backbone, dataset, rows, 4, "cpu")
    live = BodyCache(backbone, dataset, rows, 4, "cpu", occlude=1.0, variants=0)
    cache = BodyCache(backbone, dataset, rows, 4, "cpu", occlude=1.0, variants=1, occlude_max=0.7, upsample=2)
    assert not plain.occluded and not plain.images and not live.occluded and len(live.images) == len(rows)
    assert len(cache.occluded) >= len(rows) // 2 and not cache.images
    assert all(len(v) == 1 for v in cache.occluded.values())
    i = next(iter(cache.occluded))
    o8, o16, hidden, background, plan = cache.occluded[i][0]
    assert plan is None  # no planner given
    assert o8.dtype == torch.float16 and o8.shape == cache.maps[i][0].shape and o16.shape == cache.maps[i][1].shape
    assert hidden.shape == (2 * o8.shape[-2], 2 * o8.shape[-1]) and background.shape == o8.shape[-2:]
    assert hidden.any()
    assert not torch.allclose(o8.float(), cache.maps[i][0], atol=1e-2)  # the pasted image went through the body
    # the variant is the body of the image with the occluder the cache drew: redo it from the same batch
    batches = dataset.batches(rows, 4, torch.Generator().manual_seed(0))
    first = batches[0]
    images = torch.stack([dataset[j]["image"] for j in first])
    masks = torch.stack([dataset[j]["mask"] for j in first])
    pasted, occ, occ_bg = paste_occluders(images, masks, 1.0, 0.7, torch.Generator().manual_seed(1))
    k = int(occ.flatten(1).any(1).nonzero()[0])
    with torch.no_grad():
        s8, _ = backbone.prefix(pasted[k:k + 1])
    ref_hidden, ref_bg = occluder_cells(occ[k:k + 1], occ_bg[k:k + 1], s8.shape[-2:], 2)
    variant = cache.occluded[first[k]][0]
    assert torch.allclose(variant[0].float(), s8[0], atol=1e-2, rtol=1e-2)
    assert torch.equal(variant[2], ref_hidden[0]) and torch.equal(variant[3], ref_bg[0])
    # probability 1: every variant shown; probability 0 (the plain cache): never, and no occluder keys
    batch = cache.batch(first, torch.Generator().manual_seed(5))
    assert torch.equal(batch["body"][0][k], variant[0].float()) and torch.equal(batch["hidden"][k], variant[2])
    assert "image" not in batch and "image" in live.batch(first)  # without variants the step pastes its own
    plain_batch = plain.batch(first, torch.Generator().manual_seed(5))
    assert "hidden" not in plain_batch and torch.equal(plain_batch["body"][0][k], plain.maps[first[k]][0])
    cache.occlude = 0.5
    shown = sum("hidden" in cache.batch([i], torch.Generator().manual_seed(s)) for s in range(40))
    assert 8 <= shown <= 32  # about half of the epochs
    two = BodyCache(backbone, dataset, rows, 4, "cpu", occlude=1.0, variants=2, upsample=2)
    a, b = two.occluded[i]
    assert not torch.equal(a[2], b[2])  # two different occluders
    picks = {int(two.batch([i], torch.Generator().manual_seed(s))["hidden"][0].sum()) for s in range(20)}
    assert picks == {int(a[2].sum()), int(b[2].sum())}  # both are shown


@pytest.mark.parametrize("up", [1, 4])
def test_observation_plans_equal_the_dense_observation(tiny_pipeline, up):
    """An observation plan (the upsampling and image_to_surface of a fixed mesh as one sparse matrix)
    gives the surface features, viewing coefficients, visible texels and object cells that the step's
    dense path gives (rasterise, upsample, observe), with and without occluder cells, and the same
    gradient w.r.t. the feature map; the cache stores one per map when given the trainer's planner."""
    from ntdm_cli.train.cache import BodyCache
    from ntdm_cli.train.data import TrainingSet, collate
    from ntdm_cli.train.em import observe
    from ntdm_cli.train.loop import load_deformers
    from ntdm_cli.train.observation import observe_planned
    from ntdm_cli.train.settings import TrainConfig
    from ntdm_cli.train.trainer import Trainer
    import torch.nn.functional as F

    cats = sorted(p.stem for p in tiny_pipeline.deformers.glob("*.h5"))
    deformers = load_deformers(sorted(tiny_pipeline.deformers.glob("*.h5")), "cpu")
    cfg = TrainConfig(backbone="effnet-lite0", feature_dim=8, texture_size=32, observe_upsample=up, zoom=2.0)
    trainer, frozen = Trainer.build(cfg, cats, deformers, "cpu")
    assert frozen
    dataset = TrainingSet(tiny_pipeline.data, cats, "train", zoom=2.0)
    rows = list(range(min(4, len(dataset))))
    batch = collate([dataset[i] for i in rows])
    g = torch.Generator().manual_seed(0)
    h, w = (x // 8 for x in dataset.crop_hw)
    feats = F.normalize(torch.randn(len(rows), 8, h, w, generator=g), dim=1).requires_grad_(True)
    hidden = torch.rand(len(rows), h * up, w * up, generator=g) < 0.3
    for hid in (None, hidden):
        surf = trainer.fine_surface(batch, (h, w))
        seen = surf.mask if hid is None else surf.mask & ~hid
        fine = F.interpolate(feats, size=(h * up, w * up), mode="bilinear", align_corners=False) if up > 1 else feats
        dense = observe(fine, surf.uv, seen, surf.alpha, cfg.texture_size)
        plans = trainer.observation_plans(batch, (h, w), hid)
        planned = observe_planned(feats, plans, cfg.texture_size)
        assert torch.equal(planned.visible, dense.visible) and dense.visible.any()
        assert torch.allclose(planned.features, dense.features, atol=1e-5)
        assert torch.allclose(planned.alpha, dense.alpha, atol=1e-5)
        on_object = F.max_pool2d(surf.mask.float().unsqueeze(1), up)[:, 0] > 0 if up > 1 else surf.mask
        assert torch.equal(torch.stack([p.on_object for p in plans]), on_object)
        weights = torch.randn(dense.features.shape, generator=g)
        (ga,) = torch.autograd.grad((dense.features * weights).sum(), feats)
        (gb,) = torch.autograd.grad((planned.features * weights).sum(), feats)
        assert torch.allclose(ga, gb, atol=1e-5)
    cache = BodyCache(trainer.backbone, dataset, rows, 4, "cpu", occlude=1.0, variants=1, upsample=up,
                      planner=trainer.observation_plans)
    assert set(cache.plans) == set(rows) and all(v[0][4] is not None for v in cache.occluded.values())
    got = cache.batch(rows, torch.Generator().manual_seed(0))
    i = next(k for k, r in enumerate(rows) if r in cache.occluded)
    assert got["plans"][i] is cache.occluded[rows[i]][0][4]  # occlude=1: the variant's plan is shown
    assert len(cache.occluded[rows[i]][0][4].visible) < len(cache.plans[rows[i]].visible)  # the occluder hides texels


def test_resume_past_the_requested_epochs_is_refused(tiny_pipeline, tmp_path):
    """A checkpoint at epoch 2 resumed with --epochs 1 is a usage error naming both numbers, and
    nothing is written (it used to write the epoch-2 model labelled as 1 epoch)."""
    common = ["--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers), *TINY_TRAIN,
              "--set", "train.class_calib_images=0"]
    first = tmp_path / "m.h5"
    run_cli("train-textures", *common, "-o", str(first), "--epochs", "2")
    out = tmp_path / "again.h5"
    from ntdm_cli.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["train-textures", *common, "-o", str(out), "--epochs", "1", "--resume", str(first) + ".ckpt.h5"])
    assert exc.value.code == 2 and not out.exists()


def test_zoom_enlarges_the_training_crops(tiny_pipeline, tmp_path):
    """train.zoom=1.5: crops 1.5× (rounded up to 32), objects at the target distance / 1.5, so the
    annotated box is 1.5× larger about the crop centre; the model records it and infer follows it."""
    from ntdm_cli.data.preprocess import round32
    from ntdm_cli.train.data import TrainingSet

    plain = TrainingSet(tiny_pipeline.data, ["car"], "train", limit=2)
    zoomed = TrainingSet(tiny_pipeline.data, ["car"], "train", limit=2, zoom=1.5)
    assert zoomed.crop_of["car"] == tuple(round32(1.5 * x) for x in plain.crop_of["car"])
    assert zoomed.target_distance == pytest.approx(plain.target_distance / 1.5)
    m0, m1 = plain.load(0)["mask"], zoomed.load(0)["mask"]
    assert m1.sum() / m0.sum() == pytest.approx(1.5 ** 2, rel=0.1)

    model = tmp_path / "zoom.h5"
    run_cli("train-textures", "--data", str(tiny_pipeline.data), "--deformers", str(tiny_pipeline.deformers),
            *TINY_TRAIN, "--epochs", "1", "-o", str(model), "--set", "train.zoom=1.5")
    extra = load_model(model).extra
    assert float(extra["zoom"]) == 1.5 and float(extra["target_distance"]) == pytest.approx(plain.target_distance / 1.5)
    pred = tmp_path / "p.h5"
    run_cli("infer", "--data", str(tiny_pipeline.data), "--split", "val", "--limit", "1", "--model", str(model),
            "-o", str(pred), "--set", "infer.steps=2")
    masks = read_artifact(pred, "predictions")
    assert len(masks["image_id"]) >= 1


def test_refit_textures_from_the_cache_equals_the_images_and_ignores_occluders(tiny_pipeline):
    """loop.refit_textures re-estimates every texture under the final network in evaluation mode:
    from a body cache (observation plans; its occluded variants are not shown) it gives what the
    images give one by one through the dense path, and the bank is refilled with
    background features of those images."""
    from ntdm_cli.console import progress
    from ntdm_cli.train.cache import BodyCache
    from ntdm_cli.train.data import TrainingSet
    from ntdm_cli.train.loop import load_deformers, refit_textures
    from ntdm_cli.train.settings import TrainConfig
    from ntdm_cli.train.trainer import Trainer

    cats = sorted(p.stem for p in tiny_pipeline.deformers.glob("*.h5"))
    deformers = load_deformers(sorted(tiny_pipeline.deformers.glob("*.h5")), "cpu")
    dataset = TrainingSet(tiny_pipeline.data, cats, "train")
    rows = list(range(len(dataset)))

    def refit(batch_size: int, with_cache: bool):
        cfg = TrainConfig(backbone="effnet-lite0", feature_dim=8, texture_size=16, batch_size=batch_size,
                          bank_size=16, workers=0)
        torch.manual_seed(0)  # the head's initial weights
        trainer, _ = Trainer.build(cfg, cats, deformers, "cpu")
        cache = None
        if with_cache:
            cache = BodyCache(trainer.backbone, dataset, rows, batch_size, "cpu", occlude=1.0, variants=1,
                              upsample=cfg.observe_upsample, planner=trainer.observation_plans)
            assert cache.occluded
        old = [t.theta.clone() for t in trainer.textures]
        bank = trainer.bank.features.clone()
        with progress() as prog:
            refit_textures(trainer, dataset, rows, cache, prog)
        for t, o in zip(trainer.textures, old):
            assert (t.theta != o).any(-1).sum() > 10  # observed texels moved
        assert not torch.equal(trainer.bank.features, bank)
        return trainer

    cached, dense = refit(4, True), refit(1, False)  # images one by one through the dense path
    for a, b in zip(cached.textures, dense.textures):
        assert torch.allclose(a.theta, b.theta, atol=1e-4)
    assert torch.allclose(cached.bank.features, dense.bank.features, atol=1e-4)
