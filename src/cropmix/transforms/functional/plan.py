"""`BatchPlan`: the per-batch numbers the batched kernel reads, named, in rendering order, copied to the device once.

`make_plan` turns `BatchParams` (drawn on the host) into what the kernel needs: crop boxes, Mixup
slot weights and source channels (`mixing.mixup_slots`), each image's batched renderer and the host
arrays those renderers read (the CutMix chains in closed form, `mixing.cutmix_tables`) and each list
chunk's canvas index maps. Every array is packed into one int64 buffer (float64 weights by their
bits) and shipped in one copy, pinned and non-blocking on CUDA, so that nothing waits for the device
and nothing is read back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..params import BatchParams
from .mixing import image_renderers, mixup_slots, renderers_of


@dataclass(frozen=True)
class BatchPlan:
    """The named parameters of a batch, in rendering order: host arrays where the host decides, the rest on the device.

    Per image (B rows): crop starts and lengths (B, M, 2) as (y, x) (unused slots a 1-pixel crop);
    Mixup weight (B, M) and source (B, M, C), and both as routing matrices (B, C, M * C) where views
    are mixed; host_renderer (B,) each image's renderer (`mixing.image_renderers`); tables, the named
    arrays of the renderers in use (`BatchedRenderer.tables`: CutMix's cut_table (B, C, S + 1),
    row_bits (B, G, h), col_bits (B, G, w) and keep (B, G)); placed, for every renderer in use but the
    first (by index), a (B,) mask of its images; rank (B,) the output row of each position (lists).
    canvas_maps: per chunk, the (row, col) index maps of its padded canvas (lists on the separable passes).
    """

    ranked: np.ndarray
    chunks: list[slice]
    host_boxes: np.ndarray
    counts: np.ndarray
    host_renderer: np.ndarray
    extent: tuple[int, int]
    starts: torch.Tensor
    lengths: torch.Tensor
    weight: torch.Tensor
    routing: torch.Tensor | None
    source: torch.Tensor
    tables: dict[str, torch.Tensor]
    placed: dict[int, torch.Tensor]
    rank: torch.Tensor | None
    canvas_maps: list[tuple[torch.Tensor, torch.Tensor]]


def _as_int64(array: np.ndarray) -> np.ndarray:
    """An array's values as flat int64; a float array's float64 bits."""
    if array.dtype.kind == "f":
        return np.ascontiguousarray(array, dtype=np.float64).view(np.int64).ravel()
    return np.asarray(array, dtype=np.int64).ravel()


def ship(arrays: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """Host arrays (integers, booleans, float64 by their bits) as int64 tensors on `device`, in one packed copy."""
    flat = [_as_int64(a) for a in arrays.values()]
    packed = torch.from_numpy(np.concatenate(flat))
    if device.type == "cuda":
        packed = packed.pin_memory().to(device, non_blocking=True)
    else:
        packed = packed.to(device)
    parts = torch.split(packed, [len(a) for a in flat])
    return {name: part.view(np.shape(a)) for (name, a), part in zip(arrays.items(), parts, strict=True)}


def canvas_maps(heights: np.ndarray, widths: np.ndarray, channels: int) -> list[np.ndarray]:
    """Where each pixel of a padded canvas of these images lies in their one concatenation (host numbers).

    The images (C, Hi, Wi), flattened and concatenated with one zero at the end (index Z), give
    canvas[k, c, y, x] = flat[min(row[k, c, y] + col[k, x], Z)]: row is the start of source row
    (c, y) of image k, col is x; both are Z past the image, so padding reads the zero.
    """
    C, H, W = channels, int(heights.max()), int(widths.max())
    pixels = heights * widths
    offset = np.cumsum(C * pixels) - C * pixels
    zero = int((C * pixels).sum())
    c, y, x = np.arange(C)[None, :, None], np.arange(H)[None, None, :], np.arange(W)[None, :]
    row = offset[:, None, None] + c * pixels[:, None, None] + y * widths[:, None, None]
    row = np.where(y < heights[:, None, None], row, zero)
    col = np.where(x < widths[:, None], x, zero)
    return [row, col]


def make_plan(
    params: BatchParams,
    ranked: np.ndarray,
    chunks: list[slice],
    sizes: tuple[np.ndarray, np.ndarray] | None,
    channels: int,
    size: tuple[int, int],
    device: torch.device,
    views_mixup: bool = False,
) -> BatchPlan:
    """The plan of `params` rendered in the order `ranked`, in `chunks` of positions.

    sizes: the (heights, widths) of a list's images in rendering order, for their canvas maps;
    None where no canvas is built (a batch, or crop-by-crop rendering). views_mixup: whether
    Mixup images are mixed from their views (and need `routing`).
    """
    params = params.subset(ranked)
    M = params.order.shape[1]
    used = np.arange(M)[None, :] < params.n[:, None]
    boxes = np.where(used[..., None], params.crops, np.array([0, 0, 1, 1]))  # unused slots: a 1-pixel crop
    weight, source = mixup_slots(params, channels)
    host_renderer = image_renderers(params)
    renderers = renderers_of(host_renderer)
    arrays = {"starts": boxes[..., :2], "lengths": boxes[..., 2:], "weight": weight, "source": source}
    if views_mixup:  # routing[b, d, m * C + c] = weight[b, m] if slot m feeds output channel d from its channel c
        matches = source.transpose(0, 2, 1)[..., None] == np.arange(channels)
        arrays["routing"] = (weight[:, None, :, None] * matches).reshape(len(weight), channels, -1)
    tables = {}
    for renderer in renderers.values():
        if renderer.tables is not None:
            tables |= renderer.tables(params, channels, size)
    arrays |= tables
    if len(renderers) > 1:
        arrays["renderer"] = host_renderer
    if not (ranked == np.arange(len(ranked))).all():
        arrays["rank"] = ranked
    for k, rows in enumerate(chunks if sizes is not None else []):
        arrays[f"row{k}"], arrays[f"col{k}"] = canvas_maps(sizes[0][rows], sizes[1][rows], channels)
    d = ship(arrays, device)
    weight_d = d["weight"].view(torch.float64)
    return BatchPlan(
        ranked=ranked,
        chunks=chunks,
        host_boxes=boxes,
        counts=params.n,
        host_renderer=host_renderer,
        extent=(int(boxes[..., 2].max()), int(boxes[..., 3].max())),
        starts=d["starts"],
        lengths=d["lengths"],
        weight=weight_d,
        routing=d["routing"].view(torch.float64) if "routing" in d else None,
        source=d["source"],
        tables={name: d[name] for name in tables},
        placed={i: d["renderer"] == i for i in list(renderers)[1:]},
        rank=d.get("rank"),
        canvas_maps=[(d[f"row{k}"], d[f"col{k}"]) for k in range(len(chunks)) if f"row{k}" in d],
    )
