"""Optimizers and per-step learning-rate schedules (cosine, step, one-cycle, constant) with linear warm-up."""

from __future__ import annotations

import math

import torch

from .config_parts import OptimSettings


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups of the trainable parameters: weight decay on weights, none on norms/biases."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model: torch.nn.Module, optim: OptimSettings) -> torch.optim.Optimizer:
    """SGD (momentum, Nesterov) or AdamW over all parameters, weight decay on weights only (not norms/biases)."""
    groups = decay_groups(model, optim.weight_decay)
    lr = optim.setting("lr")
    if optim.optimizer == "sgd":
        momentum = optim.setting("momentum")
        nesterov = optim.setting("nesterov") and momentum > 0
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    return torch.optim.AdamW(groups, lr=lr)


def default_milestones(epochs: int) -> tuple[int, ...]:
    """The step schedule's default: at 50% and 75% of the epochs, keeping only those inside the run
    (2 epochs: (1,); 1 epoch: none, so the learning rate stays as set)."""
    return tuple(sorted({m for m in (epochs // 2, (3 * epochs) // 4) if 0 < m < epochs}))


def lr_factor(step: int, steps_per_epoch: int, optim: OptimSettings) -> float:
    """The learning-rate multiplier at optimizer step `step` (0-based)."""
    total = optim.epochs * steps_per_epoch
    warmup = int(optim.warmup_epochs * steps_per_epoch)
    if optim.schedule == "onecycle":
        # Up linearly for the first 25% (or the warm-up), then cosine down to 0.
        warmup = warmup or max(1, int(0.25 * total))
    if step < warmup:
        return (step + 1) / warmup
    if optim.schedule == "constant":
        return 1.0
    if optim.schedule == "step":
        milestones = optim.milestones if optim.milestones is not None else default_milestones(optim.epochs)
        epoch = step // steps_per_epoch
        return optim.setting("gamma") ** sum(epoch >= m for m in milestones)
    return warmup_cosine(step, total, warmup)


def warmup_cosine(step: int, total: int, warmup: int = 0) -> float:
    """Multiplier at step `step` of `total`: linear warm-up over `warmup` steps, then cosine down to 0."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def build_scheduler(
    optimizer: torch.optim.Optimizer, steps_per_epoch: int, optim: OptimSettings
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-step LambdaLR following `lr_factor`; its state_dict resumes it exactly."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps_per_epoch, optim))
