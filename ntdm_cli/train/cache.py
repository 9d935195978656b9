"""The fixed pretrained prefix's outputs of every training image, computed once per training run.

With ``train.frozen_blocks`` the prefix is a fixed function of the (un-augmented) image, so recomputing it
each epoch (and re-reading and re-warping the image) is wasted work: the cache holds, per training
index, the body maps and the item's annotations, and batches are assembled from memory. Memory: about
(c8 + c16 / 4) · (H/8) · (W/8) · 4 bytes per image (70 kB for a 128² crop of EfficientNet-Lite0).
"""

from __future__ import annotations

import torch

from ntdm_cli.console import progress
from ntdm_cli.train.data import collate


class BodyCache:
    """``maps[i]`` = (stride-8 (c8, h, w), stride-16 (c16, h/2, w/2)) float32 and ``items[i]`` = the
    training item of index i without its image (see train.data.TrainingSet.load). With
    ``keep_images`` the preprocessed image is kept too, as uint8 (3, H, W), for steps that paste
    occluders (``train.occlude``) and so must run the body on the changed image."""

    def __init__(self, backbone, dataset, indices: list[int], batch_size: int, device, workers: int = 0,
                 keep_images: bool = False):
        self.maps: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.items: dict[int, dict] = {}
        self.images: dict[int, torch.Tensor] = {}
        gen = torch.Generator().manual_seed(0)  # batches of one crop size; order does not matter
        batches = dataset.batches(list(indices), batch_size, gen)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, num_workers=workers,
                                             collate_fn=lambda items: items)
        was_training = backbone.training
        backbone.eval()
        with progress() as prog, torch.no_grad():
            task = prog.add_task("body features", total=len(batches), info="frozen ImageNet body, once")
            for rows, items in zip(batches, loader):
                images = torch.stack([it["image"] for it in items]).to(device)
                s8, s16 = backbone.prefix(images)
                for k, i in enumerate(rows):
                    self.maps[i] = (s8[k].clone(), s16[k].clone())
                    self.items[i] = {key: v for key, v in items[k].items() if key != "image"}
                    if keep_images:  # exact: the loader's floats are uint8 / 255
                        self.images[i] = (items[k]["image"] * 255).round().to(torch.uint8)
                prog.update(task, advance=1)
        backbone.train(was_training)

    def batch(self, rows: list[int]) -> dict:
        """The collated batch of training indices ``rows`` (one category): train.data.collate's keys
        without ``image``, plus ``body`` = (s8 (B, c8, h, w), s16 (B, c16, h/2, w/2)), and ``image`` when the images are kept."""
        body = (torch.stack([self.maps[i][0] for i in rows]), torch.stack([self.maps[i][1] for i in rows]))
        out = {"body": body, **collate([self.items[i] for i in rows])}
        if self.images:
            out["image"] = torch.stack([self.images[i] for i in rows]).float() / 255.0
        return out
