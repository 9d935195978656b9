"""Fitting the view classifier (model.view_classifier) after the textures are trained.

The classifier reads the final network's features, so it is fitted once the last epoch is done. Every
training image is preprocessed into the union crop that ``ntdm infer`` uses (not its category's
training crop: the body's receptive field reaches past a crop's border, so the features near it
depend on the crop) and its features are computed once under the final network in evaluation mode,
exactly as inference computes them; the small network is then trained on them by cross-entropy
against soft azimuth targets. With ``train.view_occlude`` the images are shown clean *and* once with
an occluder pasted over the object: fitted on clean images alone, the classifier names a basin just as
confidently when an occluder hides what tells the basins apart, while replacing clean images by
occluded ones cost accuracy on clean images (docs/pretrained.md). With ``train.view_mirror`` that
second copy is also mirrored left-right, its azimuth negated: the mirror image of a bilaterally
symmetric object seen from azimuth a is the object seen from −a (the symmetry plane holds azimuths 0
and π in the PASCAL3D+ convention), so the classifier sees twice as many distinct views for the same
number of body passes (off by default: train.settings says why).
"""

from __future__ import annotations

import math

import torch

from ntdm_cli.console import progress
from ntdm_cli.model.backbone import evaluating
from ntdm_cli.model.view_classifier import ViewClassifier
from ntdm_cli.train.augment import paste_occluders
from ntdm_cli.train.data import collate


@torch.no_grad()
def view_inputs(backbone, dataset, rows: list[int], device, batch_size: int = 16, occlude: float = 0.0,
                occlude_max: float = 0.7, seed: int = 0, mirror: bool = False) -> dict[str, torch.Tensor]:
    """The final network's features of the training ``rows`` of ``dataset`` (train.data.TrainingSet),
    each image in the union crop ``dataset.crop_hw``: dict(features (N, d, h, w) float16 on the CPU,
    category (N,) long, azimuth (N,) float32 radians). With ``occlude`` > 0 that fraction of the
    images is also shown once more with a background occluder pasted over the object
    (train.augment.paste_occluders, covering up to ``occlude_max`` of it), so N grows by about
    ``occlude`` · len(rows): the classifier then sees partly hidden objects as well as whole ones. With
    ``mirror`` those occluded copies are flipped left-right and their azimuth a becomes −a (mod 2π;
    valid for objects symmetric about the plane of azimuths 0 and π)."""
    feats, cats, az = [], [], []
    gen = torch.Generator().manual_seed(seed)
    with evaluating(backbone), progress() as prog:
        task = prog.add_task("view classifier inputs", total=len(rows), info="")
        for s in range(0, len(rows), batch_size):
            items = [dataset.load(i, dataset.crop_hw) for i in rows[s:s + batch_size]]
            batch = collate(items)
            feats.append(backbone(batch["image"].to(device)).half().cpu())
            cats.append(batch["category"])
            az.append(batch["viewpoint"][:, 0].float())
            if occlude > 0:
                pasted, occluder, _ = paste_occluders(batch["image"], batch["mask"], occlude, occlude_max, gen)
                got = occluder.flatten(1).any(1).nonzero().squeeze(1)
                if got.numel():
                    shown, azimuth = pasted[got], batch["viewpoint"][got, 0].float()
                    if mirror:
                        shown, azimuth = shown.flip(-1), torch.remainder(-azimuth, 2 * math.pi)
                    feats.append(backbone(shown.to(device)).half().cpu())
                    cats.append(batch["category"][got])
                    az.append(azimuth)
            prog.update(task, advance=len(items))
    return {"features": torch.cat(feats), "category": torch.cat(cats), "azimuth": torch.cat(az)}


def fit_view_classifier(inputs: dict[str, torch.Tensor], categories: int, *, bins: int = 12, width: int = 64,
                        pool: int = 2, epochs: int = 30, lr: float = 2e-3, batch_size: int = 32,
                        temperature: float = 0.07, seed: int = 0, device="cpu") -> tuple[ViewClassifier, list[float]]:
    """Train a :class:`ViewClassifier` on :func:`view_inputs`' features.

    Each epoch shows every image once, shifted by up to one pooled cell, in random batches (categories
    mixed); AdamW (weight decay 0.01), the learning rate decayed by 0.93 per epoch. Categories without
    images keep untrained outputs (near uniform, so their nll is near 0 everywhere).

    Returns the classifier (in eval mode) and the mean training loss of each epoch."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    f = inputs["features"]
    h, w = f.shape[-2:]
    window = (h // pool, w // pool) if pool > 1 else (h, w)
    net = ViewClassifier(f.shape[1], categories, [window] * categories, bins=bins, width=width, pool=pool,
                         temperature=temperature).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.93)
    x_all = torch.cat([net.prepare(f[s:s + 256].float(), 0).half() for s in range(0, len(f), 256)])
    cat = inputs["category"].long()
    targets = net.soft_targets(inputs["azimuth"].float())
    n = len(cat)
    curve: list[float] = []
    net.train()
    with progress() as prog:
        task = prog.add_task("view classifier", total=epochs * (-(-n // batch_size)), info="")
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(0, n, batch_size):
                idx = perm[s:s + batch_size]
                dy, dx = torch.randint(-1, 2, (2,), generator=gen).tolist()
                x = torch.roll(x_all[idx].float(), (dy, dx), (2, 3)).to(device)
                logits = net.logits(x, cat[idx].to(device))
                loss = -(targets[idx].to(device) * logits.log_softmax(-1)).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                prog.update(task, advance=1)
            sched.step()
            curve.append(total / max(n, 1))
    net.eval()
    return net, curve
