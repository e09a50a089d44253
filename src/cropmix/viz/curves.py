"""Training curves of one run, and side-by-side comparison plots of several runs, written as PNG through
`atomic_writer`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cropmix.data.safe_files import atomic_writer

# (row key, title) of each panel of curves.png: a training run's, and a pre-training run's.
CURVE_PANELS = (("train_loss", "train loss"), ("test_top1", "test top-1 (%)"), ("lr", "learning rate"))
PRETRAIN_PANELS = (("loss", "pre-training loss"), ("lr", "learning rate"))


# Run names are read from config.json files (someone else's): drawn as plain text, at most this long.
MAX_LABEL_CHARS = 40


def plain_label(text: str) -> str:
    """`text` as matplotlib draws it literally: every '$' escaped (between two, matplotlib parses maths,
    and a crafted name makes its parser recurse past Python's limit), cut to MAX_LABEL_CHARS, and a
    leading '_' (a label the legend leaves out) kept by a space before it."""
    if len(text) > MAX_LABEL_CHARS:
        text = text[: MAX_LABEL_CHARS - 1] + "…"
    return (" " if text.startswith("_") else "") + text.replace("$", r"\$")


def _points(rows: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(epoch, value) of the rows where both are numbers. Rows come from metrics.jsonl files (someone else's):
    matplotlib would draw strings as categories, a tick label each, which for a few thousand rows takes
    minutes."""

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return [(r["epoch"], r[key]) for r in rows if number(r.get("epoch")) and number(r.get(key))]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_training_curves(rows: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """A PNG with train loss, train/test top-1 and learning rate per epoch."""
    return save_comparison_curves({"run": rows}, path)


def save_comparison_curves(
    runs: dict[str, list[dict[str, Any]]],
    path: str | os.PathLike,
    panels: tuple[tuple[str, str], ...] = CURVE_PANELS,
) -> Path:
    """One PNG, one panel per (row key, title) of `panels`, one line per run (label -> per-epoch rows);
    the legend on the test top-1 panel, or the first."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    axes = axes[0]
    for ax, (key, title) in zip(axes, panels, strict=True):
        for label, rows in runs.items():
            points = _points(rows, key)
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", markersize=2.5, label=plain_label(label))
            if key == "test_top1" and len(runs) == 1:
                train = _points(rows, "train_top1")
                if train:
                    ax.plot(*zip(*train, strict=True), linestyle="--", label="train top-1")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    keys = [key for key, _ in panels]
    axes[keys.index("test_top1") if "test_top1" in keys else 0].legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return _save_png(plt, fig, path)


# Which way is better, for the bar titles (calibration errors: lower; accuracies: higher).
LOWER_IS_BETTER = ("ece", "rms", "loss")


def save_comparison_bars(table: list[dict[str, Any]], metrics: list[str], path: str | os.PathLike) -> Path:
    """Bars of final metrics per group: the mean, with the standard deviation as an error bar only where
    a group has seeds (a `<metric>_std` that is not None and n > 1). A group without the metric gets no
    bar but an "n/a" mark, so a missing figure is never drawn as a zero.

    The y axes are zoomed to the values (they do not start at 0), which the titles say, with the
    direction that is better.
    """
    plt = _pyplot()
    metrics = [m for m in metrics if any(row.get(f"{m}_mean") is not None for row in table)]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(3.2 * max(1, len(metrics)), 3.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        _metric_bars(ax, table, metric)
    seeds = "mean and sd over seeds" if any(row.get("n", 1) > 1 for row in table) else "one run each"
    fig.suptitle(f"{seeds}; y axes zoomed, not from 0", fontsize=8)
    fig.tight_layout()
    return _save_png(plt, fig, Path(path))


def _metric_bars(ax: Any, table: list[dict[str, Any]], metric: str) -> None:
    """One panel of `save_comparison_bars`: the groups that have `metric`, and "n/a" where one has not."""
    labels = [plain_label(row["label"]) for row in table]
    present = [i for i, row in enumerate(table) if row.get(f"{metric}_mean") is not None]
    means = {i: float(table[i][f"{metric}_mean"]) for i in present}
    seeded = [i for i in present if table[i].get("n", 1) > 1 and table[i].get(f"{metric}_std") is not None]
    stds = {i: float(table[i][f"{metric}_std"]) if i in seeded else 0.0 for i in present}
    ax.bar(present, [means[i] for i in present], color=[f"C{i}" for i in present])
    if seeded:
        ax.errorbar(seeded, [means[i] for i in seeded], yerr=[stds[i] for i in seeded], fmt="none", ecolor="black",
                    capsize=3)  # fmt: skip
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(labels) - 0.4)  # every group keeps its place, with a bar or not
    better = "lower" if any(key in metric for key in LOWER_IS_BETTER) else "higher"
    ax.set_title(f"{metric} ({better} is better)", fontsize=9)
    low, high = min(means[i] - stds[i] for i in present), max(means[i] + stds[i] for i in present)
    if high > low:
        ax.set_ylim(max(0.0, low - 0.3 * (high - low)), high + 0.15 * (high - low))
    for i in sorted(set(range(len(labels))) - set(present)):
        ax.text(i, 0.02, "n/a", transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)


def _save_png(plt, fig, path: Path) -> Path:
    """Write `fig` to `path` as PNG through `atomic_writer` (a link planted at `path` is replaced, not
    followed) and close it."""
    try:
        with atomic_writer(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110)
    finally:
        plt.close(fig)
    return path
