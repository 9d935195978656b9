"""Fitting the view classifier (model.view_classifier) after the textures are trained.

The classifier reads the final network's features, so it is fitted once the last epoch is done: every
training image's features are computed once under the final network in evaluation mode (as inference
computes them), pooled and kept, and the small network is trained on them by cross-entropy against
soft azimuth targets. With a cached frozen body the features come from the cache, including its
occluded variants (each shown in an epoch with probability ``train.occlude``, as the textures saw
them), so the fit costs no body pass.
"""

from __future__ import annotations

import torch

from ntdm_cli.console import progress
from ntdm_cli.model.backbone import evaluating
from ntdm_cli.model.view_classifier import ViewClassifier
from ntdm_cli.train.data import collate


@torch.no_grad()
def view_inputs(trainer, dataset, rows: list[int], cache=None, batch_size: int = 16) -> dict[int, dict]:
    """Per category index c: dict(x (N, d, wh, ww) float16 classifier inputs of its training images,
    azimuth (N,) float32 radians, variants {n: (V, d, wh, ww) float16} the inputs of image n's cached
    occluded variants). Features are the final network's, in evaluation mode."""
    backbone = trainer.backbone
    per_cat: dict[int, list[int]] = {}
    for i in rows:
        per_cat.setdefault(dataset.cat_index[i], []).append(i)
    out: dict[int, dict] = {}
    pool = None
    with evaluating(backbone):
        for c, idx in per_cat.items():
            xs, az, variants = [], [], {}
            for s in range(0, len(idx), batch_size):
                chunk = idx[s:s + batch_size]
                if cache is not None:
                    maps = (torch.stack([cache.maps[i][0] for i in chunk]), torch.stack([cache.maps[i][1] for i in chunk]))
                    items = [cache.items[i] for i in chunk]
                    feats = backbone(maps)
                else:
                    items = [dataset.load(i) for i in chunk]
                    feats = backbone(collate(items)["image"].to(trainer.device))
                if pool is None:
                    pool = feats.shape[-2:]
                xs.append(feats.half().cpu())
                az += [float(it["viewpoint"][0]) for it in items]
                if cache is not None:
                    for k, i in enumerate(chunk):
                        vs = cache.occluded.get(i, [])
                        if vs:
                            o = backbone((torch.stack([v[0].float() for v in vs]), torch.stack([v[1].float() for v in vs])))
                            variants[s + k] = o.half().cpu()
            out[c] = {"features": torch.cat(xs), "azimuth": torch.tensor(az, dtype=torch.float32), "variants": variants}
    return out


def fit_view_classifier(inputs: dict[int, dict], categories: int, dim: int, *, bins: int = 12, width: int = 64,
                        pool: int = 2, epochs: int = 20, lr: float = 2e-3, batch_size: int = 32,
                        occlude: float = 0.0, temperature: float = 0.07, seed: int = 0,
                        device="cpu") -> tuple[ViewClassifier, list[float]]:
    """Train a :class:`ViewClassifier` on :func:`view_inputs`' features.

    Each epoch shows every image once (as one of its occluded variants with probability ``occlude``),
    shifted by up to one pooled cell, in batches of one category; AdamW (weight decay 0.01), the
    learning rate decayed by 0.93 per epoch. Categories without images keep untrained outputs (their
    distribution is near uniform, so their nll is near 0 everywhere).

    Returns the classifier (in eval mode) and the mean training loss of each epoch."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    windows = [(1, 1)] * categories
    for c, d in inputs.items():
        h, w = d["features"].shape[-2:]
        windows[c] = (h // pool, w // pool) if pool > 1 else (h, w)
    net = ViewClassifier(dim, categories, windows, bins=bins, width=width, pool=pool, temperature=temperature).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-2)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.93)
    prepared = {c: net.prepare(d["features"].float(), c).half() for c, d in inputs.items()}
    pv = {c: {n: net.prepare(v.float(), c).half() for n, v in d["variants"].items()} for c, d in inputs.items()}
    targets = {c: net.soft_targets(d["azimuth"]) for c, d in inputs.items()}
    batches_per_epoch = sum(-(-len(d["azimuth"]) // batch_size) for d in inputs.values())
    curve: list[float] = []
    net.train()
    with progress() as prog:
        task = prog.add_task("view classifier", total=epochs * batches_per_epoch, info="")
        for _ in range(epochs):
            batches = []
            for c, x in prepared.items():
                perm = torch.randperm(len(x), generator=gen)
                batches += [(c, perm[s:s + batch_size]) for s in range(0, len(x), batch_size)]
            order = torch.randperm(len(batches), generator=gen).tolist()
            total, count = 0.0, 0
            for b in order:
                c, idx = batches[b]
                x = prepared[c][idx].float()
                if occlude > 0 and pv[c]:
                    draw = torch.rand(len(idx), generator=gen)
                    for k, n in enumerate(idx.tolist()):
                        if n in pv[c] and draw[k] < occlude:
                            vs = pv[c][n]
                            x[k] = vs[int(torch.randint(len(vs), (), generator=gen))].float()
                dy, dx = torch.randint(-1, 2, (2,), generator=gen).tolist()
                x = torch.roll(x, (dy, dx), (2, 3)).to(device)
                logits = net.logits(x, torch.full((len(idx),), c, dtype=torch.long, device=device))
                loss = -(targets[c][idx].to(device) * logits.log_softmax(-1)).sum(-1).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                count += len(idx)
                prog.update(task, advance=1)
            sched.step()
            curve.append(total / max(count, 1))
    net.eval()
    return net, curve
