"""The fixed pretrained prefix's outputs of every training image, computed once per training run.

With ``train.frozen_blocks`` the prefix is a fixed function of the (un-augmented) image, so recomputing it
each epoch (and re-reading and re-warping the image) is wasted work: the cache holds, per training
index, the body maps and the item's annotations, and batches are assembled from memory. Memory: about
(c8 + c16 / 4) · (H/8) · (W/8) · 4 bytes per image (70 kB for a 128² crop of EfficientNet-Lite0).

Occluders (``train.occlude = p``) change the image, so the body must see them. Two ways:

* ``train.occluder_variants = 0``: the cache keeps the images (uint8) and a step pastes new occluders
  and runs the body on its batch whenever one was pasted: a new occluder every time, at a body pass
  per occluded step.
* ``train.occluder_variants = K``: each image gets K occluded variants, drawn once (occluders pasted as
  :func:`ntdm_cli.train.augment.paste_occluders` does), the body run on them here and their maps kept in
  float16 (K/2 times the bytes above again) with the occluder's cells. An epoch shows an image as one
  of its variants with probability p, so it costs what an unoccluded epoch does; the whole run costs K
  extra body passes per image, and sees K occluders per image instead of a new one every step.

Unless the images are kept, the geometry of every shown map is fixed too, so with a ``planner`` (the
trainer's ``observation_plans``) the cache also holds each map's observation plan
(:mod:`ntdm_cli.train.observation`): the step then neither rasterises nor upsamples. A plan takes
about 8 bytes per (texel, feature cell) pair it links (16-bit indices, a float32 weight) and its
viewing coefficients: about 0.1 MiB per image at a 32² feature map (bm_observation_plan).
"""

from __future__ import annotations

import torch

from ntdm_cli.console import progress
from ntdm_cli.train.augment import occluder_cells, paste_occluders
from ntdm_cli.train.data import collate


class BodyCache:
    """``maps[i]`` = (stride-8 (c8, h, w), stride-16 (c16, h/2, w/2)) float32 and ``items[i]`` = the
    training item of index i without its image (see train.data.TrainingSet.load); ``plans[i]`` its
    observation plan when a planner was given.

    With ``occlude`` > 0 and ``variants`` = 0, ``images[i]`` = the preprocessed image as uint8
    (3, H, W). With ``variants`` = K > 0, ``occluded[i]`` = up to K tuples (maps of image i with
    occluders pasted, float16; the occluder's cells: hidden (h·upsample, w·upsample) bool and
    background (h, w) bool, see :func:`ntdm_cli.train.augment.occluder_cells`, and its observation plan
    or None); an image with an empty or full mask, or alone in its batch, gets none.

    ``planner(batch, (h, w), hidden)`` -> one observation plan per image of a collated batch (hidden:
    (B, h·u, w·u) bool occluder cells or None); used only when the images are not kept."""

    def __init__(self, backbone, dataset, indices: list[int], batch_size: int, device, workers: int = 0,
                 occlude: float = 0.0, variants: int = 0, occlude_max: float = 0.7, upsample: int = 1,
                 seed: int = 0, planner=None):
        self.maps: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.items: dict[int, dict] = {}
        self.images: dict[int, torch.Tensor] = {}
        self.occluded: dict[int, list[tuple]] = {}
        self.plans: dict = {}
        self.occlude = float(occlude)
        keep_images = occlude > 0 and variants == 0
        self.planner = None if keep_images else planner
        gen = torch.Generator().manual_seed(seed)  # batches of one category: the donors of the occluders
        batches = dataset.batches(list(indices), batch_size, gen)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                             collate_fn=lambda items: items)
        paste_gen = torch.Generator().manual_seed(seed + 1)
        was_training = backbone.training
        backbone.eval()
        info = f"frozen body and {variants} occluded" if occlude > 0 and variants else "frozen ImageNet body, once"
        with progress() as prog, torch.no_grad():
            task = prog.add_task("body features", total=len(batches), info=info)
            for rows, items in zip(batches, loader):
                images = torch.stack([it["image"] for it in items]).to(device)
                s8, s16 = backbone.prefix(images)
                plans = self._plans(items, s8.shape[-2:])
                for k, i in enumerate(rows):
                    self.maps[i] = (s8[k].clone(), s16[k].clone())
                    self.items[i] = {key: v for key, v in items[k].items() if key != "image"}
                    if plans is not None:
                        self.plans[i] = plans[k]
                    if keep_images:  # exact: the loader's floats are uint8 / 255
                        self.images[i] = (items[k]["image"] * 255).round().to(torch.uint8)
                if occlude > 0:
                    masks = torch.stack([it["mask"] for it in items]).to(device)
                    for _ in range(variants):
                        self._add_occluded(backbone, rows, items, images, masks, occlude_max, upsample, paste_gen)
                prog.update(task, advance=1)
        backbone.train(was_training)

    def _plans(self, items: list[dict], coarse_hw, hidden: torch.Tensor | None = None) -> list | None:
        """The planner's plans of ``items`` (None without a planner)."""
        if self.planner is None:
            return None
        batch = collate([{key: v for key, v in it.items() if key != "image"} for it in items])
        return self.planner(batch, tuple(coarse_hw), hidden)

    def _add_occluded(self, backbone, rows: list[int], items: list[dict], images: torch.Tensor, masks: torch.Tensor,
                      occlude_max: float, upsample: int, generator: torch.Generator) -> None:
        """Paste an occluder on every image of the batch that can take one and cache its body maps."""
        pasted, occluder, occluder_bg = paste_occluders(images, masks, 1.0, occlude_max, generator)
        got = occluder.flatten(1).any(1).nonzero().squeeze(1)
        if got.numel() == 0:
            return
        s8, s16 = backbone.prefix(pasted[got])
        hidden, background = occluder_cells(occluder[got], occluder_bg[got], s8.shape[-2:], upsample)
        plans = self._plans([items[j] for j in got.tolist()], s8.shape[-2:], hidden)
        for k, j in enumerate(got.tolist()):
            self.occluded.setdefault(rows[j], []).append((s8[k].half(), s16[k].half(), hidden[k].clone(),
                                                          background[k].clone(), None if plans is None else plans[k]))

    def batch(self, rows: list[int], generator: torch.Generator | None = None, occluded: bool = True) -> dict:
        """The collated batch of training indices ``rows`` (one category): train.data.collate's keys
        without ``image``, plus ``body`` = (s8 (B, c8, h, w), s16 (B, c16, h/2, w/2)), and ``image`` when
        the images are kept.

        With occluded variants, each image is shown as one of its variants with probability
        ``occlude`` (drawn from ``generator``), and ``hidden`` (B, h·up, w·up) / ``occluder_background``
        (B, h, w) bool say which cells its occluder covers (all False for the images shown as they are).
        ``occluded=False`` shows every image as it is (and draws nothing)."""
        s8 = [self.maps[i][0] for i in rows]
        s16 = [self.maps[i][1] for i in rows]
        plans = [self.plans.get(i) for i in rows]
        out = collate([self.items[i] for i in rows])
        if self.occluded and occluded:
            draws = torch.rand(len(rows), generator=generator).tolist()
            shown = [k for k, i in enumerate(rows) if i in self.occluded and draws[k] < self.occlude]
            if shown:
                hidden_like, bg_like = self.occluded[rows[shown[0]]][0][2:4]  # one crop size per batch
                hidden = torch.zeros((len(rows), *hidden_like.shape), dtype=torch.bool, device=hidden_like.device)
                background = torch.zeros((len(rows), *bg_like.shape), dtype=torch.bool, device=bg_like.device)
                for k in shown:
                    variants = self.occluded[rows[k]]
                    pick = int(torch.randint(len(variants), (), generator=generator)) if len(variants) > 1 else 0
                    o8, o16, hidden[k], background[k], plans[k] = variants[pick]
                    s8[k], s16[k] = o8.float(), o16.float()
                out["hidden"], out["occluder_background"] = hidden, background
        out["body"] = (torch.stack(s8), torch.stack(s16))
        if self.planner is not None:
            out["plans"] = plans
        if self.images:
            out["image"] = torch.stack([self.images[i] for i in rows]).float() / 255.0
        return out
