"""The report's figures for ``ntdm eval``: accuracy against occlusion level and the pose-error histogram."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ntdm_cli.eval.scoring import RunResult
from ntdm_cli.fsutil import write_bytes

def plot_accuracy(runs: Sequence[RunResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({lv for r in runs for lv in r.summary["by_occlusion"]})
    groups, source, xlabel = levels, "by_occlusion", "occlusion level"
    if not levels:
        groups = sorted({n for r in runs for n in r.summary["by_nuisance"]})
        source, xlabel = "by_nuisance", "OOD nuisance"
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    x = np.arange(len(groups))
    for j, r in enumerate(runs):
        color = f"C{j % 10}"
        get = lambda key: [100 * (r.summary[source].get(g, {}).get(key, float("nan"))) for g in groups]  # noqa: E731
        axes[0].plot(x, get("acc_pi_6"), "o-", color=color, label=f"{r.label} π/6")
        axes[0].plot(x, get("acc_pi_18"), "s--", color=color, label=f"{r.label} π/18")
        axes[1].plot(x, get("amodal_iou"), "o-", color=color, label=f"{r.label} amodal IoU")
        axes[1].plot(x, get("class_acc"), "^:", color=color, label=f"{r.label} class acc")
    for ax, title in zip(axes, ("pose accuracy (%)", "amodal IoU / class accuracy (%)")):
        ax.set_xticks(x, groups)
        ax.set_xlabel(xlabel)
        ax.set_ylim(0, 100)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def plot_histogram(runs: Sequence[RunResult], path: Path, bin_deg: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.arange(0.0, 180.0 + bin_deg, bin_deg)
    bins[-1] = max(bins[-1], 180.0 + 1e-9)
    for j, r in enumerate(runs):
        err = np.degrees([x.pose_error for x in r.results])
        ax.hist(err, bins=bins, histtype="step", linewidth=1.5, color=f"C{j % 10}", label=f"{r.label} (n={len(err)})")
    for t, name in ((30, "π/6"), (10, "π/18")):
        ax.axvline(t, color="gray", linestyle=":", linewidth=1)
        ax.text(t, ax.get_ylim()[1] * 0.95, f" {name}", color="gray", fontsize=8, va="top")
    ax.set_xlim(0, 180)
    ax.set_xlabel("pose error (°)")
    ax.set_ylabel("images")
    ax.set_title("pose error histogram (non-finite predictions at 180°)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def save_figure(fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes(path, buf.getvalue())

