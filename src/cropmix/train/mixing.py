"""Batch-level Mixup and CutMix with label mixing, and the soft-target cross-entropy they need."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cropmix.transforms.mixops import cutmix_box


def soft_targets(targets: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets (B, K), with label smoothing spread over all classes."""
    soft = F.one_hot(targets, num_classes).float()
    if smoothing > 0:
        soft = soft * (1 - smoothing) + smoothing / num_classes
    return soft


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against probability targets (B, K)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1).mean()


def _beta(alpha: float) -> float:
    # Drawn from torch's global RNG (Dirichlet sampling), so seeds reproduce it.
    return float(torch.distributions.Beta(torch.tensor(alpha), torch.tensor(alpha)).sample())


def mixup_batch(images: torch.Tensor, soft: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al.): lam ~ Beta(alpha, alpha); mix the batch with a shuffled copy, labels alike."""
    lam = _beta(alpha)
    perm = torch.randperm(len(images)).to(images.device)
    return lam * images + (1 - lam) * images[perm], lam * soft + (1 - lam) * soft[perm]


def cutmix_batch(images: torch.Tensor, soft: torch.Tensor, alpha: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix (Yun et al.): paste a box of a shuffled copy; labels mixed by the pasted area actually kept."""
    lam = _beta(alpha)
    perm = torch.randperm(len(images)).to(images.device)
    height, width = images.shape[-2:]
    u_y, u_x = torch.rand(2).tolist()
    top, left, h, w = cutmix_box(height, width, lam, u_y, u_x)
    mixed = images.clone()
    mixed[..., top : top + h, left : left + w] = images[perm][..., top : top + h, left : left + w]
    kept = 1 - h * w / (height * width)
    return mixed, kept * soft + (1 - kept) * soft[perm]


BATCH_MIX_FUNCTIONS = {"mixup": mixup_batch, "cutmix": cutmix_batch}
