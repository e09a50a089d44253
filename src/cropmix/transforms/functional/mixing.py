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
same products in the same order (tests/test_fast_paths.py checks they agree). A CutMix chain
has a closed form too, per output pixel: `cutmix_tables` (host numbers for a batch) and
`cutmix_sources` (a few device ops, whatever the number of steps). The batched kernels reach
both through BATCHED_RENDERERS, by the renderer each op names (`mixops.MixOp.batched`) and each
image's op (`image_renderers`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..mixops import MIX_OPS, step_op
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
    """One mixing step on (C, h, w) tensors: the running image with the next view (both float for Mixup),
    by the step's op (`mixops.MixOp.step`)."""
    return step_op(step).step(running, new, step)


# CutMix steps per bit code: a float32 holds a code of this many bits exactly (`cutmix_sources`).
CUT_GROUP = 24


def cutmix_tables(params: BatchParams, num_channels: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The CutMix chains of a batch in closed form, for `cutmix_sources`: [table, row_bits, col_bits, keep].

    A step resets an output pixel to its new view (the pasted new view inside its box, or the
    new view as the base outside it) exactly where "inside the box" equals `pasted_new`; every
    later step then only permutes channels, the same for every such pixel. So each pixel's
    (view, channel) is a function of its last reset: table[b, c, r] = view * C + channel after
    a last reset at step r - 1 (r = 0: none, view order[0]). Inside-box bits of the steps, in
    groups of CUT_GROUP, are row_bits (B, G, h) & col_bits (B, G, w); keep (B, G) has the bits
    of the active steps that paste the running mix (their reset is being outside the box).
    """
    B, M = params.order.shape
    S, C = max(M - 1, 1), num_channels
    h, w = size
    active = np.arange(S)[None, :] < (params.n - 1)[:, None]
    perm = params.channel_perm
    identity = np.broadcast_to(np.arange(C), (B, C))
    perm = np.broadcast_to(identity[:, None], (B, S, C)) if perm is None else perm
    pasted = params.pasted_new & active
    later = identity.copy()  # the channel map of the steps after r - 1, composed
    table = np.empty((B, C, S + 1), dtype=np.int64)
    for k in range(S - 1, -1, -1):
        slot = params.order[:, min(k + 1, M - 1)]
        base = np.where(pasted[:, k, None], perm[:, k], identity)
        table[:, :, k + 1] = slot[:, None] * C + np.take_along_axis(base, later, axis=1)
        permutes = active[:, k] & ~params.pasted_new[:, k]
        later = np.where(permutes[:, None], np.take_along_axis(perm[:, k], later, axis=1), later)
    table[:, :, 0] = params.order[:, :1] * C + later
    bit = np.left_shift(1, np.arange(S) % CUT_GROUP)
    group = np.arange(S) // CUT_GROUP
    G = int(group[-1]) + 1
    top, left, height, width = (params.box[..., i, None] for i in range(4))
    rows = (np.arange(h) >= top) & (np.arange(h) < top + height) & active[..., None]  # (B, S, h)
    cols = (np.arange(w) >= left) & (np.arange(w) < left + width) & active[..., None]
    row_bits, col_bits, keep = np.zeros((B, G, h), np.int64), np.zeros((B, G, w), np.int64), np.zeros((B, G), np.int64)
    for k in range(S):
        row_bits[:, group[k]] |= rows[:, k] * bit[k]
        col_bits[:, group[k]] |= cols[:, k] * bit[k]
        keep[:, group[k]] |= (active[:, k] & ~params.pasted_new[:, k]) * bit[k]
    return [table, row_bits, col_bits, keep]


def cutmix_sources(
    table: torch.Tensor, row_bits: torch.Tensor, col_bits: torch.Tensor, keep: torch.Tensor, transposed: bool
) -> torch.Tensor:
    """Each output pixel's (view * C + channel) of the CutMix chains (`cutmix_tables`): (B, C, h * w) long.

    A handful of ops whatever the number of steps: the last reset of a pixel is the highest set
    bit of (inside bits) ^ keep, found as a float32 exponent. With `transposed`, (B, C, w * h).
    """
    B, C, _ = table.shape
    last = None
    for g in range(row_bits.shape[1]):
        rows, cols = (col_bits[:, g], row_bits[:, g]) if transposed else (row_bits[:, g], col_bits[:, g])
        resets = (rows[:, :, None] & cols[:, None, :]) ^ keep[:, g, None, None]
        found = torch.frexp(resets.to(torch.float32)).exponent  # highest set bit + 1; 0 where none
        last = found if last is None else torch.where(found > 0, found + g * CUT_GROUP, last)
    index = last.view(B, 1, -1).long().expand(B, C, last[0].numel())
    return torch.gather(table, 2, index)


@dataclass(frozen=True)
class BatchedRenderer:
    """One way the batched kernels mix the images of a chunk, named by the ops that use it (`MixOp.batched`).

    folds: whether a chunk of only its images is rendered without views, the mixing folded into the
    resampling passes (`resample.resample_mixup`). mix(flat, plan, rows, transposed): the views
    (b, M * C, h * w) of the positions `rows` of a `BatchPlan`, mixed into (b, C, h * w). tables(params,
    num_channels, size): the named host arrays (B, ...) it reads from `BatchPlan.tables`, or None.
    """

    name: str
    folds: bool
    mix: Callable[[torch.Tensor, Any, slice, bool], torch.Tensor]
    tables: Callable[[BatchParams, int, tuple[int, int]], dict[str, np.ndarray]] | None = None


def _weighted(flat: torch.Tensor, plan: Any, rows: slice, transposed: bool) -> torch.Tensor:
    """Each output channel a weighted sum of channel-routed views: one bmm by the host's Mixup matrices."""
    assert plan.routing is not None
    return torch.bmm(plan.routing[rows].to(flat.dtype), flat)


CUT_TABLES = ("cut_table", "row_bits", "col_bits", "keep")


def _cut_tables(params: BatchParams, num_channels: int, size: tuple[int, int]) -> dict[str, np.ndarray]:
    return dict(zip(CUT_TABLES, cutmix_tables(params, num_channels, size), strict=True))


def _selected(flat: torch.Tensor, plan: Any, rows: slice, transposed: bool) -> torch.Tensor:
    """Each output pixel one view's channel, by the closed form of the CutMix chains (`cutmix_sources`)."""
    tables = [plan.tables[name][rows] for name in CUT_TABLES]
    return torch.gather(flat, 1, cutmix_sources(*tables, transposed))


BATCHED_RENDERERS = {
    "weighted": BatchedRenderer("weighted", folds=True, mix=_weighted),
    "selected": BatchedRenderer("selected", folds=False, mix=_selected, tables=_cut_tables),
}


def image_renderers(params: BatchParams) -> np.ndarray:
    """Each image's batched renderer (B,), as its index in BATCHED_RENDERERS, by the op of its steps
    (an image's steps share one op; a one-crop image's unused step is read as any other)."""
    names = list(BATCHED_RENDERERS)
    by_op = np.asarray([names.index(op.batched) for op in MIX_OPS.values()], dtype=np.int64)
    return by_op[params.op[:, 0]]


def renderers_of(indices: np.ndarray) -> dict[int, BatchedRenderer]:
    """The renderers at these BATCHED_RENDERERS indices (`image_renderers`), once each, by index."""
    renderers = list(BATCHED_RENDERERS.values())
    return {int(i): renderers[i] for i in np.unique(indices)}
