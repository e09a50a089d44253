"""The mixing chain of docs/method.md, shared by every kernel.

    m = view[order[0]]
    for k, step in enumerate(steps):
        a, b = m, view[order[k + 1]]
        the permuted view (b if permuted_new else a) becomes view[channel_perm]
        mixup:  m = lam * a + (1 - lam) * b
        cutmix: m = base with the pasted view's pixels inside box (b's if pasted_new else a's)

`mix_step` is one step as written. A chain of Mixup steps is linear, so it is also one
weighted sum of channel-mapped views: `mixup_weights` for one image (plain Python: a handful
of numbers) and `mixup_slots` for a batch (numpy) compute that closed form side by side, the
same products in the same order (tests/test_fast_paths.py checks they agree).
"""

from __future__ import annotations

import numpy as np
import torch

from ..params import BatchParams, CropMixParams, MixStep


def mixup_weights(params: CropMixParams, num_channels: int) -> tuple[list[float], list[list[int]]]:
    """The Mixup chain of `params` in closed form: out[c] = sum_k weight[k] * views[k][source[k][c]].

    views are in mixing order. Each step scales the running image by lam and the new view by
    1 - lam; a channel permutation of either only re-routes channels.
    """
    n = len(params.order)
    weight = [1.0] + [0.0] * (n - 1)
    source = [list(range(num_channels)) for _ in range(n)]
    for k, step in enumerate(params.steps, start=1):
        perm = step.channel_perm
        if perm is not None and not step.permuted_new:
            source[:k] = [[row[c] for c in perm] for row in source[:k]]
        elif perm is not None:
            source[k] = list(perm)
        weight[:k] = [w * step.lam for w in weight[:k]]
        weight[k] = 1.0 - step.lam
    return weight, source


def mixup_slots(params: BatchParams, num_channels: int) -> tuple[np.ndarray, np.ndarray]:
    """`mixup_weights` for a whole batch, per crop slot: weight (B, M) and source (B, M, C).

    out[b, d] = sum over m of weight[b, m] * view[b, m][source[b, m, d]]; m indexes crop slots
    (band order), so the mixing order is absorbed; unused slots weigh 0.
    """
    B, M = params.order.shape
    C = num_channels
    weight = np.zeros((B, M))
    weight[:, 0] = 1.0
    source = np.tile(np.arange(C), (B, M, 1))
    for k in range(1, M):
        act = k < params.n
        if params.channel_perm is not None:
            perm = params.channel_perm[:, k - 1]
            new_side = act & params.permuted_new[:, k - 1]
            mix_side = act & ~params.permuted_new[:, k - 1]
            permuted = np.take_along_axis(source[:, :k], perm[:, None, :], axis=2)
            source[:, :k] = np.where(mix_side[:, None, None], permuted, source[:, :k])
            source[:, k] = np.where(new_side[:, None], perm, source[:, k])
        lam = params.lam[:, k - 1]
        weight[:, :k] *= np.where(act, lam, 1.0)[:, None]
        weight[:, k] = np.where(act, 1.0 - lam, 0.0)
    rows = np.arange(B)[:, None]
    slot_weight, slot_source = np.zeros_like(weight), np.zeros_like(source)
    slot_weight[rows, params.order] = weight
    slot_source[rows, params.order] = source
    return slot_weight, slot_source


def mixup_uint8_arrays(views: list[np.ndarray], params: CropMixParams) -> np.ndarray:
    """The Mixup chain of `params` on uint8 (h, w, C) or (h, w) numpy views, rounded once to uint8.

    For small outputs numpy's per-call cost is a fraction of torch's.
    """
    C = views[0].shape[2] if views[0].ndim == 3 else 1
    weight, source = mixup_weights(params, C)
    identity = list(range(C))
    mixed = None
    for w, channels, array in zip(weight, source, views, strict=True):
        if channels != identity:
            array = array[..., channels]
        term = np.multiply(array, np.float32(w), dtype=np.float32)
        mixed = term if mixed is None else np.add(mixed, term, out=mixed)
    mixed += np.float32(0.5)  # a convex combination of values in [0, 255]: rounding half up needs no clamp
    return mixed.astype(np.uint8)


def mix_step(running: torch.Tensor, new: torch.Tensor, step: MixStep) -> torch.Tensor:
    """One mixing step on (C, h, w) tensors: the running image with the next view (both float for Mixup)."""
    perm = None if step.channel_perm is None else list(step.channel_perm)
    if not step.cutmix:
        if perm is not None:
            if step.permuted_new:
                new = new[perm]
            else:
                running = running[perm]
        return torch.lerp(new, running, step.lam)
    assert step.box is not None
    top, left, height, width = step.box
    base, pasted = (running, new) if step.pasted_new else (new, running)
    patch = pasted[:, top : top + height, left : left + width]
    if perm is not None:
        patch = patch[perm]  # under CutMix the pasted view is the permuted one
    out = base.clone()
    out[:, top : top + height, left : left + width] = patch
    return out
