"""Linear probe on frozen features: a linear classifier trained on pre-computed features.

Features are standardised with the training set's mean and standard deviation (the affine-free
BatchNorm MAE puts before its probe head), then one `nn.Linear` is trained with SGD + momentum and a
cosine schedule on shuffled mini-batches. Computing features once (no augmentation) keeps a probe to
seconds on a CPU; the paper's probes train through augmentation, which this does not reproduce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as nnf


@dataclass(frozen=True)
class ProbeOptions:
    """How `linear_probe` trains its head: epochs over the features, SGD learning rate (cosine schedule),
    weight decay, mini-batch size."""

    epochs: int = 30
    lr: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 256

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    options: ProbeOptions | None = None,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Train a linear classifier on frozen features (as `options` says, default `ProbeOptions()`);
    returns {"train_acc", "test_acc"} in [0, 1]. generator: the shuffling's (default: torch's global one)."""
    options = ProbeOptions() if options is None else options
    epochs, batch_size = options.epochs, options.batch_size
    mean = train_features.mean(dim=0, keepdim=True)
    std = train_features.std(dim=0, keepdim=True).clamp_min(1e-6)
    xtr, xte = (train_features - mean) / std, (test_features - mean) / std
    ytr, yte = train_labels.long(), test_labels.long()
    head = nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.SGD(head.parameters(), lr=options.lr, momentum=0.9, weight_decay=options.weight_decay)
    n = xtr.shape[0]
    steps = epochs * math.ceil(n / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = nnf.cross_entropy(head(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    with torch.no_grad():
        train_acc = float((head(xtr).argmax(1) == ytr).double().mean())
        test_acc = float((head(xte).argmax(1) == yte).double().mean())
    return {"train_acc": train_acc, "test_acc": test_acc}
