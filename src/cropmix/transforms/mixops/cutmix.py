"""CutMix of two views: a box of one, sides sqrt(1 - lam) of the output (lam ~ U(0, 1)), pasted onto the other."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ..params import MixStep
from .op import MixOp


def cutmix_box(out_h: int, out_w: int, lam: float, u_y: float, u_x: float) -> tuple[int, int, int, int]:
    """CutMix's box (top, left, height, width): sides sqrt(1 - lam) of the output, centred at (u_y, u_x)
    of it, clipped. The one rule for every CutMix here: CropMix's CutMix of crops and the batch-level one."""
    side = math.sqrt(1.0 - lam)
    ch, cw = round(out_h * side), round(out_w * side)
    y1, x1 = math.floor(u_y * out_h) - ch // 2, math.floor(u_x * out_w) - cw // 2
    y2, x2 = min(max(y1 + ch, 0), out_h), min(max(x1 + cw, 0), out_w)
    y1, x1 = min(max(y1, 0), out_h), min(max(x1, 0), out_w)
    return (y1, x1, y2 - y1, x2 - x1)


def cutmix_boxes(out_h: int, out_w: int, lam: np.ndarray, u_y: np.ndarray, u_x: np.ndarray) -> np.ndarray:
    """`cutmix_box` elementwise -> (*lam.shape, 4) int64."""
    side = np.sqrt(1.0 - lam)
    ch, cw = np.rint(out_h * side), np.rint(out_w * side)
    y1 = np.floor(u_y * out_h) - ch // 2
    x1 = np.floor(u_x * out_w) - cw // 2
    y2, x2 = np.clip(y1 + ch, 0, out_h), np.clip(x1 + cw, 0, out_w)
    y1, x1 = np.clip(y1, 0, out_h), np.clip(x1, 0, out_w)
    return np.stack([y1, x1, y2 - y1, x2 - x1], axis=-1).astype(np.int64)


def cutmix_step(running: torch.Tensor, new: torch.Tensor, step: MixStep) -> torch.Tensor:
    """One CutMix step on (C, h, w) tensors: the pasted view's box (permuted, if a permutation applies) on the base."""
    assert step.box is not None
    top, left, height, width = step.box
    base, pasted = (running, new) if step.pasted_new else (new, running)
    patch = pasted[:, top : top + height, left : left + width]
    if step.channel_perm is not None:
        patch = patch[list(step.channel_perm)]  # under CutMix the pasted view is the permuted one
    out = base.clone()
    out[:, top : top + height, left : left + width] = patch
    return out


def _permuted_new(lam: Any, pasted_new: Any) -> Any:
    return pasted_new  # the pasted view is permuted


CUTMIX = MixOp(
    name="cutmix",
    draws=("lam", "cut_y", "cut_x", "paste"),
    permuted_new=_permuted_new,
    step=cutmix_step,
    batched="selected",
    box=cutmix_box,
    boxes=cutmix_boxes,
)
