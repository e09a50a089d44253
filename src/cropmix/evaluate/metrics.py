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
    return {f"top{k}": 100.0 * hits[:, :k].any(dim=1).float().mean().item() for k in ks}


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


def calibration_errors(probs: Tensor, targets: Tensor, n_bins: int = 15, binning: str = "width") -> dict[str, float]:
    """{"ece": ..., "rms": ...} in percent over confidence bins (see `calibration_bins`).

    ECE = sum_b (n_b / N) |acc_b - conf_b|; RMS = sqrt(sum_b (n_b / N) (acc_b - conf_b)^2), the RMS
    calibration error of Hendrycks et al. (their code bins by mass, 100 samples a bin: binning="mass").
    """
    bins = calibration_bins(probs, targets, n_bins, binning)
    gap = bins.accuracy - bins.confidence
    weights = bins.weights
    ece = float((weights * gap.abs()).sum())
    rms = math.sqrt(float((weights * gap.square()).sum()))
    return {"ece": 100.0 * ece, "rms": 100.0 * rms}
