"""Accuracy and calibration metrics, in percent as the CropMix paper reports them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

BINNINGS = ("width", "mass")


def _check_pair(scores: Tensor, targets: Tensor, name: str) -> None:
    if scores.dim() != 2 or targets.dim() != 1 or scores.shape[0] != targets.shape[0]:
        raise ValueError(
            f"{name} must be (N, K) and targets (N,), got {tuple(scores.shape)} and {tuple(targets.shape)}"
        )
    if scores.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one sample")


def topk_accuracy(logits: Tensor, targets: Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, float]:
    """{"top1": ..., "top5": ...}: percent of samples whose target is among the k highest scores.

    Values of k above the number of classes are skipped.
    """
    _check_pair(logits, targets, "logits")
    num_classes = logits.shape[1]
    ks = [k for k in ks if k <= num_classes]
    if not ks:
        return {}
    top = logits.topk(max(ks), dim=1).indices
    hits = top == targets.view(-1, 1).to(top.device)
    # In float64: float32 would report 1 of 3 as 33.33333432674408.
    return {f"top{k}": 100.0 * hits[:, :k].any(dim=1).double().mean().item() for k in ks}


@dataclass(frozen=True)
class CalibrationBins:
    """Per-bin statistics of the max-probability confidence: edges (n_bins + 1,), counts, accuracy and
    mean confidence per bin (fractions in [0, 1]; 0 for empty bins)."""

    edges: Tensor
    counts: Tensor
    accuracy: Tensor
    confidence: Tensor

    @property
    def weights(self) -> Tensor:
        return self.counts / self.counts.sum()


def calibration_bins(probs: Tensor, targets: Tensor, n_bins: int = 15, binning: str = "width") -> CalibrationBins:
    """Bin samples by confidence (max probability).

    binning="width": equal-width bins (lo, hi] over [0, 1]; "mass": n_bins bins of (nearly) equal counts.
    """
    _check_pair(probs, targets, "probs")
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be an int >= 1, got {n_bins!r}")
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}, got {binning!r}")
    probs = probs.detach().double().cpu()
    if bool((probs < 0).any()) or bool((probs > 1 + 1e-6).any()):
        raise ValueError("probs must lie in [0, 1] (pass softmax probabilities, not logits)")
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets.cpu()).double()
    if binning == "width":
        edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
        index = torch.bucketize(confidence, edges[1:-1], right=False)
    else:
        order = confidence.argsort()
        index = torch.empty_like(order)
        index[order] = torch.arange(len(order)) * n_bins // len(order)
        sorted_conf = confidence[order]
        cuts = torch.arange(1, n_bins) * len(order) // n_bins
        inner = sorted_conf[cuts.clamp(max=len(order) - 1)] if len(order) else sorted_conf
        edges = torch.cat([torch.zeros(1, dtype=torch.float64), inner, torch.ones(1, dtype=torch.float64)])
    counts = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, torch.ones_like(confidence))
    safe = counts.clamp(min=1)
    accuracy = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, correct) / safe
    mean_conf = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, index, confidence) / safe
    return CalibrationBins(edges, counts, accuracy, mean_conf)


RMS_BIN_SIZE = 100
RMS_MIN_SAMPLES = 2 * RMS_BIN_SIZE


def rms_calibration_error(confidence: Tensor, correct: Tensor, bin_size: int = RMS_BIN_SIZE) -> float | None:
    """The RMS calibration error (percent) of the CropMix paper: Hendrycks et al.'s `calib_err` (p="2",
    beta=100), as in the PixMix and outlier-exposure `calibration_tools.py` the paper's numbers come from.

    Confidences are sorted ascending and cut into consecutive bins of `bin_size` examples; the last bin
    absorbs the remainder (N mod bin_size). Quirks of the reference, kept so that figures compare:
    - the last bin (the most confident examples, bin_size to 2 * bin_size - 1 of them) is left out of
      the sum, yet every bin is weighted by n_b / N with N counting all examples, so the weights sum
      to less than 1;
    - RMS = sqrt(sum_b (n_b / N) (mean confidence_b - mean correct_b)^2) over the remaining bins.
    Ties in confidence are ordered by position (a stable sort); the reference's quicksort leaves their
    order, and so their bin, unspecified.

    With fewer than 2 * bin_size examples no bin is left to score (the reference fails below bin_size
    and returns 0 up to 2 * bin_size - 1): the result is None, "not defined", rather than a made-up 0.
    """
    if isinstance(bin_size, bool) or not isinstance(bin_size, int) or bin_size < 1:
        raise ValueError(f"bin_size must be an int >= 1, got {bin_size!r}")
    confidence = confidence.detach().double().cpu().flatten()
    correct = correct.detach().double().cpu().flatten()
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence and correct must have the same length, got {len(confidence)} and {len(correct)}")
    total = len(confidence)
    scored_bins = total // bin_size - 1  # the remainder joins the last bin, which is not scored
    if scored_bins < 1:
        return None
    order = confidence.argsort(stable=True)
    kept = scored_bins * bin_size
    conf = confidence[order][:kept].view(scored_bins, bin_size).mean(dim=1)
    acc = correct[order][:kept].view(scored_bins, bin_size).mean(dim=1)
    return 100.0 * math.sqrt(float((bin_size / total * (conf - acc).square()).sum()))


def calibration_errors(
    probs: Tensor, targets: Tensor, n_bins: int = 15, binning: str = "width"
) -> dict[str, float | None]:
    """{"ece", "rms", "rms_equal_width"} in percent (see `calibration_bins` for the n_bins bins).

    ece = sum_b (n_b / N) |acc_b - conf_b| over the n_bins bins (torchmetrics' l1 ECE with the default
    15 equal-width bins). rms: the paper's RMS, Hendrycks et al.'s bins of 100 examples (see
    `rms_calibration_error`; None below 200 predictions). rms_equal_width (rms_equal_mass for
    binning="mass"): sqrt(sum_b (n_b / N) (acc_b - conf_b)^2) over the n_bins bins, a different figure.
    """
    bins = calibration_bins(probs, targets, n_bins, binning)
    gap = bins.accuracy - bins.confidence
    weights = bins.weights
    ece = float((weights * gap.abs()).sum())
    binned_rms = math.sqrt(float((weights * gap.square()).sum()))
    confidence, predicted = probs.detach().double().cpu().max(dim=1)
    rms = rms_calibration_error(confidence, predicted == targets.cpu())
    other = "rms_equal_width" if binning == "width" else "rms_equal_mass"
    return {"ece": 100.0 * ece, "rms": rms, other: 100.0 * binned_rms}
