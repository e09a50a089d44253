"""Exact separable resampling of many crops at once: torchvision's weights, applied as two batched passes.

`torchvision.transforms.v2.functional.resized_crop` resizes a crop with separable filters: every
output row is a weighted sum of a few source rows, then every output column of a few source
columns. This module computes those weights for every crop of a batch on the device (the same
support, filter and normalisation as torch's `interpolate`, antialiased or not, bilinear or
bicubic) and applies them as two contractions:

    rows:    R[b, m*h + i, :]  = sum_y  Wrow[b, m, i, y] * X[b, y, :]     (X rows are W*C wide)
    columns: V[b*M + m, j, :] = sum_x  Wcol[b, m, j, x] * R^T[b, m, x, :]

On CUDA each contraction is one batched dense matmul by default (`DEVICE_METHOD`: tensor cores
make the zeros cheap, it is hoped; not measured yet); on the CPU it is one weighted gather
(`embedding_bag`), which reads only the few taps of each output pixel. Both read the same tap
tables, and the tests check one against the other and against torchvision. For Mixup the column
pass also sums over the crops (`resample_mixup`): out[b, d] = sum over m and taps, each output
channel d reading its source channel, so the M resized views are never written.
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
        taps = int(math.ceil(SUPPORT[mode] / 2.0 * max(max_length / out_size, 1.0))) * 2 + 1
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
        pos, weight = pos[length - 1], weight[length - 1]
    else:
        pos, weight = _length_taps(length, out_size, mode, antialias, max_length)
    return pos + start[:, None, None], weight


def contract(data: torch.Tensor, idx: torch.Tensor, weight: torch.Tensor, method: str) -> torch.Tensor:
    """out[g, r, :] = sum_t weight[g, r, t] * data[g, idx[g, r, t], :] for G groups.

    data (G, L, F); idx, weight (G, R, T) -> (G, R, F) in data's dtype. "dense" scatters the taps
    into (G, R, L) matrices and calls bmm (tensor cores on a GPU); "gather" is one weighted
    `embedding_bag` over the rows of data, which reads only the T taps of each output row.
    """
    G, L, F = data.shape
    R, T = idx.shape[1], idx.shape[2]
    weight = weight.to(data.dtype)
    if method == "dense":
        matrix = torch.zeros((G, R, L), dtype=data.dtype, device=data.device)
        return torch.bmm(matrix.scatter_add_(2, idx, weight), data)
    if method != "gather":
        raise ValueError(f"method must be 'dense' or 'gather', got {method!r}")
    rows = idx + torch.arange(G, device=data.device)[:, None, None] * L
    out = torch.nn.functional.embedding_bag(
        rows.view(G * R, T), data.reshape(G * L, F), per_sample_weights=weight.view(G * R, T), mode="sum"
    )
    return out.view(G, R, F)


def _row_pass(
    images: torch.Tensor,
    boxes: torch.Tensor,
    size: tuple[int, int],
    mode: str,
    antialias: bool,
    work_dtype: torch.dtype,
    method: str,
    max_extent: tuple[int, int] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
    """The first pass of every crop: (mid (B, M, h, C, W), column taps idx and weight (B, M, w, T), swap).

    Passes run in the order that keeps `mid` smaller: with `swap` set, the problem was transposed
    (rows and columns, boxes and size swapped) and every shape here is of the transposed problem.
    """
    B, C, H, W = images.shape
    M = boxes.shape[1]
    h, w = size
    if max_extent is None:
        max_extent = (int(boxes[..., 2].max()), int(boxes[..., 3].max()))
    swap = h * W > w * H
    if swap:
        images, boxes, (h, w), (H, W) = images.transpose(2, 3), boxes[..., [1, 0, 3, 2]], (w, h), (W, H)
        max_extent = max_extent[::-1]
    flat = boxes.reshape(B * M, 4)
    row_idx, row_w = axis_taps(flat[:, 0], flat[:, 2], h, mode, antialias, max_extent[0])
    col_idx, col_w = axis_taps(flat[:, 1], flat[:, 3], w, mode, antialias, max_extent[1])
    # Rows of (C, W) values: the row pass only needs each image row as one vector.
    rows = torch.empty((B, H, C, W), dtype=work_dtype, device=images.device)
    rows.copy_(images.permute(0, 2, 1, 3))
    T = row_idx.shape[-1]
    mid = contract(rows.view(B, H, C * W), row_idx.view(B, M * h, T), row_w.view(B, M * h, T), method)
    return mid.view(B, M, h, C, W), col_idx.view(B, M, w, -1), col_w.view(B, M, w, -1), swap


# The contraction off the CPU: "dense" (batched matmuls: tensor cores, but ~99% of each weight
# matrix is zeros at ImageNet sizes) or "gather" (embedding_bag, as on the CPU). Which is faster on
# a GPU is not measured yet: benchmarks/batch_throughput.py --device-method compares them.
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
    """Resize M crops of each of B images: (B, C, H, W) and boxes (B, M, 4) -> views (B, C, M, ., .).

    boxes are (top, left, height, width) in source pixels, each inside its image (a padded
    canvas is fine: the weights never reach outside a box). The views come back contiguous in
    `work_dtype` in the order the second pass leaves them: (B, C, M, h, w), or (B, C, M, w, h)
    when the returned flag `transposed` is set (per-pixel mixing does not care; the caller
    transposes the result). max_extent: the largest box (height, width), when known on the
    host; otherwise read from `boxes`. CutMix needs these views; Mixup does not (`resample_mixup`).
    """
    method = _method(images, method)
    mid, col_idx, col_w, swap = _row_pass(images, boxes, size, mode, antialias, work_dtype, method, max_extent)
    B, M, h, C, W = mid.shape
    w, T = col_idx.shape[2:]
    cols = mid.permute(0, 1, 4, 3, 2).reshape(B * M, W, C * h)
    out = contract(cols, col_idx.view(B * M, w, T), col_w.view(B * M, w, T), method).view(B, M, w, C, h)
    return out.permute(0, 3, 1, 2, 4).contiguous(), not swap


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
    (`mixing.mixup_slots`). The M views are never written: the second pass sums over crops and
    their taps at once, each output channel reading its source channel. The result may be a
    strided view; with the returned flag set it is (B, C, w, h).
    """
    method = _method(images, method)
    mid, col_idx, col_w, swap = _row_pass(images, boxes, size, mode, antialias, work_dtype, method, max_extent)
    B, M, h, C, W = mid.shape
    w, T = col_idx.shape[2:]
    col_w = col_w * weight[:, :, None, None].to(col_w.dtype)
    if method == "dense":
        # One matmul per image over (crop, column): K[b, m * W + x, j] holds crop m's taps of output column j.
        routed = torch.take_along_dim(mid.permute(0, 3, 2, 1, 4), source.transpose(1, 2)[:, :, None, :, None], dim=1)
        taps = torch.zeros((B, M, W, w), dtype=work_dtype, device=images.device)
        taps.scatter_add_(2, col_idx.transpose(2, 3), col_w.transpose(2, 3).to(work_dtype))
        out = torch.bmm(routed.reshape(B, C * h, M * W), taps.view(B, M * W, w)).view(B, C, h, w)
        return out, swap
    # Rows (b, m, c, x) of h values (the cheapest transpose of mid); output row (j, d) gathers the taps
    # of every crop in its source channel.
    cols = mid.permute(0, 1, 3, 4, 2).reshape(B, M * C * W, h)
    plane = (torch.arange(M, device=images.device)[:, None] * C + source) * W  # (B, M, C): row of (m, c, x=0)
    by_column = col_idx.permute(0, 2, 1, 3)[:, :, None]  # (B, w, 1, M, T)
    rows = (plane.transpose(1, 2)[:, None, :, :, None] + by_column).reshape(B, w * C, M * T)
    taps = col_w.permute(0, 2, 1, 3)[:, :, None].expand(B, w, C, M, T).reshape(B, w * C, M * T)
    out = contract(cols, rows, taps, "gather").view(B, w, C, h)
    return out.permute(0, 2, 3, 1), swap
