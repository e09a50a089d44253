"""The batched CropMix kernel: a batch of tensors in a few batched ops, on any device.

Rendering never loops over images on a GPU (only over chunks of them, to bound memory):

1. Every crop of every image is resized with torchvision's own separable weights (bilinear or
   bicubic, antialiased or not) in two batched passes, rows then columns (`resample.py`):
   single crops match `torchvision.transforms.v2.functional.resized_crop` to within rounding.
   A list of different-sized images is padded into one canvas first, by one concatenation and
   one gather whose index maps the host computes (the weights never reach outside a crop, so
   the padding is never read). On the CPU, large outputs from large sources
   (PER_CROP_MIN_AREA_PRODUCT) instead resize crop by crop with torch's own kernel, exactly
   torchvision's (`_native_views`): there the batched column matmul over whole source rows costs
   more than torch's fixed-point kernel over the crop alone (benchmarks/cpu_dispatch.py).
2. Mixup is linear: all steps, lambdas and channel permutations fold into one weight and one
   source channel per crop slot (`mixing.mixup_slots`), and those fold into the passes
   (`resample.resample_mixup`): a Mixup-only chunk never writes its M views. CutMix needs the
   views: it runs its (at most M - 1) steps as masked selections over the whole batch, and the
   Mixup images of a mixed chunk take one `bmm` over their routed views.

On CUDA the work is done in float16 (bfloat16 for bfloat16 inputs, the input's dtype for
float32/64) with float32 accumulation; on the CPU in float32 (float64 for 64-bit inputs).
Host-side numbers (boxes, mixing matrices, cut boxes) travel to the device in one packed copy
(pinned and non-blocking on CUDA) and nothing is read back, so a CUDA batch never waits for the
device. The kernel is differentiable in the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode

from ..params import BatchParams, Crop
from .mixing import mixup_slots
from .resample import resample_crops, resample_mixup
from .tensor import cast_like, resized_crop, working_dtype

# The batched kernel's filters by torchvision's interpolation mode.
BATCH_MODES = {InterpolationMode.BILINEAR: "bilinear", InterpolationMode.BICUBIC: "bicubic"}
# Images are rendered in chunks whose largest intermediate holds at most this many elements
# (128 MiB in float16): B=256 photos at 224 fit in about 1 GB on a GPU. The CPU's batched passes
# take smaller chunks: fewer fresh pages to fault in per call (measured at B=1024 x 32: 2**23 gave
# the fewest faults and the best time, 2**20 to 2**26 were 5-80% slower; benchmarks/RESULTS.md).
CHUNK_ELEMENTS = 1 << 26
CPU_CHUNK_ELEMENTS = 1 << 23
# On the CPU, batches whose output area times mean source area reaches this resize each crop with
# torch's own kernel (`_native_views`); smaller ones are cheaper in the batched passes, whose column
# matmul grows with output area x source width (benchmarks/cpu_dispatch.py, one thread: batched
# 1.5-3.9x faster up to 64x64 from 64x64 and 32x32 from 128x128; even at 96x96 from 96x96 and 32x32
# from 375x375; per crop 1.3-2.7x faster from 112x112 from 128x128 and 64x64 from 256x256 up).
PER_CROP_MIN_AREA_PRODUCT = 100**4


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


def batch_work_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype the batched kernel computes in: half precision on CUDA where it holds the input exactly."""
    if device.type == "cuda":
        if dtype == torch.bfloat16:
            return torch.bfloat16
        if dtype in (torch.uint8, torch.int8, torch.float16):
            return torch.float16
    return working_dtype(dtype)


def batch_mode(interpolation: InterpolationMode) -> str:
    """The filter name of `interpolation`, or an error naming the modes the batched kernel has."""
    if interpolation not in BATCH_MODES:
        raise ValueError(
            f"interpolation must be one of {[m.name for m in BATCH_MODES]} for batches, got {interpolation!r}"
        )
    return BATCH_MODES[interpolation]


def _elements_per_image(channels: int, crops: int, size: tuple[int, int], height: int, width: int) -> int:
    """The largest intermediate of the separable passes per image, for images padded to height x width."""
    h, w = size
    return channels * max(height * width, crops * min(h * width, w * height), 2 * crops * h * w)


def _chunks(
    heights: np.ndarray, widths: np.ndarray, channels: int, crops: int, size: tuple[int, int], limit: int | None
) -> list[slice]:
    """Consecutive images grouped so that no intermediate of a group exceeds `limit` elements (sizes only).

    limit None: one image at a time (per-crop rendering, `_native_views`: its buffers then stay in
    the CPU's caches, which measured faster than any larger chunk).
    """
    if limit is None:
        return [slice(i, i + 1) for i in range(len(heights))]
    if (heights == heights[0]).all() and (widths == widths[0]).all():  # one size (a batch): equal chunks
        step = max(1, limit // _elements_per_image(channels, crops, size, int(heights[0]), int(widths[0])))
        return [slice(i, min(i + step, len(heights))) for i in range(0, len(heights), step)]
    chunks, start, top, side = [], 0, 0, 0
    for i, (H, W) in enumerate(zip(heights.tolist(), widths.tolist(), strict=True)):
        top, side = max(top, H), max(side, W)
        if i > start and (i + 1 - start) * _elements_per_image(channels, crops, size, top, side) > limit:
            chunks.append(slice(start, i))
            start, top, side = i, H, W
    chunks.append(slice(start, len(heights)))
    return chunks


def _canvas_maps(heights: np.ndarray, widths: np.ndarray, channels: int) -> list[np.ndarray]:
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


def _canvas(images: Any, kind: str, rows: slice, dtype: torch.dtype, maps: list[torch.Tensor]) -> torch.Tensor:
    """The images of `rows` as one (b, C, H, W) tensor; a list is zero-padded to its largest image.

    A list takes one concatenation and one gather by the host's index maps (`_canvas_maps`), so
    that nothing waits on the device (nested tensors' padding copies its sizes in a blocking copy).
    """
    if kind == "batch":
        return images[rows]
    part = images[rows]
    flat = torch.cat([t.reshape(-1) for t in part] + [part[0].new_zeros(1)])
    row, col = maps
    index = (row[..., None] + col[:, None, None, :]).clamp_(max=flat.numel() - 1)
    return flat.to(dtype).index_select(0, index.view(-1)).view(index.shape)  # int64: measured 2x int32's speed


def render_batch(
    images: torch.Tensor | Sequence[torch.Tensor],
    params: BatchParams,
    size: tuple[int, int],
    antialias: bool = True,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
) -> torch.Tensor:
    """The CropMix outputs (B, C, h, w) of a batch for given parameters (as drawn by `sample_batch`).

    images: a (B, C, H, W) tensor or a list of (C, Hi, Wi) tensors. Deterministic: the same
    images and parameters give the same output, of the images' dtype and device, channels-last
    when the input batch is, inside autocast too (it is disabled here).
    """
    kind, heights, widths, channels_last = check_images(images)
    if len(params) != len(heights):
        raise ValueError(f"params hold {len(params)} images, the batch has {len(heights)}")
    mode = batch_mode(interpolation)
    device_type = images[0].device.type
    # The kernel picks its own dtypes; autocast would recast some matmul operands and not others.
    with torch.autocast(device_type, enabled=False) if torch.amp.is_autocast_available(device_type) else nullcontext():
        return _render(images, kind, heights, widths, channels_last, params, size, mode, antialias, interpolation)


def _render(
    images: Any,
    kind: str,
    heights: np.ndarray,
    widths: np.ndarray,
    channels_last: bool,
    params: BatchParams,
    size: tuple[int, int],
    mode: str,
    antialias: bool,
    interpolation: InterpolationMode,
) -> torch.Tensor:
    first = images[0]
    B, C, dtype, M = len(heights), first.shape[0], first.dtype, params.order.shape[1]
    work = batch_work_dtype(dtype, first.device)
    # A list is rendered in order of size, so that each chunk pads its images to similar sizes.
    ranked = np.lexsort((widths, heights)) if kind == "list" else np.arange(B)
    images = [images[i] for i in ranked] if kind == "list" else images
    heights, widths = heights[ranked], widths[ranked]
    limit = _chunk_limit(first.device, size, heights, widths)
    chunks = _chunks(heights, widths, C, M, size, limit)
    host = [a[ranked] for a in _host_params(params, C)] + [ranked]
    if kind == "list" and limit is not None:  # each chunk's canvas index maps travel in the same copy
        host += [m for rows in chunks for m in _canvas_maps(heights[rows], widths[rows], C)]
    on_device = _to_device(host, first.device)
    boxes_d, rank_d = on_device[0].long(), on_device[9].long()
    weight, source, order, box, active, pasted_new, perm, cut_d = on_device[1:9]
    mixing = [weight.to(work), source.long(), order.long(), box.long()]
    mixing += [active.bool(), pasted_new.bool(), perm.long(), cut_d.bool()]
    maps = [m.long() for m in on_device[10:]]
    extent = (int(host[0][..., 2].max()), int(host[0][..., 3].max()))
    counts = params.n[ranked]  # crops per image, in rendering order
    layout = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((B, C, *size), dtype=dtype, device=first.device, memory_format=layout)
    for k, rows in enumerate(chunks):
        cut, chunk_mixing = host[8][rows], [t[rows] for t in mixing]
        if limit is None:
            views, transposed = _native_views(
                images, rows, host[0][rows], counts[rows], size, interpolation, antialias, work
            )
            mixed = _mix(views, chunk_mixing, cut, transposed)
        else:
            canvas, boxes = _canvas(images, kind, rows, work, maps[2 * k : 2 * k + 2]), boxes_d[rows]
            if cut.any():
                views, transposed = resample_crops(canvas, boxes, size, mode, antialias, work, max_extent=extent)
                mixed = _mix(views, chunk_mixing, cut, transposed)
            else:  # Mixup only: folded into the column pass, no views
                weights, sources = chunk_mixing[:2]
                mixed, transposed = resample_mixup(
                    canvas, boxes, weights, sources, size, mode, antialias, work, max_extent=extent
                )
        mixed = mixed.transpose(-1, -2) if transposed else mixed
        mixed = _round_half_up(mixed, mode) if dtype == torch.uint8 else cast_like(mixed, dtype)
        if kind == "list":
            out.index_copy_(0, rank_d[rows], mixed.to(dtype))
        else:
            out[rows] = mixed
    return out


def _round_half_up(values: torch.Tensor, mode: str) -> torch.Tensor:
    """uint8 pixels: rounded half up by the truncating copy into the output (as .to(uint8) truncates).

    Bilinear values in float32 are convex combinations of pixels, inside [0, 255] up to ~1e-5, so
    they need no clamp; bicubic's negative lobes overshoot, and float16 weights (CUDA) may sum to
    1 + 2^-11 at each of the passes, which could carry a 255 past 255.5.
    """
    values = values.add_(0.5)
    exact = mode == "bilinear" and values.dtype in (torch.float32, torch.float64)
    return values if exact else values.clamp_(0, 255)


def cpu_batch_passes(size: tuple[int, int], height: int, width: int) -> bool:
    """Whether BatchCropMix on a CPU renders height x width sources to `size` in its batched passes
    (several times the per-image loop at small sizes), not crop by crop (about even with it)."""
    return _chunk_limit(torch.device("cpu"), size, np.array([height]), np.array([width])) is not None


def _chunk_limit(device: torch.device, size: tuple[int, int], heights: np.ndarray, widths: np.ndarray) -> int | None:
    """The elements a chunk of the batched passes may hold; None where the CPU resizes crop by crop
    (large outputs or sources)."""
    if device.type != "cpu":
        return CHUNK_ELEMENTS
    large = size[0] * size[1] * float(np.mean(heights * widths)) >= PER_CROP_MIN_AREA_PRODUCT
    return None if large else CPU_CHUNK_ELEMENTS


def _native_views(
    images: Any,
    rows: slice,
    boxes: np.ndarray,
    counts: np.ndarray,
    size: tuple[int, int],
    interpolation: InterpolationMode,
    antialias: bool,
    work: torch.dtype,
) -> tuple[torch.Tensor, bool]:
    """Views (b, M, C, h, w) of the images of `rows`, each crop by torch's own CPU kernel (one call per crop).

    On the CPU, torch's uint8 resampling of one crop (vectorised integer arithmetic over the crop
    only) beats every composition of batched float ops at ImageNet sizes: the transposes between
    two batched passes alone cost more than the whole per-image CropMix (benchmarks/RESULTS.md).
    An image is made channels-last (the layout that kernel reads) once, rather than each crop,
    when its crops cover more pixels than it has.
    Slots past an image's crop count are zeroed (the mixing weighs them 0).
    """
    part = images[rows]
    views = torch.empty((len(part), boxes.shape[1], part[0].shape[0], *size), dtype=work)
    for k, (image, image_boxes, count) in enumerate(zip(part, boxes.tolist(), counts.tolist(), strict=True)):
        image_boxes = image_boxes[:count]
        if sum(h * w for _, _, h, w in image_boxes) >= image.shape[-2] * image.shape[-1]:
            image = image[None].contiguous(memory_format=torch.channels_last)[0]
        for m, (top, left, height, width) in enumerate(image_boxes):
            views[k, m] = resized_crop(image, Crop(top, left, height, width), size, interpolation, antialias)
        views[k, count:] = 0
    return views, False


def _host_params(params: BatchParams, channels: int) -> list[np.ndarray]:
    """Per-image arrays the kernel needs: crop boxes, Mixup weights and sources, order, cut boxes and sides,
    perms, CutMix flag."""
    B, M = params.order.shape
    S = max(M - 1, 1)
    used = np.arange(M)[None, :] < params.n[:, None]
    boxes = np.where(used[..., None], params.crops, np.array([0, 0, 1, 1]))  # unused slots: a 1-pixel crop
    perm = params.channel_perm
    if perm is None:
        perm = np.broadcast_to(np.arange(channels), (B, S, channels))
    active = np.arange(S)[None, :] < (params.n - 1)[:, None]
    weight, source = mixup_slots(params, channels)
    return [boxes, weight, source, params.order, params.box, active, params.pasted_new, perm, params.cutmix[:, 0]]


def _mix(views: torch.Tensor, mixing: list[torch.Tensor], cut: np.ndarray, transposed: bool) -> torch.Tensor:
    """Mix views (b, M, C, h, w) into (b, C, h, w): Mixup as one bmm, CutMix as masked selections.

    With `transposed` the views are (b, M, C, w, h) and so is the result: the cut boxes are transposed.
    """
    weight, source, order, box, active, pasted_new, perm, cut_d = mixing
    b, M, C, h, w = views.shape
    out = None
    if not cut.all():
        # A[b, d, m * C + c] = weight[b, m] if crop m feeds output channel d from channel c: one small bmm.
        routing = torch.nn.functional.one_hot(source, C).to(views.dtype) * weight[:, :, None, None]  # (b, M, d, c)
        matrix = routing.transpose(1, 2).reshape(b, C, M * C)
        out = torch.bmm(matrix, views.view(b, M * C, h * w)).view(b, C, h, w)
    if cut.any():
        box = box[..., [1, 0, 3, 2]] if transposed else box
        cut_out = _cutmix(views, order, box, active, pasted_new, perm)
        out = cut_out if out is None else torch.where(cut_d[:, None, None, None], cut_out, out)
    return out


def _cutmix(
    views: torch.Tensor,
    order: torch.Tensor,
    box: torch.Tensor,
    active: torch.Tensor,
    pasted_new: torch.Tensor,
    perm: torch.Tensor,
) -> torch.Tensor:
    """CutMix chains of the whole batch; views (B, M, C, h, w) in band order.

    Every output pixel is one pixel of one view, so the chain runs on a map of (view, channel)
    indices and the views are read once, by one gather (a chain over the pixels themselves wrote
    five full-size temporaries per step).
    """
    B, M, C, h, w = views.shape
    channel = torch.arange(C, device=views.device)[None, :, None]
    source = order[:, :1, None] * C + channel  # (B, C, 1): view order[0], each channel its own
    ys = torch.arange(h, device=views.device)[None, :, None]
    xs = torch.arange(w, device=views.device)[None, None, :]
    for k in range(M - 1):
        new = order[:, k + 1, None, None] * C + channel
        top, left, bh, bw = (v[:, None, None] for v in box[:, k].unbind(-1))
        inside = (ys >= top) & (ys < top + bh) & (xs >= left) & (xs < left + bw) & active[:, k, None, None]
        new_pasted = pasted_new[:, k, None, None]
        pasted = torch.where(new_pasted, new, source)
        pasted = torch.gather(pasted, 1, perm[:, k, :, None].expand(B, C, pasted.shape[2]))  # channel permutation
        base = torch.where(active[:, k, None, None] & ~new_pasted, new, source)
        source = torch.where(inside.view(B, 1, h * w), pasted, base)
    out = torch.gather(views.view(B, M * C, h * w), 1, source.expand(B, C, h * w))
    return out.view(B, C, h, w)
