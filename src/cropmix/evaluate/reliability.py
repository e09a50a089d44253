"""Reliability diagrams (Guo et al. 2017 style) written as PNG with matplotlib's Agg canvas."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from cropmix.data.safe_files import atomic_writer

from .metrics import calibration_bins, calibration_errors


def save_reliability_diagram(
    probs: Tensor, targets: Tensor, path: str | Path, n_bins: int = 15, title: str | None = None
) -> Path:
    """Write a reliability diagram of softmax `probs` (N, K) to `path` (PNG) and return the path.

    Top: per-bin accuracy bars (n_bins equal-width bins) against the diagonal, the gap to the mean
    confidence shaded; in the legend ECE, the paper's RMS (bins of 100 examples, see
    `rms_calibration_error`) and the RMS over the drawn equal-width bins. Bottom: the histogram of
    confidences. Written through `atomic_writer`: a link planted at `path` is replaced, not followed.
    """
    # The Figure/Agg canvas pair needs no pyplot state and no display, whatever the user's backend.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    bins = calibration_bins(probs, targets, n_bins)
    errors = calibration_errors(probs, targets, n_bins)
    rms = errors["rms"]
    edges = bins.edges.numpy()
    lefts, width = edges[:-1], edges[1] - edges[0]
    centres = lefts + width / 2
    filled = bins.counts.numpy() > 0
    acc, conf = bins.accuracy.numpy(), bins.confidence.numpy()

    fig = Figure(figsize=(5, 6.2), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.bar(lefts[filled], acc[filled], width=width, align="edge", color="#4C72B0", edgecolor="black", label="accuracy")
    gap_base = [min(a, c) for a, c in zip(acc[filled], conf[filled], strict=True)]
    gap_height = [abs(a - c) for a, c in zip(acc[filled], conf[filled], strict=True)]
    top.bar(
        centres[filled], gap_height, bottom=gap_base, width=width * 0.9,
        color="#DD8452", alpha=0.45, hatch="//", edgecolor="#C44E52", linewidth=0.5,
    )  # fmt: skip
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    handles, _ = top.get_legend_handles_labels()
    handles += [
        Patch(facecolor="#DD8452", alpha=0.45, hatch="//", edgecolor="#C44E52", label="gap to confidence"),
        Patch(color="none", label=f"ECE {errors['ece']:.2f}%"),
        Patch(color="none", label="RMS " + ("n/a (< 200 predictions)" if rms is None else f"{rms:.2f}%")),
        Patch(color="none", label=f"RMS, {n_bins} equal-width bins {errors['rms_equal_width']:.2f}%"),
    ]
    top.legend(handles=handles, loc="upper left", fontsize=8)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="accuracy", title=title or "Reliability diagram")
    bottom.bar(lefts, bins.counts.numpy() / bins.counts.sum().item(), width=width, align="edge", color="#55A868")
    bottom.set(xlim=(0, 1), xlabel="confidence (max probability)", ylabel="fraction")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_writer(path, "wb") as handle:
        fig.savefig(handle, format="png")
    return path
