"""FGSM robustness (Goodfellow et al. 2015): one signed-gradient step in [0, 1] pixel space."""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .predict import batches


def fgsm_attack(model: nn.Module, images: Tensor, targets: Tensor, eps: float) -> Tensor:
    """images + eps * sign(grad of the cross-entropy of the true label), clamped to [0, 1]."""
    images = images.detach().clone().requires_grad_(True)
    # Summed, not averaged, so that large batches do not shrink gradients towards zero (sign would be lost).
    loss = F.cross_entropy(model(images).float(), targets, reduction="sum")
    (grad,) = torch.autograd.grad(loss, images)
    return (images.detach() + eps * grad.sign()).clamp_(0, 1)


def check_eps(eps: object, name: str) -> None:
    """ValueError naming `name` unless `eps` is an FGSM budget: a number in [0, 1] (pixel units)."""
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps <= 1:
        raise ValueError(f"{name} must be a number in [0, 1] (pixel units, e.g. 8/255), got {eps!r}")


def fgsm_accuracy(
    model: nn.Module, loader: Iterable, device: torch.device | str, eps: float = 8 / 255, *, progress: bool = True
) -> float:
    """Top-1 accuracy (percent) on FGSM images of budget `eps` (in [0, 1] pixel units), model in eval mode."""
    check_eps(eps, "eps")
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    correct = total = 0
    try:
        for images, targets in batches(loader, device, desc=f"fgsm eps={eps:.4f}", progress=progress):
            adversarial = fgsm_attack(model, images, targets, float(eps))
            with torch.no_grad():
                correct += int((model(adversarial).argmax(dim=1) == targets).sum())
            total += len(targets)
    finally:
        model.train(was_training)
    if total == 0:
        raise ValueError("the loader yielded no batches")
    return 100.0 * correct / total
