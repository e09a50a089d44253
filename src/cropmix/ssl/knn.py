"""Frozen-feature evaluation: feature extraction and the weighted kNN classifier of Wu et al. (2018).

kNN as in InstDisc / MoCo CIFAR demos: cosine similarity to every training feature, the k nearest vote
for their labels with weight exp(similarity / temperature), the class with the largest vote wins.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as nnf


@torch.no_grad()
def extract_features(
    features: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, batch_size: int = 512
) -> torch.Tensor:
    """`features` of uint8 (N, C, H, W) images (scaled to [0, 1]), in batches, as float (N, D) on the CPU."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {tuple(images.shape)}")
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        out.append(features(x).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def knn_predict(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Predicted labels of `test_features` by a temperature-weighted vote of the k cosine-nearest training features."""
    if train_features.shape[0] != train_labels.shape[0]:
        raise ValueError(
            f"train_features and train_labels disagree: {train_features.shape[0]} vs {train_labels.shape[0]}"
        )
    if k < 1 or not temperature > 0:
        raise ValueError(f"k must be >= 1 and temperature > 0, got k={k!r}, temperature={temperature!r}")
    k = min(k, train_features.shape[0])
    bank = nnf.normalize(train_features.float(), dim=1)
    labels = train_labels.long()
    preds = []
    for start in range(0, test_features.shape[0], batch_size):
        q = nnf.normalize(test_features[start : start + batch_size].float(), dim=1)
        sim, idx = (q @ bank.t()).topk(k, dim=1)
        weight = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes).scatter_add_(1, labels[idx], weight)
        preds.append(votes.argmax(dim=1))
    return torch.cat(preds)


def knn_accuracy(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int = 200,
    temperature: float = 0.1,
) -> float:
    """Top-1 accuracy (in [0, 1]) of `knn_predict`."""
    pred = knn_predict(train_features, train_labels, test_features, num_classes, k, temperature)
    return float((pred == test_labels.long()).double().mean())
