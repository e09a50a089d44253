"""The batched CropMix kernel: a batch of tensors in a few batched ops, on any device.

Rendering never loops over images:

1. The images are converted once into an "atlas": each image's pixels in float plus its 2x2
   box-filter pyramid, side by side (one page per image for a (B, C, H, W) batch; one packed
   page for a list of different sizes).
2. Each crop reads from the pyramid level that leaves a residual shrink r in [1, 2) (level 0
   when enlarged). `grid_sample` samples all crops of all images at once; when any crop is
   shrunk, every output pixel averages 2x2 bilinear samples (four calls) spread so that the
   total blur matches torchvision's antialiased triangle filter (variance r^2 / 6 in level
   pixels). Enlarged crops are sampled exactly as torchvision's bilinear resize of the crop.
3. Mixup is linear: all steps, lambdas and channel permutations fold into one (C, C * M)
   matrix per image (`mixing.mixup_matrix`), applied with one `bmm`. CutMix runs its (at most
   M - 1) steps as masked selections over the whole batch.

All host-side numbers (grid coefficients, mixing matrices, boxes) travel to the device in one
packed copy (pinned and non-blocking on CUDA), and nothing is read back, so a CUDA batch never
waits for the device. The kernels are differentiable in the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..params import BatchParams
from .mixing import mixup_matrix
from .tensor import cast_like, working_dtype


def _pack_shelves(heights: np.ndarray, widths: np.ndarray, align: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Place images of different sizes on one page, in shelves; origins are multiples of `align`."""
    hs = -(-heights // align) * align
    ws = -(-widths // align) * align
    page_w = max(int(ws.max()), int(np.ceil(np.sqrt((hs * ws).sum()) * 1.2 / align)) * align)
    y0, x0 = np.zeros_like(hs), np.zeros_like(ws)
    x = y = shelf = 0
    for i in np.argsort(-hs, kind="stable"):  # bookkeeping on sizes only
        if x + ws[i] > page_w:
            x, y, shelf = 0, y + shelf, 0
        y0[i], x0[i] = y, x
        x, shelf = x + ws[i], max(shelf, int(hs[i]))
    return y0, x0, y + shelf, page_w


def _grid_coefficients(
    params: BatchParams, heights: np.ndarray, widths: np.ndarray, size: tuple[int, int], antialias: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Pyramid level (B, M) and per-axis sampling coefficients (B, M, 2, 5) of every crop, in level pixels."""
    crops = params.crops.astype(np.float64)
    used = np.arange(crops.shape[1])[None, :] < params.n[:, None]
    crops[~used] = (0.0, 0.0, 1.0, 1.0)  # unused slots: a harmless 1-pixel crop
    start, extent = crops[..., :2], crops[..., 2:]
    shrink = extent / np.asarray(size, dtype=np.float64)
    if antialias:
        level = np.floor(np.log2(np.maximum(shrink.min(axis=-1), 1.0))).astype(np.int64)
        max_level = np.floor(np.log2(np.minimum(heights, widths))).astype(np.int64)
        level = np.minimum(level, max_level[:, None])
    else:
        level = np.zeros(shrink.shape[:2], dtype=np.int64)
    scale = np.exp2(level)[..., None]
    step = shrink / scale  # level pixels per output pixel (the residual shrink r)
    lo = start / scale
    valid = (np.stack([heights, widths], axis=-1)[:, None, :] >> level[..., None]) - 1
    hi = np.minimum(np.maximum(lo, (start + extent) / scale - 1.0), valid)
    lo = np.minimum(lo, hi)
    # torchvision's antialiasing filter is a triangle of half-width r level pixels: variance r^2 / 6.
    # The box pyramid gave (1 - 4^-k) / 12 of it, bilinear sampling about 1 / 6; samples at +-spread
    # add spread^2, which supplies the rest. (Matching the variance also matches CropMix's output
    # pixel variance, which a test checks.)
    var = step**2 / 6.0 - 1.0 / 6.0 - (1.0 - 4.0 ** -level[..., None]) / 12.0
    spread = np.where((shrink > 1.0) & antialias, np.sqrt(np.maximum(var, 0.0)) / step, 0.0)
    coef = np.stack([lo - 0.5, step, lo, hi, spread], axis=-1)  # u = coef0 + (i + 0.5 + o) * coef1
    return level, coef


def check_images(images: Any) -> tuple[str, np.ndarray, np.ndarray, bool]:
    """Validate a batch; return its kind ("batch" or "list"), heights, widths and channels-last flag."""
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"BatchCropMix expects a (B, C, H, W) tensor or a list of (C, H, W), got {images.shape}")
        tensors, kind = [images[0]] if images.shape[0] else [], "batch"
        if min(images.shape) < 1:
            raise ValueError(f"BatchCropMix expects a non-empty batch, got shape {tuple(images.shape)}")
    elif isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("BatchCropMix got an empty list of images")
        tensors, kind = images, "list"
    else:
        raise TypeError(f"BatchCropMix expects a tensor or a list of tensors, got {type(images).__name__}")
    first = tensors[0]
    for i, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"images[{i}] must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 3 or min(t.shape) < 1:
            raise ValueError(f"images[{i}] must be a non-empty (C, H, W) tensor, got shape {tuple(t.shape)}")
        if t.dtype == torch.bool or t.is_complex():
            raise TypeError(f"images[{i}] must be real-valued, got dtype {t.dtype}")
        if (t.shape[0], t.dtype, t.device) != (first.shape[0], first.dtype, first.device):
            raise ValueError(
                f"all images must share channels, dtype and device; images[0] is {tuple(first.shape)} "
                f"{first.dtype} on {first.device}, images[{i}] is {tuple(t.shape)} {t.dtype} on {t.device}"
            )
    if kind == "batch":
        B, _, H, W = images.shape
        cl = images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous()
        return kind, np.full(B, H, dtype=np.int64), np.full(B, W, dtype=np.int64), cl
    sizes = np.asarray([t.shape[1:] for t in images], dtype=np.int64)
    return kind, sizes[:, 0], sizes[:, 1], False


def _to_device(host: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """Host arrays as float64 tensors on `device`, in one packed copy."""
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in host])
    packed = torch.from_numpy(flat)
    if device.type == "cuda":
        packed = packed.pin_memory().to(device, non_blocking=True)
    else:
        packed = packed.to(device)
    parts = torch.split(packed, [int(np.prod(np.shape(a))) for a in host])
    return [t.view(np.shape(a)) for t, a in zip(parts, host, strict=True)]


def _atlas(
    images: Any, kind: str, page: tuple[int, int], origins: tuple[np.ndarray, np.ndarray], top: int, dtype: torch.dtype
) -> torch.Tensor:
    """Level 0 of every page on the left, levels 1..top stacked in a column on its right."""
    first = images[0]
    C, device = first.shape[0], first.device
    page_h, page_w = page
    pages = len(images) if kind == "batch" else 1
    atlas_w = page_w + (page_w >> 1 if top else 0)
    atlas = torch.empty((pages, C, page_h, atlas_w), dtype=dtype, device=device)
    if kind == "batch":
        atlas[..., :page_w].copy_(images)
        atlas[..., page_w:].zero_()
    else:
        atlas.zero_()
        for img, y, x in zip(images, origins[0].tolist(), origins[1].tolist(), strict=True):  # placement copies
            atlas[0, :, y : y + img.shape[1], x : x + img.shape[2]].copy_(img)
    rows = _level_rows(page_h, top)
    grad = atlas.requires_grad
    prev = atlas[..., :page_w]
    for k in range(1, top + 1):  # 2x2 box pyramid; strided sums beat avg_pool2d on atlas views
        hk, wk = page_h >> k, page_w >> k
        region = atlas[..., rows[k - 1] : rows[k - 1] + hk, page_w : page_w + wk]
        quads = [prev[..., dy : 2 * hk : 2, dx : 2 * wk : 2] for dy in (0, 1) for dx in (0, 1)]
        if grad:  # autograd takes no out= arguments; the same sums, out of place
            region.copy_(quads[0] + quads[1] + quads[2] + quads[3]).mul_(0.25)
        else:
            torch.add(quads[0], quads[1], out=region).add_(quads[2]).add_(quads[3]).mul_(0.25)
        prev = region
    return atlas


def _level_rows(page_h: int, top: int) -> np.ndarray:
    """The first atlas row of pyramid levels 1..top in the right-hand column."""
    return np.concatenate([[0], np.cumsum([page_h >> k for k in range(1, top)])]).astype(np.int64)


def _layout(
    kind: str, heights: np.ndarray, widths: np.ndarray, level: np.ndarray, top: int
) -> tuple[tuple[int, int], tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Page size, each image's origin on its page, and each crop's level origin (B, M, 2) in the atlas."""
    B = len(heights)
    if kind == "batch":
        page_h, page_w = int(heights[0]), int(widths[0])
        y0 = x0 = np.zeros(B, dtype=np.int64)
    else:
        y0, x0, page_h, page_w = _pack_shelves(heights, widths, 2**top)
    rows = _level_rows(page_h, top)
    origin = np.stack(
        [np.where(level > 0, rows[np.maximum(level - 1, 0)], 0), np.where(level > 0, page_w, 0)], axis=-1
    ) + (np.stack([y0, x0], axis=-1)[:, None, :] >> level[..., None])
    return (page_h, page_w), (y0, x0), origin


def render_batch(
    images: torch.Tensor | Sequence[torch.Tensor],
    params: BatchParams,
    size: tuple[int, int],
    antialias: bool = True,
) -> torch.Tensor:
    """The CropMix outputs (B, C, h, w) of a batch for given parameters (as drawn by `sample_batch`).

    images: a (B, C, H, W) tensor or a list of (C, Hi, Wi) tensors. Deterministic: the same
    images and parameters give the same output, of the images' dtype and device, channels-last
    when the input batch is.
    """
    kind, heights, widths, channels_last = check_images(images)
    if len(params) != len(heights):
        raise ValueError(f"params hold {len(params)} images, the batch has {len(heights)}")
    if kind == "list" and (heights == heights[0]).all() and (widths == widths[0]).all():
        images, kind = torch.stack(list(images)), "batch"
    first = images[0]
    B, C, dtype = len(heights), first.shape[0], first.dtype
    work = working_dtype(dtype)
    M = params.order.shape[1]

    level, coef = _grid_coefficients(params, heights, widths, size, antialias)
    top = int(level.max())
    page, origins, origin = _layout(kind, heights, widths, level, top)
    coef[..., [0, 2, 3]] += origin[..., None]
    cut = params.cutmix[:, 0]
    S = max(M - 1, 1)
    perm = params.channel_perm if params.channel_perm is not None else np.broadcast_to(np.arange(C), (B, S, C))
    active = np.arange(S)[None, :] < (params.n - 1)[:, None]
    host = [coef, mixup_matrix(params, C), params.order, params.box, active, params.pasted_new, perm, cut]
    coef_d, A, order, box, active_d, pasted_new, perm_d, cut_d = _to_device(host, first.device)

    atlas = _atlas(images, kind, page, origins, top, work)
    pages = atlas.shape[0]
    spread = bool((coef[..., 4] > 0).any())
    h, w = size
    views = _sample(atlas, coef_d.to(work).view(B * M, 2, 5), (h, w), spread, pages)
    if pages == B:
        views = views.view(B, C, M, h, w)  # crop slots in band order
    else:  # one packed page holding the crops of image 0, then image 1, ...
        views = views.view(C, B, M, h, w).transpose(0, 1)
    out = None
    if not cut.all():
        out = torch.bmm(A.to(work), views.reshape(B, C * M, h * w)).view(B, C, h, w)
    if cut.any():
        cut_out = _cutmix(views, order.long(), box.long(), active_d.bool(), pasted_new.bool(), perm_d.long())
        out = cut_out if out is None else torch.where(cut_d.bool()[:, None, None, None], cut_out, out)
    # Values are convex combinations of pixels: uint8 rounds half up in place, like the per-image Mixup.
    out = out.add_(0.5).clamp_(0, 255).to(dtype) if dtype == torch.uint8 else cast_like(out, dtype)
    return out.contiguous(memory_format=torch.channels_last) if channels_last else out


def _sample(atlas: torch.Tensor, coef: torch.Tensor, size: tuple[int, int], spread: bool, pages: int) -> torch.Tensor:
    """Bilinear samples of all crops (K = B * M, 2 axes, 5 coefficients) -> (pages, C, K / pages * h, w).

    With `spread`, each output pixel averages 2 x 2 samples offset by +-spread output pixels
    (one grid at a time, to bound the memory of the grids).
    """
    h, w = size
    K = coef.shape[0]
    signs = (-1.0, 1.0) if spread else (0.0,)
    axes: list[list[torch.Tensor]] = []
    for axis, n, extent in ((0, h, atlas.shape[-2]), (1, w, atlas.shape[-1])):
        centre = torch.arange(n, device=atlas.device, dtype=atlas.dtype)[None, :] + 0.5
        axes.append([])
        for sign in signs:
            u = coef[:, axis, 0:1] + (centre + sign * coef[:, axis, 4:5]) * coef[:, axis, 1:2]
            u = torch.clamp(u, coef[:, axis, 2:3], coef[:, axis, 3:4])
            axes[-1].append((u + 0.5) * (2.0 / extent) - 1.0)
    out = None
    for gy in axes[0]:
        for gx in axes[1]:
            grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)
            grid = grid.view(pages, K // pages * h, w, 2)
            sample = F.grid_sample(atlas, grid, mode="bilinear", padding_mode="border", align_corners=False)
            out = sample if out is None else out.add_(sample)
    return out.mul_(1.0 / len(signs) ** 2) if spread else out


def _cutmix(
    views: torch.Tensor,
    order: torch.Tensor,
    box: torch.Tensor,
    active: torch.Tensor,
    pasted_new: torch.Tensor,
    perm: torch.Tensor,
) -> torch.Tensor:
    """CutMix chains of the whole batch; views (B, C, M, h, w) in band order."""
    B, C, M, h, w = views.shape
    ordered = torch.take_along_dim(views, order[:, None, :, None, None], dim=2)
    run = ordered[:, :, 0]
    ys = torch.arange(h, device=views.device)[None, :, None]
    xs = torch.arange(w, device=views.device)[None, None, :]
    for k in range(M - 1):
        new = ordered[:, :, k + 1]
        top, left, bh, bw = (v[:, None, None] for v in box[:, k].unbind(-1))
        inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw) & active[:, k, None, None]
        new_pasted = pasted_new[:, k, None, None, None]
        patch = torch.take_along_dim(torch.where(new_pasted, new, run), perm[:, k, :, None, None], dim=1)
        base = torch.where(active[:, k, None, None, None] & ~new_pasted, new, run)
        run = torch.where(inside[:, None], patch, base)
    return run
