"""Representation quality of a pre-trained backbone: kNN and linear-probe accuracies on frozen features."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .knn import extract_features, knn_accuracy
from .linear_probe import ProbeOptions, linear_probe

SUBSET_SEED = 12345  # the pre-training subset and the evaluation images: the same for every run and seed


@dataclass(frozen=True)
class RepresentationOptions:
    """How `evaluate_representation` scores features: the kNN's k neighbours and softmax temperature,
    and the linear probe's training."""

    k: int = 200
    temperature: float = 0.1
    probe: ProbeOptions = ProbeOptions()

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"k must be an int >= 1, got {self.k!r}")
        if (
            isinstance(self.temperature, bool)
            or not isinstance(self.temperature, (int, float))
            or self.temperature <= 0
        ):
            raise ValueError(f"temperature must be a number > 0, got {self.temperature!r}")
        if not isinstance(self.probe, ProbeOptions):
            raise TypeError(f"probe must be a ProbeOptions, got {self.probe!r}")


def evaluate_representation(
    model: nn.Module,
    train_images: torch.Tensor,
    train_labels: torch.Tensor,
    test_images: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    options: RepresentationOptions | None = None,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """kNN accuracy and linear-probe accuracy of `model.features` on frozen features (eval mode), as
    `options` says (default `RepresentationOptions()`)."""
    options = RepresentationOptions() if options is None else options
    was_training = model.training
    model.eval()

    def feats(x: torch.Tensor) -> torch.Tensor:
        return model.features(x.to(device))

    train_f = extract_features(feats, train_images)
    test_f = extract_features(feats, test_images)
    model.train(was_training)
    knn = knn_accuracy(train_f, train_labels, test_f, test_labels, num_classes, options.k, options.temperature)
    probe = linear_probe(train_f, train_labels, test_f, test_labels, num_classes, options.probe)
    return {"knn_acc": knn, "probe_acc": probe["test_acc"], "probe_train_acc": probe["train_acc"]}


def evaluate_split(model: nn.Module, source: Any, config: Any, device: torch.device) -> dict[str, float]:
    """kNN and probe accuracies on `source` (the bank: `config.eval_train` fixed random training images).

    config: a cropmix.ssl.pretrain.PretrainConfig (eval_train, eval_test, knn_k, knn_temperature, probe_epochs).
    """
    from cropmix.data import fixed_subset

    train = source.train
    test = source.test
    idx = fixed_subset(len(train), config.eval_train, SUBSET_SEED) if config.eval_train else torch.arange(len(train))
    tidx = fixed_subset(len(test), config.eval_test, SUBSET_SEED) if config.eval_test else torch.arange(len(test))
    t0 = time.time()
    # The probe draws alike however the model got here (a resumed run, --eval-only); the caller's RNG is kept.
    cuda_devices = range(torch.cuda.device_count()) if device.type == "cuda" else []  # manual_seed seeds them all
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(SUBSET_SEED)
        result = evaluate_representation(
            model,
            train.images[idx],
            train.targets[idx],
            test.images[tidx],
            test.targets[tidx],
            source.num_classes,
            RepresentationOptions(config.knn_k, config.knn_temperature, ProbeOptions(epochs=config.probe_epochs)),
            device,
        )
    return {**result, "eval_seconds": time.time() - t0, "eval_train_images": len(idx), "eval_test_images": len(tidx)}
