"""`evaluate_classifier`: every metric the CropMix paper reports for a classifier, in one call."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn

from cropmix.integrations import optional_picture

from .fgsm import fgsm_accuracy
from .metrics import calibration_errors, topk_accuracy
from .options import ClassifierEval
from .predict import predict
from .reliability import save_reliability_diagram
from .robustness import corruption_accuracy


def evaluate_classifier(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    options: ClassifierEval | None = None,
    *,
    reliability_png: str | Path | None = None,
    corruption_loader: Iterable | None = None,
) -> dict[str, float | dict]:
    """Clean top-1/top-5, ECE and RMS calibration error (percent); as `options` asks (default: nothing
    more), FGSM top-1 ("fgsm_top1") and corruption accuracy ("corruption_mean" and "corruption", see
    `corruption_accuracy`); and a reliability diagram written to `reliability_png`.

    corruption_loader: the images for the corruption pass (default: `loader`), e.g. a loader over a
    fixed random subset of the test split, since that pass costs one forward per corruption and severity.
    """
    options = ClassifierEval() if options is None else options
    progress, n_bins = options.progress, options.n_bins
    logits, targets = predict(model, loader, device, amp=options.amp, progress=progress)
    probs = logits.softmax(dim=1)
    results: dict[str, float | dict] = {}
    results.update(topk_accuracy(logits, targets))
    results.update(calibration_errors(probs, targets, n_bins))
    if reliability_png is not None:
        optional_picture(save_reliability_diagram, reliability_png, probs, targets, n_bins=n_bins)
    if options.fgsm:
        results["fgsm_top1"] = fgsm_accuracy(model, loader, device, options.fgsm_eps, progress=progress)
    if options.corruptions is not None:
        corruption_images = loader if corruption_loader is None else corruption_loader
        summary = corruption_accuracy(model, corruption_images, device, options.corruptions, progress=progress)
        results["corruption_mean"] = summary["mean"]
        results["corruption"] = summary
    return results
