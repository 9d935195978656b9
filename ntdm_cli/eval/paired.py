"""Paired comparison of runs scored on the same images (``ntdm eval`` with several predictions files).

Two settings that differ by a point of accuracy may simply reshuffle near-ties: one gets some images
right that the other gets wrong, and about as many the other way. What decides whether a difference
is more than that is how the images that only one run gets right split between the two. For every
run after the first, against the first (the reference), on the images both scored (same image id,
occlusion level and nuisance): how many each gets right that the other does not, at π/6, π/18 and for
the class, with McNemar's exact test (two-sided binomial test of the discordant images at p = ½).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Sequence

from ntdm_cli.eval.scoring import RunResult
from ntdm_cli.metrics import PI_6, PI_18, ImageResult

#: (key, title, is the image right?) of the compared outcomes
OUTCOMES: list[tuple[str, str, Callable[[ImageResult], bool]]] = [
    ("pi_6", "π/6", lambda r: r.pose_error < PI_6),
    ("pi_18", "π/18", lambda r: r.pose_error < PI_18),
    ("class", "class", lambda r: bool(r.correct_class)),
]


def mcnemar_p(only_reference: int, only_run: int) -> float:
    """Exact two-sided McNemar p-value of ``only_reference`` against ``only_run`` discordant images:
    the probability, were each discordant image equally likely to fall either way, of a split at
    least this uneven. 1.0 when there are none."""
    if only_reference < 0 or only_run < 0:
        raise ValueError("discordant counts must be ≥ 0")
    n = only_reference + only_run
    if n == 0:
        return 1.0
    k = min(only_reference, only_run)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


@dataclass
class Discordance:
    """Images of one outcome (π/6, π/18 or class) for a run and its reference."""

    both: int
    only_reference: int
    only_run: int
    neither: int

    @property
    def p_value(self) -> float:
        return mcnemar_p(self.only_reference, self.only_run)

    def as_dict(self) -> dict:
        return {"both": self.both, "only_reference": self.only_reference, "only_run": self.only_run,
                "neither": self.neither, "p_mcnemar": self.p_value}


@dataclass
class PairedComparison:
    """One run against the reference run on the ``n_common`` images both scored."""

    label: str
    reference: str
    n_common: int
    outcomes: dict[str, Discordance]

    def as_dict(self) -> dict:
        return {"label": self.label, "reference": self.reference, "n_common": self.n_common,
                **{k: d.as_dict() for k, d in self.outcomes.items()}}


def _key(r: ImageResult) -> tuple[str, int, str]:
    return (r.image_id, r.occlusion_level, r.nuisance)


def compare(reference: RunResult, run: RunResult) -> PairedComparison:
    """``run`` against ``reference`` on the images both scored."""
    ref = {_key(r): r for r in reference.results}
    mine = {_key(r): r for r in run.results}
    common = [k for k in ref if k in mine]
    outcomes = {}
    for key, _, right in OUTCOMES:
        n = Counter((right(ref[k]), right(mine[k])) for k in common)  # (reference right, run right) -> images
        outcomes[key] = Discordance(both=n[True, True], only_reference=n[True, False], only_run=n[False, True],
                                    neither=n[False, False])
    return PairedComparison(run.label, reference.label, len(common), outcomes)


def paired_comparisons(runs: Sequence[RunResult]) -> list[PairedComparison]:
    """Every run after the first against the first; empty for a single run."""
    return [compare(runs[0], r) for r in runs[1:]]


def paired_table(comparisons: Sequence[PairedComparison]) -> tuple[list[str], list[list[str]]]:
    """Header and rows (one per compared run): images right only in the reference / only in the run
    and McNemar's p for each outcome."""
    header = ["run", "against", "n common"]
    for _, title, _ in OUTCOMES:
        header += [f"{title}: only against", f"{title}: only run", f"{title}: p"]
    rows = []
    for c in comparisons:
        row = [c.label, c.reference, str(c.n_common)]
        for key, _, _ in OUTCOMES:
            d = c.outcomes[key]
            row += [str(d.only_reference), str(d.only_run), f"{d.p_value:.3g}"]
        rows.append(row)
    return header, rows
