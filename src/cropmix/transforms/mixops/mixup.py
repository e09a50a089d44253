"""Mixup of two views: m = lam * a + (1 - lam) * b with lam ~ Beta(alpha/N, alpha/N)."""

from __future__ import annotations

from typing import Any

import torch

from ..params import MixStep
from .op import MixOp


def mixup_step(running: torch.Tensor, new: torch.Tensor, step: MixStep) -> torch.Tensor:
    """One Mixup step on float (C, h, w) tensors: the permuted view re-routed, then lam * running + (1 - lam) * new."""
    if step.channel_perm is not None:
        perm = list(step.channel_perm)
        if step.permuted_new:
            new = new[perm]
        else:
            running = running[perm]
    return torch.lerp(new, running, step.lam)


def _permuted_new(lam: Any, pasted_new: Any) -> Any:
    return lam > 0.5  # the view weighing <= 0.5 is permuted


MIXUP = MixOp(name="mixup", draws=("beta",), permuted_new=_permuted_new, step=mixup_step, batched="weighted")
