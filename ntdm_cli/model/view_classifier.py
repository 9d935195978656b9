"""The view classifier: an image-conditioned azimuth distribution per category, learned from the
training images' features and weighed against the render-and-compare evidence at inference.

Render-and-compare scores a pose by how well the rendered texture explains each feature cell. Where a
category gives little evidence per cell (an aeroplane's wings share their cells with the sky, a chair's
template covers the space between its legs, a bottle shows its azimuth only through a label), poses
30-180° apart score within noise of each other, and small changes to the score reshuffle which one
wins (docs/pretrained.md, "near-ties"). A small network that reads the whole feature map at once sees
the layout those cells form (where the label sits on the body, which way the nose points) and gives
p(azimuth | image, category). Its negative log-density is added to the solver's loss like the
viewpoint prior's (model.pose_prior): ``weight · temperature · nll / cells``, so the loss becomes a
negative log-posterior whose likelihood is the NTDM evidence and whose prior reads the image.

The density over the circle is a mixture of von Mises kernels at the ``bins`` bin centres, weighted by
the classifier's softmax: smooth and differentiable in the azimuth, so Adam follows it. The nll is taken
relative to the density's mode, so it is 0 at the most likely azimuth and a category's evidence is not
shifted by how peaked its distribution is (the class decision compares categories' losses).

Inputs are the backbone's unit features at its stride (8 px) of the union crop that inference uses;
the network pools them ``pool``× first (the grid the solver scores on) and reads, for category c,
the central window ``windows[c]`` (cells of the pooled grid) of the map: the whole map of the crop it
was trained on, and the same cells of a larger one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    # BatchNorm: train.view mixes the categories in every batch, so batch statistics match the running
    # statistics inference uses (GroupNorm generalised worse: docs/pretrained.md)
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ViewClassifier(nn.Module):
    """Azimuth classifier of ``categories`` categories over ``bins`` azimuth bins.

    A trunk shared by the categories (three stride-2 3×3 conv + BatchNorm + ReLU of ``width`` channels
    over the features pooled ``pool``×, then an adaptive 3×3 average pool) and one linear layer to C·K
    logits.

    Args:
        dim: d, channels of the backbone's features.
        categories: C.
        windows: per category (h, w) cells of the pooled grid its training crops had.
        bins: K azimuth bins, centred at 2πk/K.
        width: trunk channels.
        pool: average-pooling factor applied to the features first.
        temperature: the contrastive temperature of the training whose evidence the nll is weighed
            against (nats → loss units, as model.pose_prior)."""

    def __init__(self, dim: int, categories: int, windows: list[tuple[int, int]], bins: int = 12, width: int = 64,
                 pool: int = 2, temperature: float = 0.07):
        super().__init__()
        if len(windows) != categories:
            raise ValueError(f"view classifier: {len(windows)} windows for {categories} categories")
        self.dim, self.categories, self.bins, self.width, self.pool = dim, categories, bins, width, pool
        self.windows = [(int(h), int(w)) for h, w in windows]
        self.temperature = float(temperature)
        self.trunk = nn.Sequential(_block(dim, width), _block(width, width), _block(width, width),
                                   nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Dropout(0.3))
        self.out = nn.Linear(width * 9, categories * bins)
        # kernel concentration: a von Mises of std ≈ half a bin's width
        self.kappa = 1.0 / (math.pi / bins) ** 2

    def config(self) -> dict:
        """What rebuilds the network before its weights are loaded (model artifact attrs)."""
        return {"dim": self.dim, "categories": self.categories, "windows": self.windows, "bins": self.bins,
                "width": self.width, "pool": self.pool, "temperature": self.temperature}

    def prepare(self, features: torch.Tensor, category: int) -> torch.Tensor:
        """The classifier's input for ``category``: features (B, d, h, w) at the backbone stride pooled
        ``pool``× and cut to the category's central window (B, d, wh, ww); zero-padded where the map is
        smaller than the window."""
        x = F.avg_pool2d(features, self.pool) if self.pool > 1 else features
        wh, ww = self.windows[category]
        h, w = x.shape[-2:]
        if h < wh or w < ww:
            ph, pw = max(wh - h, 0), max(ww - w, 0)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            h, w = x.shape[-2:]
        top, left = (h - wh) // 2, (w - ww) // 2
        return x[..., top:top + wh, left:left + ww]

    def logits(self, x: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) of prepared inputs x (B, d, wh, ww) of one window size for categories (B,)."""
        out = self.out(self.trunk(x)).view(-1, self.categories, self.bins)
        return out[torch.arange(out.shape[0], device=out.device), category]

    @torch.no_grad()
    def log_probs(self, features: torch.Tensor, category: int) -> torch.Tensor:
        """log p(bin | image, category) (B, K) of the images whose backbone features are (B, d, h, w)."""
        was = self.training
        self.eval()
        x = self.prepare(features, category)
        lp = self.logits(x, torch.full((x.shape[0],), category, device=x.device, dtype=torch.long)).log_softmax(-1)
        self.train(was)
        return lp

    def centres(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """Bin centres (K,) radians."""
        return torch.arange(self.bins, device=device, dtype=dtype) * (2 * math.pi / self.bins)

    def soft_targets(self, azimuth: torch.Tensor) -> torch.Tensor:
        """Training targets (N, K): each azimuth (N,) radians spread over the bins by the density's own
        kernel, so neighbouring bins share an azimuth between them."""
        c = self.centres(azimuth.device, azimuth.dtype)
        w = torch.exp(self.kappa * (torch.cos(azimuth[:, None] - c[None]) - 1))
        return w / w.sum(1, keepdim=True)

    def _log_mixture(self, log_probs: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        """log Σ_k p_k exp(κ (cos(a − c_k) − 1)) (N, G) of the mixtures log_probs (N, K) at angles (N, G)."""
        c = self.centres(angles.device, log_probs.dtype)
        return torch.logsumexp(log_probs[:, None, :] + self.kappa * (torch.cos(angles[..., None] - c) - 1), -1)

    def log_density(self, log_probs: torch.Tensor, azimuth: torch.Tensor) -> torch.Tensor:
        """Unnormalised log-density (N,) at azimuths (N,) radians of the mixtures given by log_probs
        (N, K): log Σ_k p_k exp(κ (cos(a − c_k) − 1)). Differentiable in the azimuth."""
        return self._log_mixture(log_probs, azimuth[:, None])[:, 0]

    def mode_log_density(self, log_probs: torch.Tensor) -> torch.Tensor:
        """Each mixture's log-density (N,) at its mode, found on a 5° grid (a constant of the image:
        callers that score many azimuths of one image compute it once)."""
        grid = torch.arange(72, device=log_probs.device, dtype=log_probs.dtype) * (2 * math.pi / 72)
        return self._log_mixture(log_probs.detach(), grid.expand(log_probs.shape[0], -1)).amax(1)

    def nll(self, log_probs: torch.Tensor, azimuth: torch.Tensor, mode: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-density (N,) at azimuths (N,) relative to each mixture's mode (``mode``: its
        :meth:`mode_log_density`, computed when not given): ≥ 0 up to the grid's resolution, 0 at the
        most likely azimuth."""
        if mode is None:
            mode = self.mode_log_density(log_probs)
        return mode - self.log_density(log_probs, azimuth)

    def loss(self, log_probs: torch.Tensor, azimuth: torch.Tensor, cells: int, weight: float,
             mode: torch.Tensor | None = None) -> torch.Tensor:
        """The nll in the solver's loss units (N,): weight · temperature · nll / cells."""
        return (weight * self.temperature / cells) * self.nll(log_probs, azimuth, mode)
