"""The viewpoint prior of a category: how its training images were seen, as a robust Gaussian on
elevation and in-plane rotation, learned from the training annotations and stored with the model.

Render-and-compare scores a pose by its features' evidence alone, so a pose the training images never
show (an aeroplane rolled 30°, seen from 40° below) wins whenever its evidence ties with the right
one's, and for thin objects the evidence often ties. Adding the prior's negative log-density makes
the loss a negative log-posterior. The evidence is the NTDM likelihood exp(κ Σ_cells f·f′) with κ =
1 / the contrastive temperature of training; the solver's loss is 1 − (Σ_cells score) / cells, so in
its units the prior adds ``weight · temperature · nll / cells`` (:meth:`PosePrior.loss`).

Each angle's density is a mixture of a Gaussian (the training mean and standard deviation) and, with
weight ``outliers``, a uniform density over the angle's range, so a pose far outside the training
distribution costs a bounded amount and strong evidence can still choose it (the OOD pose split).
Azimuth has no prior: objects are seen from every side.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch

#: standard deviations below this (radians) are raised to it: a handful of training images must not
#: make the prior a spike
MIN_STD = math.radians(2.0)
#: the range (radians) of each angle's uniform outlier density: elevation in [−π/2, π/2], theta in [−π, π)
SPAN = {"elevation": math.pi, "theta": 2 * math.pi}


@dataclass
class PosePrior:
    """Robust Gaussian prior of one category: ``elevation`` and ``theta`` (mean, std) in radians;
    ``temperature`` the contrastive temperature of the training that made the evidence it is weighed
    against."""

    elevation: tuple[float, float]
    theta: tuple[float, float]
    temperature: float

    @classmethod
    def fit(cls, elevations, thetas, temperature: float) -> "PosePrior":
        """From the training annotations' elevations and thetas (radians, ≥ 1 each)."""
        e, t = np.asarray(elevations, dtype=np.float64), np.asarray(thetas, dtype=np.float64)
        if e.size == 0 or t.size == 0:
            raise ValueError("a pose prior needs at least one annotated viewpoint")
        t = (t + math.pi) % (2 * math.pi) - math.pi
        return cls((float(e.mean()), max(float(e.std()), MIN_STD)), (float(t.mean()), max(float(t.std()), MIN_STD)),
                   float(temperature))

    def nll(self, elevation: torch.Tensor, theta: torch.Tensor, outliers: float = 0.1) -> torch.Tensor:
        """Negative log-density (N,) of poses (N,) relative to the mode: 0 at the training mean, growing
        as a Gaussian's near it and bounded by about −log(outliers · uniform / Gaussian peak) far
        from it. Differentiable in both angles."""
        out = elevation.new_zeros(elevation.shape)
        for x, (mu, sd), span in ((elevation, self.elevation, SPAN["elevation"]),
                                  (theta, self.theta, SPAN["theta"])):
            d = x - mu
            if span == SPAN["theta"]:  # theta is periodic
                d = torch.remainder(d + math.pi, 2 * math.pi) - math.pi
            z = d / sd
            r = sd * math.sqrt(2 * math.pi) / span  # uniform density / the Gaussian's peak density
            peak = math.log((1 - outliers) + outliers * r)
            out = out + peak - torch.log((1 - outliers) * torch.exp(-0.5 * z * z) + outliers * r)
        return out

    def loss(self, elevation: torch.Tensor, theta: torch.Tensor, cells: int, weight: float = 1.0,
             outliers: float = 0.1) -> torch.Tensor:
        """The prior in the solver's loss units (N,): weight · temperature · nll / cells, for a loss
        that is a mean over ``cells`` feature cells."""
        return (weight * self.temperature / cells) * self.nll(elevation, theta, outliers)


def priors_to_json(priors: dict[str, PosePrior]) -> str:
    """The model artifact's ``pose_prior`` attribute."""
    return json.dumps({c: {"elevation": list(p.elevation), "theta": list(p.theta), "temperature": p.temperature}
                       for c, p in priors.items()})


def priors_from_json(text: str | None) -> dict[str, PosePrior]:
    """The priors stored by :func:`priors_to_json` (empty for models written before priors).
    Raises ValueError naming what is wrong when the text is not such a table."""
    if not text:
        return {}
    try:
        raw = json.loads(str(text))
        out = {str(c): PosePrior((float(v["elevation"][0]), float(v["elevation"][1])),
                                 (float(v["theta"][0]), float(v["theta"][1])), float(v["temperature"]))
               for c, v in raw.items()}
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        raise ValueError(f"pose_prior is not a table of viewpoint priors ({exc.__class__.__name__}: {exc})") from None
    for c, p in out.items():
        values = (*p.elevation, *p.theta, p.temperature)
        if not all(math.isfinite(x) for x in values) or min(p.elevation[1], p.theta[1], p.temperature) <= 0:
            raise ValueError(f"pose_prior of {c}: standard deviations and temperature must be positive and finite")
    return out
