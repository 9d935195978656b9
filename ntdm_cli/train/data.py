"""Training items: PASCAL3D+-layout samples, NeMo-preprocessed to one common crop size."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from ntdm_cli.conventions import VP_KEYS
from ntdm_cli.data.pascal3d import Pascal3DDataset
from ntdm_cli.data.preprocess import preprocess, round32
from ntdm_cli.errors import NtdmError



def _id_hash(image_id: str) -> int:
    return int(hashlib.sha1(image_id.encode()).hexdigest()[:12], 16)


@dataclass
class Split:
    train: list[int]
    calib: list[int]


class TrainingSet(torch.utils.data.Dataset):
    """Samples of ``categories`` from a PASCAL3D+-layout ``root`` (split ``split``), preprocessed
    NeMo-style (object at the dataset's target distance) into each category's crop (``crop_of``), so
    the object fills as much of the feature map as it can; ``crop_hw`` is the union crop (H, W) that
    inference uses for every category. ``zoom`` enlarges the objects: they are brought to the dataset's
    target distance / zoom (``target_distance``) and every crop side is scaled by zoom (rounded up to a
    multiple of 32).

    Items: dict(image (3, H, W) float32 in [0, 1], category (int), cad (int, 0-based),
    viewpoint (8,) float64 in VP_KEYS order, mask (H, W) bool (annotated amodal mask or all False),
    has_mask (bool), instance_scale (3,) float32 (1 when not annotated))."""

    def __init__(self, root, categories: list[str], split: str = "train", limit: int | None = None,
                 crop_hw: tuple[int, int] | None = None, zoom: float = 1.0):
        self.dataset = Pascal3DDataset(root, categories, split=split, limit=limit)
        self.categories = list(categories)
        self.target_distance = self.dataset.target_distance / zoom
        self.crop_of = {c: tuple(int(x) if zoom == 1 else round32(x * zoom) for x in self.dataset.crop_size(c))
                        for c in self.categories}
        if crop_hw is None:
            crop_hw = (max(s[0] for s in self.crop_of.values()), max(s[1] for s in self.crop_of.values()))
        self.crop_hw = (int(crop_hw[0]), int(crop_hw[1]))
        for size in [self.crop_hw, *self.crop_of.values()]:
            if size[0] % 8 or size[1] % 8:
                raise NtdmError(f"crop size {size} must be a multiple of 8 (the feature stride)")
        self.ids = [e.image_id for e in self.dataset.entries]
        self.cat_index = [self.categories.index(e.category) for e in self.dataset.entries]

    def split(self, calib_fraction: float) -> Split:
        """Hold out ``calib_fraction`` of each category (at least one image where a category has two or
        more) as the calibration split, chosen by a hash of the image id (stable across runs)."""
        calib: list[int] = []
        if calib_fraction > 0:
            for c in range(len(self.categories)):
                rows = sorted((i for i, ci in enumerate(self.cat_index) if ci == c), key=lambda i: _id_hash(self.ids[i]))
                if len(rows) >= 2:
                    calib += rows[: max(1, round(calib_fraction * len(rows)))]
        cset = set(calib)
        train = [i for i in range(len(self.ids)) if i not in cset]
        if not train:
            raise NtdmError("no training images left after holding out the calibration split")
        return Split(train, calib)

    def batches(self, indices: list[int], batch_size: int, generator) -> list[list[int]]:
        """Batches of one category each (one crop size per batch), in random order; ``indices`` keep
        their (already shuffled) order within a category."""
        per_cat: dict[int, list[int]] = {}
        for i in indices:
            per_cat.setdefault(self.cat_index[i], []).append(i)
        out = [rows[s:s + batch_size] for rows in per_cat.values() for s in range(0, len(rows), batch_size)]
        order = torch.randperm(len(out), generator=generator).tolist()
        return [out[k] for k in order]

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        return self.load(i)

    def load(self, i: int, crop_hw: tuple[int, int] | None = None) -> dict:
        """Item i in its category's crop, or in ``crop_hw`` (the union crop, for calibration)."""
        sample = self.dataset[i]
        crop = crop_hw or self.crop_of[sample.category]
        out, _ = preprocess(sample, crop, self.target_distance)
        image = torch.from_numpy(np.array(out.image)).permute(2, 0, 1).float() / 255.0
        mask = out.amodal_mask
        has_mask = mask is not None
        if mask is None:
            mask = np.zeros(crop, dtype=bool)
        return {
            "image": image,
            "category": self.categories.index(out.category),
            "cad": int(out.cad_index),
            "viewpoint": torch.tensor([float(out.viewpoint[k]) for k in VP_KEYS], dtype=torch.float64),
            "mask": torch.from_numpy(np.array(mask, dtype=bool)),
            "has_mask": has_mask,
            # per-axis scale of the instance relative to its CAD, when the annotation has it (synth)
            "instance_scale": torch.tensor(out.instance_scale if out.instance_scale else (1.0, 1.0, 1.0),
                                           dtype=torch.float32),
        }


def collate(items: list[dict]) -> dict:
    """A batch of :meth:`TrainingSet.load` items: image (B, 3, H, W) when the items carry one,
    category (B,), cad (B,), viewpoint (B, 8), mask (B, H, W) bool, instance_scale (B, 3)."""
    out = {"image": torch.stack([it["image"] for it in items])} if "image" in items[0] else {}
    out.update(
        category=torch.tensor([it["category"] for it in items]),
        cad=torch.tensor([it["cad"] for it in items]),
        viewpoint=torch.stack([it["viewpoint"] for it in items]),
        mask=torch.stack([it["mask"] for it in items]),
        instance_scale=torch.stack([it["instance_scale"] for it in items]),
    )
    return out
