"""Exact separable resampling of many crops at once: torchvision's weights, applied as two batched passes.

`torchvision.transforms.v2.functional.resized_crop` resizes a crop with separable filters: every
output row is a weighted sum of a few source rows, then every output column of a few source
columns. This module computes those weights for every crop of a batch on the device (the same
support, filter and normalisation as torch's `interpolate`, antialiased or not, bilinear or
bicubic) and applies them as two contractions, neither of which transposes an intermediate:

    rows:    R[b, m, i, c, :] = sum_y Wrow[b, m, i, y] * X[b, c, y, :]
    columns: V[b, m, c, i, j] = sum_x R[b, m, i, c, x] * Wcol[b, m, x, j]   (a matmul on the right)

The row pass reads only the few taps of each output row: on the CPU one weighted gather
(`embedding_bag`) of single-channel rows; on CUDA by default one dense matmul per image
(`DEVICE_METHOD`: tensor cores make the zeros cheap, it is hoped; not measured yet). The column
pass is one batched matmul by a dense tap matrix on every device. For Mixup the column pass also
sums over the crops (`resample_mixup`): out[b, d] = sum over m and taps, each output channel d
reading its source channel, so the M resized views are never written.
"""

from __future__ import annotations

import math

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
    """Taps (positions inside the crop, weights) of resizing crops of `length` (L,) to out_size."""
    dtype = torch.float64 if length.device.type == "cpu" else torch.float32
    length_f = length.to(dtype)
    scale = length_f / out_size
    i = torch.arange(out_size, dtype=dtype, device=length.device)
    if antialias:
        # torch's antialiased kernels: the filter stretched by the shrink factor, clipped to the crop.
        stretch = scale.clamp(min=1.0)
        support = SUPPORT[mode] / 2.0 * stretch
        # At most ceil(2 * support) source pixels lie in the window [centre - support, centre + support)
        # (torch reserves 2 * ceil(support) + 1): a tap past that bound only arises from rounding,
        # where the filter is ~0.
        taps = math.ceil(SUPPORT[mode] * max(max_length / out_size, 1.0))
        centre = scale[:, None] * (i + 0.5)
        lo = torch.floor(centre - support[:, None] + 0.5).clamp_(min=0.0)
        hi = torch.minimum(torch.floor(centre + support[:, None] + 0.5), length_f[:, None])
        pos = lo[..., None] + torch.arange(taps, dtype=dtype, device=length.device)
        weight = _filter((pos - centre[..., None] + 0.5) / stretch[:, None, None], mode, CUBIC_A_ANTIALIAS)
        weight = torch.where(pos < hi[..., None], weight, torch.zeros_like(weight))
    else:
        # torch's plain kernels: a fixed 2 or 4 taps around the source coordinate, border-replicated.
        src = scale[:, None] * (i + 0.5) - 0.5
        if mode == "bilinear":
            src = src.clamp(min=0.0)
        first = torch.floor(src) - (0.0 if mode == "bilinear" else 1.0)
        pos = first[..., None] + torch.arange(int(SUPPORT[mode]), dtype=dtype, device=length.device)
        weight = _filter(pos - src[..., None], mode, CUBIC_A)
    weight = weight / weight.sum(-1, keepdim=True)
    return torch.minimum(pos.long().clamp_(min=0), (length - 1)[:, None, None]), weight


def axis_taps(
    start: torch.Tensor, length: torch.Tensor, out_size: int, mode: str, antialias: bool, max_length: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices and weights of resizing [start, start + length) to out_size, for K crops at once.

    start, length: (K,) integer tensors; max_length: the largest length (known on the host, so
    that no value is read back from the device). Returns idx (K, out_size, T) long and weight
    (K, out_size, T) float64 (float32 on devices without float64), each row summing to 1;
    idx stays inside the crop (padding taps have weight 0). The weights depend on the length
    only: with fewer possible lengths than crops (small images) each is computed once.
    """
    if max_length < len(length):
        every = torch.arange(1, max_length + 1, device=length.device)
        pos, weight = _length_taps(every, out_size, mode, antialias, max_length)
        pos, weight = pos.index_select(0, length - 1), weight.index_select(0, length - 1)
    else:
        pos, weight = _length_taps(length, out_size, mode, antialias, max_length)
    return pos + start[:, None, None], weight


def tap_matrix(idx: torch.Tensor, weight: torch.Tensor, length: int, dtype: torch.dtype) -> torch.Tensor:
    """The taps (G, R, T) as dense (G, length, R) matrices: column r holds output r's weights."""
    G, R, _ = idx.shape
    matrix = torch.zeros((G, length, R), dtype=dtype, device=idx.device)
    return matrix.scatter_add_(1, idx.transpose(1, 2), weight.transpose(1, 2).to(dtype))


def _oriented_taps(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    mode: str,
    antialias: bool,
    max_extent: tuple[int, int] | None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], bool]:
    """The problem in the pass order that keeps the first pass's output smaller, and every crop's taps.

    Returns the images (transposed when `swap`), the row taps (idx, weight) (B, M, h, T), the
    column taps (B, M, w, T), and swap; with swap set, rows are the source's columns.
    """
    B, C, H, W = images.shape
    M = boxes.shape[1]
    h, w = size
    if max_extent is None:
        max_extent = (int(boxes[..., 2].max()), int(boxes[..., 3].max()))
    swap = h * W > w * H
    if swap:
        images, boxes, (h, w), max_extent = images.transpose(2, 3), boxes[..., [1, 0, 3, 2]], (w, h), max_extent[::-1]
    flat = boxes.reshape(B * M, 4)
    row_idx, row_w = axis_taps(flat[:, 0], flat[:, 2], h, mode, antialias, max_extent[0])
    col_idx, col_w = axis_taps(flat[:, 1], flat[:, 3], w, mode, antialias, max_extent[1])
    taps = (row_idx.view(B, M, h, -1), row_w.view(B, M, h, -1), col_idx.view(B, M, w, -1), col_w.view(B, M, w, -1))
    return images, taps, swap


def _dense_rows(
    images: torch.Tensor, row_idx: torch.Tensor, row_w: torch.Tensor, work_dtype: torch.dtype
) -> torch.Tensor:
    """The row pass as one bmm per image: (B, C, H, W) -> (B, M, h, C, W)."""
    B, C, H, W = images.shape
    _, M, h, T = row_idx.shape
    # Rows of (C, W) values: the matmul contracts each image's rows as whole vectors.
    rows = torch.empty((B, H, C, W), dtype=work_dtype, device=images.device)
    rows.copy_(images.permute(0, 2, 1, 3))
    matrix = tap_matrix(row_idx.reshape(B, M * h, T), row_w.reshape(B, M * h, T), H, work_dtype)
    return torch.bmm(matrix.transpose(1, 2), rows.view(B, H, C * W)).view(B, M, h, C, W)


def _gather_rows(
    images: torch.Tensor, row_idx: torch.Tensor, row_w: torch.Tensor, source: torch.Tensor, work_dtype: torch.dtype
) -> torch.Tensor:
    """The row pass as one weighted gather of single-channel rows: -> (B, M, C, h, W).

    Output row (b, m, d, i) sums the T taps of crop m's output row i in channel source[b, m, d]
    of image b: it reads only those taps, and the rows stay in the source's own layout, so no
    transpose is needed before the column matmul.
    """
    B, C, H, W = images.shape
    _, M, h, T = row_idx.shape
    table = images
    if images.dtype != work_dtype or not images.is_contiguous():  # one copy, whatever the layout
        table = torch.empty(images.shape, dtype=work_dtype, device=images.device).copy_(images)
    # int32 indices where they fit: a smaller index table, and embedding_bag reads it faster.
    index_dtype = torch.int32 if B * C * H < 2**31 else torch.int64
    first_row = (torch.arange(B, device=images.device)[:, None, None] * C + source) * H  # (B, M, C)
    # (i, t) innermost: the broadcast sum runs over rows of h * T indices (with (m, t) innermost, rows
    # of M * T, it measured ~8x slower at 32x32).
    idx = first_row.to(index_dtype)[..., None, None] + row_idx.to(index_dtype)[:, :, None]
    weight = row_w.to(work_dtype)[:, :, None].expand(B, M, C, h, T)
    rows = torch.nn.functional.embedding_bag(
        idx.view(-1, T), table.view(B * C * H, W), per_sample_weights=weight.reshape(-1, T), mode="sum"
    )
    return rows.view(B, M, C, h, W)


# The row pass off the CPU: "dense" (one batched matmul per image: tensor cores, but ~99% of each
# weight matrix is zeros at ImageNet sizes) or "gather" (embedding_bag, as on the CPU). Which is
# faster on a GPU is not measured yet: benchmarks/batch_throughput.py --device-method compares them.
DEVICE_METHOD = "dense"


def _method(images: torch.Tensor, method: str | None) -> str:
    method = method or ("gather" if images.device.type == "cpu" else DEVICE_METHOD)
    if method not in ("dense", "gather"):
        raise ValueError(f"method must be 'dense' or 'gather', got {method!r}")
    return method


def resample_crops(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    mode: str = "bilinear",
    antialias: bool = True,
    work_dtype: torch.dtype = torch.float32,
    method: str | None = None,
    max_extent: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, bool]:
    """Resize M crops of each of B images: (B, C, H, W) and boxes (B, M, 4) -> views (B, M, C, ., .).

    boxes are (top, left, height, width) in source pixels, each inside its image (a padded
    canvas is fine: the weights never reach outside a box). The views come back contiguous in
    `work_dtype`, (B, M, C, h, w), or (B, M, C, w, h) when the returned flag `transposed` is set
    (per-pixel mixing does not care; the caller transposes the result). max_extent: the largest
    box (height, width), when known on the host; otherwise read from `boxes`. CutMix needs these
    views; Mixup does not (`resample_mixup`).
    """
    method = _method(images, method)
    images, (row_idx, row_w, col_idx, col_w), swap = _oriented_taps(images, boxes, size, mode, antialias, max_extent)
    B, C, _, W = images.shape
    _, M, h, _ = row_idx.shape
    w, T = col_idx.shape[2:]
    columns = tap_matrix(col_idx.view(B * M, w, T), col_w.view(B * M, w, T), W, work_dtype)  # (B*M, W, w)
    if method == "gather":
        rows = _gather_rows(images, row_idx, row_w, torch.arange(C, device=images.device).expand(B, M, C), work_dtype)
        return torch.bmm(rows.view(B * M, C * h, W), columns).view(B, M, C, h, w), swap
    rows = _dense_rows(images, row_idx, row_w, work_dtype)  # (B, M, h, C, W)
    views = torch.bmm(rows.view(B * M, h * C, W), columns).view(B, M, h, C, w)
    return views.transpose(2, 3).contiguous(), swap


def resample_mixup(
    images: torch.Tensor,
    boxes: torch.Tensor,
    weight: torch.Tensor,
    source: torch.Tensor,
    size: tuple[int, int],
    mode: str = "bilinear",
    antialias: bool = True,
    work_dtype: torch.dtype = torch.float32,
    method: str | None = None,
    max_extent: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, bool]:
    """The Mixup of M resized crops per image, folded into the column pass: -> (B, C, ., .), transposed.

    out[b, d] = sum_m weight[b, m] * resized crop m of image b, channel source[b, m, d]
    (`mixing.mixup_slots`). The M views are never written: each crop's rows, routed from their
    source channels, meet its weighted column taps in one matmul per crop, accumulated into the
    output. With the returned flag set the result is (B, C, w, h).
    """
    method = _method(images, method)
    images, (row_idx, row_w, col_idx, col_w), swap = _oriented_taps(images, boxes, size, mode, antialias, max_extent)
    B, C, _, W = images.shape
    _, M, h, _ = row_idx.shape
    w, T = col_idx.shape[2:]
    col_w = col_w * weight[:, :, None, None].to(col_w.dtype)
    columns = tap_matrix(col_idx.view(B * M, w, T), col_w.view(B * M, w, T), W, work_dtype).view(B, M, W, w)
    # Each crop's rows routed (output channel d read from channel source[b, m, d]) as (B, C, h, W),
    # made one crop at a time on the dense path (its intermediate holds every channel).
    if method == "gather":
        routed = _gather_rows(images, row_idx, row_w, source, work_dtype)  # routed by the gather's indices
        crop_rows = (routed[:, m] for m in range(M))
    else:
        mid = _dense_rows(images, row_idx, row_w, work_dtype)  # (B, M, h, C, W)
        batch = torch.arange(B, device=images.device)[:, None]
        crop_rows = (mid[batch, m, :, source[:, m]] for m in range(M))  # advanced indices first
    out = None
    for rows, taps in zip(crop_rows, columns.unbind(1), strict=True):
        rows = rows.reshape(B, C * h, W)
        out = torch.bmm(rows, taps) if out is None else out.baddbmm_(rows, taps)
    return out.view(B, C, h, w), swap
