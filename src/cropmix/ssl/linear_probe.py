"""Linear probe on frozen features: a linear classifier trained on pre-computed features.

Features are standardised with the training set's mean and standard deviation (the affine-free
BatchNorm MAE puts before its probe head), then one `nn.Linear` is trained with SGD + momentum and a
cosine schedule on shuffled mini-batches. Computing features once (no augmentation) keeps a probe to
seconds on a CPU; the paper's probes train through augmentation, which this does not reproduce.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as nnf


def linear_probe(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 30,
    lr: float = 0.1,
    weight_decay: float = 0.0,
    batch_size: int = 256,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Train a linear classifier on frozen features; returns {"train_acc", "test_acc"} in [0, 1]."""
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs!r} and {batch_size!r}")
    mean = train_features.mean(dim=0, keepdim=True)
    std = train_features.std(dim=0, keepdim=True).clamp_min(1e-6)
    xtr, xte = (train_features - mean) / std, (test_features - mean) / std
    ytr, yte = train_labels.long(), test_labels.long()
    head = nn.Linear(xtr.shape[1], num_classes)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
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
        train_acc = float((head(xtr).argmax(1) == ytr).float().mean())
        test_acc = float((head(xte).argmax(1) == yte).float().mean())
    return {"train_acc": train_acc, "test_acc": test_acc}
