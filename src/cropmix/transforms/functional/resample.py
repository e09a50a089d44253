"""Exact separable resampling of many crops at once: torchvision's weights, applied as two batched passes.

`torchvision.transforms.v2.functional.resized_crop` resizes a crop with separable filters: every
output row is a weighted sum of a few source rows, then every output column of a few source
columns. This module computes those weights for every crop of a batch on the device, once per
call (`crop_taps`: the same support, filter and normalisation as torch's `interpolate`,
antialiased or not, bilinear or bicubic), and applies them as two contractions, neither of
which transposes an intermediate:

    rows:    R[b, m, c, i, :] = sum_y Wrow[b, m, i, y] * X[b, c, y, :]
    columns: V[b, m, c, i, j] = sum_x R[b, m, c, i, x] * Wcol[b, m, x, j]   (a matmul on the right)

The row pass is a weighted gather of the few taps of each output row ("gather": `embedding_bag`
over single-channel rows) or one dense matmul per image ("dense", mostly zeros at ImageNet
sizes but on tensor cores; which wins on a GPU is for benchmarks/batch_throughput.py to say).
The views (`resample_crops`, for CutMix) take every crop slot at once. For Mixup the column
pass also sums over the slots (`resample_mixup`): out[b, d] = sum over m and taps, each output
channel d reading its source channel, one slot at a time, so the M resized views are never
written and the largest intermediate is one slot's rows.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

# Filter support in source pixels at scale 1 (torch's `interp_size`), and its cubic coefficient.
SUPPORT = {"bilinear": 2.0, "bicubic": 4.0}
CUBIC_A_ANTIALIAS = -0.5  # torch's antialiased bicubic (as PIL)
CUBIC_A = -0.75  # torch's plain bicubic


def _filter(x: torch.Tensor, mode: str, cubic_a: float) -> torch.Tensor:
    x = x.abs()
    if mode == "bilinear":
        return (1.0 - x).clamp_(min=0.0)
    a = cubic_a
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


def _length_taps(
    length: torch.Tensor, out_size: int, mode: str, antialias: bool, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Taps (positions inside the crop, weights) of resizing crops of float `length` (L,) to out_size."""
    dtype, device = length.dtype, length.device
    scale = length / out_size
    centre = scale[:, None] * torch.arange(0.5, out_size, dtype=dtype, device=device)  # output pixel centres
    if antialias:
        # torch's antialiased kernels: the filter stretched by the shrink factor, clipped to the crop.
        # Taps from floor(centre - support + 0.5): the filter is exactly 0 at the window's far end
        # (torch's other bound), and at most ceil(2 * support) source pixels lie in the window (torch
        # reserves 2 * ceil(support) + 1): a tap past that bound only arises from rounding, where the
        # filter is ~0.
        stretch = scale.clamp(min=1.0)
        taps = math.ceil(SUPPORT[mode] * max(max_length / out_size, 1.0))
        first = torch.floor(centre - (stretch * (SUPPORT[mode] / 2.0) - 0.5)[:, None]).clamp_(min=0.0)
        pos = first[..., None] + torch.arange(taps, dtype=dtype, device=device)
        weight = _filter((pos - (centre - 0.5)[..., None]) / stretch[:, None, None], mode, CUBIC_A_ANTIALIAS)
        weight = weight.masked_fill_(pos >= length[:, None, None], 0.0)
    else:
        # torch's plain kernels: a fixed 2 or 4 taps around the source coordinate, border-replicated.
        src = centre - 0.5
        if mode == "bilinear":
            src = src.clamp(min=0.0)
        first = torch.floor(src) - (0.0 if mode == "bilinear" else 1.0)
        pos = first[..., None] + torch.arange(int(SUPPORT[mode]), dtype=dtype, device=device)
        weight = _filter(pos - src[..., None], mode, CUBIC_A)
        pos = pos.clamp_(min=0.0)
    weight = weight / weight.sum(-1, keepdim=True)
    return torch.minimum(pos, (length - 1)[:, None, None]).long(), weight


def axis_taps(
    start: torch.Tensor, length: torch.Tensor, out_size: int, mode: str, antialias: bool, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights of resizing [start, start + length) to out_size, for K crops at once.

    start, length: (K,) integer tensors; max_length: the largest length (known on the host, so
    that no value is read back from the device). Returns idx (K, out_size, T) long and weight
    (K, out_size, T) float64 (float32 off the CPU: devices may lack float64), each row summing
    to 1; idx stays inside the crop (padding taps have weight 0). The weights depend on the
    length only: with fewer possible lengths than crops each is computed once.
    """
    dtype = torch.float64 if length.device.type == "cpu" else torch.float32
    if max_length < len(length):
        every = torch.arange(1, max_length + 1, dtype=dtype, device=length.device)
        pos, weight = _length_taps(every, out_size, mode, antialias, max_length)
        row = length - 1
        pos, weight = pos.index_select(0, row), weight.index_select(0, row)
    else:
        pos, weight = _length_taps(length.to(dtype), out_size, mode, antialias, max_length)
    return pos + start[:, None, None], weight


@dataclass(frozen=True)
class Taps:
    """The separable taps of every crop slot of a batch: y_* (B, M, h, T) index the source's rows,
    x_* (B, M, w, T) its columns; weights float64 (float32 off the CPU)."""

    y_idx: torch.Tensor
    y_weight: torch.Tensor
    x_idx: torch.Tensor
    x_weight: torch.Tensor

    def rows(self, rows: slice) -> Taps:
        """The taps of the images `rows`."""
        return Taps(self.y_idx[rows], self.y_weight[rows], self.x_idx[rows], self.x_weight[rows])

    def oriented(self, swap: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(first idx, first weight, second idx, second weight) in pass order: with swap, columns first."""
        if swap:
            return self.x_idx, self.x_weight, self.y_idx, self.y_weight
        return self.y_idx, self.y_weight, self.x_idx, self.x_weight


def crop_taps(
    starts: torch.Tensor,
    lengths: torch.Tensor,
    size: tuple[int, int],
    mode: str,
    antialias: bool,
    max_extent: tuple[int, int] | None = None,
    dtype: torch.dtype | None = None,
) -> Taps:
    """The taps of every crop, starts and lengths (B, M, 2) as (y, x), resized to `size`: both axes in
    one computation for a square output. max_extent: the largest crop (height, width), when known on
    the host; otherwise read from `lengths`. dtype: of the weights, if not axis_taps' own."""
    B, M, _ = starts.shape
    h, w = size
    if max_extent is None:
        max_extent = (int(lengths[..., 0].max()), int(lengths[..., 1].max()))
    if h == w:
        idx, weight = axis_taps(starts.reshape(-1), lengths.reshape(-1), h, mode, antialias, max(max_extent))
        idx, weight = idx.view(B, M, 2, h, -1), weight.view(B, M, 2, h, -1).to(dtype or weight.dtype)
        return Taps(idx[:, :, 0], weight[:, :, 0], idx[:, :, 1], weight[:, :, 1])
    y_idx, y_w = axis_taps(starts[..., 0].reshape(-1), lengths[..., 0].reshape(-1), h, mode, antialias, max_extent[0])
    x_idx, x_w = axis_taps(starts[..., 1].reshape(-1), lengths[..., 1].reshape(-1), w, mode, antialias, max_extent[1])
    y_w, x_w = y_w.to(dtype or y_w.dtype), x_w.to(dtype or x_w.dtype)
    return Taps(y_idx.view(B, M, h, -1), y_w.view(B, M, h, -1), x_idx.view(B, M, w, -1), x_w.view(B, M, w, -1))


def tap_matrix(idx: torch.Tensor, weight: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """The taps (G, R, T) as dense (G, length, R) matrices: column r holds output r's weights."""
    G, R, _ = idx.shape
    matrix = torch.zeros((G, length, R), dtype=dtype, device=idx.device)
    return matrix.scatter_add_(1, idx.transpose(1, 2), weight.transpose(1, 2).to(dtype))


def swapped(height: int, width: int, size: tuple[int, int]) -> bool:
    """Whether to resample a height x width source's columns first: the order whose first output is smaller."""
    return size[0] * width > size[1] * height


# The row pass off the CPU: "dense" (one batched matmul per image: tensor cores, but ~99% of each
# weight matrix is zeros at ImageNet sizes) or "gather" (embedding_bag, as on the CPU). Which is
# faster on a GPU is not measured yet: benchmarks/batch_throughput.py --device-method compares them.
DEVICE_METHOD = "dense"
METHODS = ("dense", "gather")


@dataclass(frozen=True)
class Resize:
    """How crops are resized, the settings that travel together through both passes: the output
    size (h, w), the filter ("bilinear" or "bicubic"), antialiasing, the dtype the passes compute
    in, and the row pass ("dense" or "gather"; None: "gather" on the CPU, else DEVICE_METHOD)."""

    size: tuple[int, int]
    mode: str = "bilinear"
    antialias: bool = True
    work_dtype: torch.dtype = torch.float32
    method: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in SUPPORT:
            raise ValueError(f"mode must be one of {list(SUPPORT)}, got {self.mode!r}")
        if self.method is not None and self.method not in METHODS:
            raise ValueError(f"method must be 'dense' or 'gather', got {self.method!r}")

    def method_for(self, images: torch.Tensor) -> str:
        """The row pass for `images`: the one named, or the device's own."""
        return self.method or ("gather" if images.device.type == "cpu" else DEVICE_METHOD)


def _gather_table(images: torch.Tensor, work: torch.dtype) -> torch.Tensor:
    """The source's single-channel rows (B * C * H, W) in `work`, the table `embedding_bag` reads."""
    B, C, H, W = images.shape
    if images.dtype != work or not images.is_contiguous():  # one copy, whatever the layout
        images = torch.empty(images.shape, dtype=work, device=images.device).copy_(images)
    return images.view(B * C * H, W)


def _gather_taps(
    shape: tuple[int, int, int],
    row_idx: torch.Tensor,
    row_w: torch.Tensor,
    source: torch.Tensor | None,
    work: torch.dtype,
    slot_major: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The gather's table rows and weights, (B, M, C, h, T) (slot-major: (M, B, C, h, T)), contiguous.

    Output row (b, m, d, i) sums the T taps of crop m's output row i in channel source[b, m, d]
    (its own channel d without `source`) of image b; (i, t) innermost: the broadcast sum runs over
    rows of h * T indices (with (m, t) innermost, rows of M * T, it measured ~8x slower at 32x32).
    """
    B, C, H = shape
    _, M, h, T = row_idx.shape
    # int32 indices where they fit: a smaller index table, and embedding_bag reads it faster.
    index_dtype = torch.int32 if B * C * H < 2**31 else torch.int64
    if source is None:  # the first row of each channel of each image
        first = torch.arange(0, B * C * H, H, device=row_idx.device).view(B, 1, C).expand(B, M, C)
    else:  # the first row of each routed channel
        first = torch.arange(0, B * C * H, C * H, device=row_idx.device)[:, None, None] + source * H
    row_w = row_w.to(work)
    if slot_major:
        first, row_idx, row_w = first.transpose(0, 1), row_idx.transpose(0, 1), row_w.transpose(0, 1)
    idx = torch.empty((*first.shape, h, T), dtype=index_dtype, device=row_idx.device)
    torch.add(first[..., None, None], row_idx[:, :, None], out=idx)  # out: contiguous, and of index_dtype
    return idx, row_w[:, :, None].expand(idx.shape).contiguous()


def _dense_table(images: torch.Tensor, work: torch.dtype) -> torch.Tensor:
    """The source as rows of (C, W) vectors, (B, H, C, W) in `work`: the dense matmul contracts whole rows."""
    B, C, H, W = images.shape
    return torch.empty((B, H, C, W), dtype=work, device=images.device).copy_(images.permute(0, 2, 1, 3))


def _slot_rows(
    images: torch.Tensor,
    row_idx: torch.Tensor,
    row_w: torch.Tensor,
    source: torch.Tensor,
    method: str,
    work: torch.dtype,
) -> Iterator[torch.Tensor]:
    """The row pass of each crop slot in turn, routed: (B, C, H, W) -> slot m's rows (B, C, h, W), contiguous.

    Output channel d of slot m reads channel source[b, m, d] (the Mixup routing). One slot at a
    time, each slot's intermediates freed before the next's are made: the smallest footprint.
    """
    B, C, H, W = images.shape
    _, M, h, T = row_idx.shape
    if method == "gather":
        table = _gather_table(images, work)
        idx, weight = _gather_taps((B, C, H), row_idx, row_w, source, work, slot_major=True)
        for m in range(M):  # yielded at once: a local would keep these rows alive while the next are made
            yield torch.nn.functional.embedding_bag(
                idx[m].view(-1, T), table, per_sample_weights=weight[m].view(-1, T), mode="sum"
            ).view(B, C, h, W)
        return
    table = _dense_table(images, work)
    batch = torch.arange(B, device=images.device)[:, None]
    for m in range(M):
        yield _dense_slot(table, row_idx[:, m], row_w[:, m], (batch, source[:, m]))


def _dense_slot(
    table: torch.Tensor, row_idx: torch.Tensor, row_w: torch.Tensor, route: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """One slot's dense row pass: table (B, H, C, W) -> (B, C, h, W), routed by (batch, source) indices.

    A function of its own, so that its intermediates are freed before the next slot's are made.
    """
    B, H, C, W = table.shape
    h = row_idx.shape[1]
    matrix = tap_matrix(row_idx, row_w, H, table.dtype)  # (B, H, h)
    mid = torch.bmm(matrix.transpose(1, 2), table.view(B, H, C * W)).view(B, h, C, W).transpose(1, 2)
    del matrix
    return mid[route]  # advanced indices first: (B, C, h, W), contiguous


def _prepare(
    images: torch.Tensor,
    boxes: torch.Tensor | None,
    resize: Resize,
    max_extent: tuple[int, int] | None,
    taps: Taps | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], tuple[int, int], bool]:
    """The images in pass order (transposed with swap), the taps in that order, the output size so, swap."""
    if taps is None:
        assert boxes is not None
        taps = crop_taps(boxes[..., :2], boxes[..., 2:], resize.size, resize.mode, resize.antialias, max_extent)
    size = resize.size
    swap = swapped(images.shape[2], images.shape[3], size)
    images, size = (images.transpose(2, 3), size[::-1]) if swap else (images, size)
    return images, taps.oriented(swap), size, swap


def _columns(col_idx: torch.Tensor, col_w: torch.Tensor, width: int, work: torch.dtype) -> torch.Tensor:
    """The column taps of every slot as dense (B, M, width, w) matrices."""
    B, M, w, T = col_idx.shape
    return tap_matrix(col_idx.reshape(B * M, w, T), col_w.reshape(B * M, w, T), width, work).view(B, M, width, w)


def resample_crops(
    images: torch.Tensor,
    boxes: torch.Tensor | None,
    resize: Resize,
    max_extent: tuple[int, int] | None = None,
    taps: Taps | None = None,
) -> tuple[torch.Tensor, bool]:
    """Resize M crops of each of B images: (B, C, H, W) and boxes (B, M, 4) -> views (B, M, C, ., .).

    boxes are (top, left, height, width) in source pixels, each inside its image (a padded
    canvas is fine: the weights never reach outside a box); or pass their `taps` (`crop_taps`).
    The views come back contiguous in `resize.work_dtype`, (B, M, C, h, w), or (B, M, C, w, h) when the
    returned flag `transposed` is set (per-pixel mixing does not care; the caller transposes the
    result). max_extent: the largest box (height, width), when known on the host; otherwise read
    from `boxes`. CutMix needs these views; Mixup does not (`resample_mixup`).
    """
    method, work_dtype = resize.method_for(images), resize.work_dtype
    images, (row_idx, row_w, col_idx, col_w), (h, w), swap = _prepare(images, boxes, resize, max_extent, taps)
    B, C, H, W = images.shape
    M, h, T = row_idx.shape[1:]
    w = col_idx.shape[2]
    # Every slot at once: fewer ops than slot by slot, and the views need the memory anyway.
    if method == "gather":
        idx, weight = _gather_taps((B, C, H), row_idx, row_w, None, work_dtype, slot_major=False)
        rows = torch.nn.functional.embedding_bag(
            idx.view(-1, T), _gather_table(images, work_dtype), per_sample_weights=weight.view(-1, T), mode="sum"
        )
        del idx, weight
        columns = _columns(col_idx, col_w, W, work_dtype).view(B * M, W, w)
        return torch.bmm(rows.view(B * M, C * h, W), columns).view(B, M, C, h, w), swap
    matrix = tap_matrix(row_idx.reshape(B, M * h, T), row_w.reshape(B, M * h, T), H, work_dtype)
    rows = torch.bmm(matrix.transpose(1, 2), _dense_table(images, work_dtype).view(B, H, C * W))  # (B, M*h, C*W)
    del matrix
    columns = _columns(col_idx, col_w, W, work_dtype).view(B * M, W, w)
    views = torch.bmm(rows.view(B * M, h * C, W), columns).view(B, M, h, C, w)
    del rows, columns  # before the transposed copy
    return views.transpose(2, 3).contiguous(), swap


def resample_mixup(
    images: torch.Tensor,
    boxes: torch.Tensor | None,
    weight: torch.Tensor,
    source: torch.Tensor,
    resize: Resize,
    max_extent: tuple[int, int] | None = None,
    taps: Taps | None = None,
) -> tuple[torch.Tensor, bool]:
    """The Mixup of M resized crops per image, folded into the column pass: -> (B, C, ., .), transposed.

    out[b, d] = sum_m weight[b, m] * resized crop m of image b, channel source[b, m, d]
    (`mixing.mixup_slots`). The M views are never written: each slot's rows, routed from their
    source channels, meet its weighted column taps in one matmul, accumulated into the output.
    With the returned flag set the result is (B, C, w, h).
    """
    method, work_dtype = resize.method_for(images), resize.work_dtype
    images, (row_idx, row_w, col_idx, col_w), (h, w), swap = _prepare(images, boxes, resize, max_extent, taps)
    B, C, _, W = images.shape
    columns = _columns(col_idx, col_w * weight[:, :, None, None].to(col_w.dtype), W, work_dtype)
    out, m = None, 0
    # No enumerate or zip: their cached result tuples would keep a slot's rows alive while the next are made.
    for rows in _slot_rows(images, row_idx, row_w, source, method, work_dtype):
        rows = rows.view(B, C * h, W)
        out = torch.bmm(rows, columns[:, m]) if out is None else out.baddbmm_(rows, columns[:, m])
        del rows  # before the next slot's rows are made
        m += 1
    return out.view(B, C, h, w), swap
