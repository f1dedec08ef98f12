"""PNG figures for the report, drawn with matplotlib's Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first


def fid_curve(metrics: list[dict], path: Path) -> Path | None:
    """Every `fid_*` series in metrics.jsonl against the training step; None when there is none."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in metrics:
        for k, v in line.items():
            if k.startswith("fid_"):
                series.setdefault(k, []).append((line["step"], v))
    return fid_curves(series, path, "FID")


def fid_curves(
    series: dict[str, list[tuple[int, float]]], path: Path, ylabel: str, reference: float | None = None
) -> Path | None:
    """One line per series of (step, FID) points, log scale; None when there is nothing to draw."""
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, points in sorted(series.items()):
        xs, ys = zip(*sorted(points))
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    if reference is not None:
        ax.axhline(reference, color="k", linestyle="--", linewidth=1, label="real held-out data")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"{ylabel} (lower is better)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small" if len(series) > 6 else "medium")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def accuracy_bars(groups: dict[str, dict[str, tuple[float, float]]], path: Path, title: str) -> Path:
    """Grouped bars: {group: {series: (mean, std)}} with error bars."""
    names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(names), 3.5))
    for i, s in enumerate(series):
        means = [groups[g].get(s, (float("nan"), 0.0))[0] for g in names]
        stds = [groups[g].get(s, (0.0, 0.0))[1] for g in names]
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(names))]
        ax.bar(xs, means, width, yerr=stds, capsize=3, label=s)
    ax.set_xticks(range(len(names)), names)
    lows = [m for g in groups.values() for m, _ in g.values()]
    ax.set_ylim(max(0.0, min(lows) - 0.1), 1.0)
    ax.set_ylabel("test accuracy on real data")
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
