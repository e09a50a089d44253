"""The batched CropMix kernel: a batch of tensors in a few batched ops, on any device.

Rendering never loops over images on a GPU (only over chunks of them, to bound memory, and over
crop slots):

1. `render_batch` ranks the images (a list by size, so that each chunk pads its images to
   similar sizes), picks a kernel (`select_batch_kernel`, or the one named), sizes the chunks from the
   memory they need, builds the `BatchPlan` (every per-image number, in one copy to the device)
   and, for the separable kernels, every crop's taps: each once per call.
2. Kernels. "gather" and "dense" resize every crop with torchvision's own separable weights
   (bilinear or bicubic, antialiased or not) in two batched passes (`resample.py`): single crops
   match `torchvision.transforms.v2.functional.resized_crop` to within rounding. A list of
   different-sized images is padded into one canvas per chunk first, by one concatenation and
   one gather whose index maps the host computes (the weights never reach outside a crop, so the
   padding is never read). "per_crop" resizes crop by crop with torch's own CPU kernel, exactly
   torchvision's (`_native_views`): on the CPU, for large outputs from large sources
   (PER_CROP_MIN_AREA_PRODUCT), the batched column matmul over whole source rows costs more than
   torch's fixed-point kernel over the crop alone (benchmarks/cpu_dispatch.py).
3. Mixup is linear: all steps, lambdas and channel permutations fold into one weight and one
   source channel per crop slot (`mixing.mixup_slots`), and those fold into the passes
   (`resample.resample_mixup`): a Mixup-only chunk never writes its M views. CutMix needs the
   views: its chains, in closed form (`mixing.cutmix_tables`), select each output pixel's view
   and channel in a few ops over the whole chunk, and the Mixup images of a mixed chunk take one
   `bmm` over their routed views.

On CUDA the work is done in float16 (bfloat16 for bfloat16 inputs, the input's dtype for
float32/64) with float32 accumulation; on the CPU in float32 (float64 for 64-bit inputs).
Autocast is disabled inside. Nothing is read back from the device, so a CUDA batch never waits
for it. The kernel is differentiable in the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode

from ..params import BatchParams, Crop
from . import resample
from .mixing import image_renderers, renderers_of
from .plan import BatchPlan, make_plan
from .resample import Resize, Taps, crop_taps, resample_crops, resample_mixup, swapped
from .tensor import cast_like, resized_crop, working_dtype

# The batched kernel's filters by torchvision's interpolation mode.
BATCH_MODES = {InterpolationMode.BILINEAR: "bilinear", InterpolationMode.BICUBIC: "bicubic"}
_INTERPOLATIONS = {name: interpolation for interpolation, name in BATCH_MODES.items()}
# The kernels `render_batch` has: torch's own per crop (CPU), the separable passes by gather or dense matmul.
BATCH_KERNELS = ("per_crop", "gather", "dense")
# Off the CPU, a chunk's intermediates may hold this many bytes (`_device_bytes`; the output and the
# taps, a few % more, are left as margin): B=256 photos at 224 from 375x500 render Mixup in one
# chunk, CutMix in two, and the peak stays under 1 GB (benchmarks/cuda_memory_on_cpu.py). The CPU's batched
# passes take smaller chunks: fewer fresh pages to fault in per call (measured at B=1024 x 32:
# 2**23 elements gave the fewest faults and the best time, 2**20 to 2**26 were 5-80% slower;
# benchmarks/RESULTS.md).
DEVICE_CHUNK_BYTES = 900 * 10**6
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
            hint = ""
            if type(t).__module__.startswith("PIL."):
                hint = " (convert PIL images with torchvision.transforms.v2.PILToTensor() first, e.g. in the dataset)"
            raise TypeError(f"images[{i}] must be a torch.Tensor, got {type(t).__name__}{hint}")
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


def batch_work_dtype(dtype: torch.dtype, device_type: str) -> torch.dtype:
    """The dtype the batched kernel computes in: half precision on CUDA where it holds the input exactly."""
    if device_type == "cuda":
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


def check_kernel(kernel: str | None) -> str | None:
    """`kernel` if it names one of BATCH_KERNELS (or is None: chosen per batch), else an error naming them."""
    if kernel is not None and kernel not in BATCH_KERNELS:
        raise ValueError(f"kernel must be one of {list(BATCH_KERNELS)} or None, got {kernel!r}")
    return kernel


def select_batch_kernel(device_type: str, size: tuple[int, int], heights: np.ndarray, widths: np.ndarray) -> str:
    """The kernel for a batch: on the CPU "per_crop" for large outputs from large sources, else
    "gather"; off the CPU `resample.DEVICE_METHOD`."""
    if device_type != "cpu":
        return resample.DEVICE_METHOD
    large = size[0] * size[1] * float(np.mean(heights * widths)) >= PER_CROP_MIN_AREA_PRODUCT
    return "per_crop" if large else "gather"


def cpu_batch_passes(size: tuple[int, int], height: int, width: int) -> bool:
    """Whether BatchCropMix on a CPU renders height x width sources to `size` in its batched passes
    (several times the per-image loop at small sizes), not crop by crop (about even with it)."""
    return select_batch_kernel("cpu", size, np.array([height]), np.array([width])) != "per_crop"


def _cpu_elements(channels: int, crops: int, size: tuple[int, int], height: int, width: int) -> int:
    """The CPU's measure of a chunk: its largest intermediate per image, for images padded to height x width."""
    h, w = size
    return channels * max(height * width, crops * min(h * width, w * height), 2 * crops * h * w)


def _device_bytes(
    kernel: str, shape: tuple[int, int, int, int], size: tuple[int, int], item: int, cut: bool, padded: bool
) -> int:
    """The bytes the separable passes hold at once per image off the CPU, for (C, M, height, width) sources.

    The source in the work dtype (and a padded list's canvas index); Mixup: the column taps of
    every slot, and per slot the dense row matrix and the slot's rows, routed, then the output;
    CutMix: every slot's rows at once (dense: by a row matrix), then with the column taps the
    views (dense: twice, in (h, C) order and transposed), then the chain's pixel codes and int64
    gather index.
    """
    C, M, height, width = shape
    h, w = size
    if swapped(height, width, size):
        height, width, h, w = width, height, w, h
    dense = kernel == "dense"
    source = C * height * width * (item + (8 if padded else 0))
    if not cut:
        return source + ((height * h if dense else 0) + 2 * C * h * width + M * width * w + C * h * w) * item
    rows, views = M * C * h * width * item, M * C * h * w * item
    passes = max(source + M * height * h * dense * item + rows, rows + M * width * w * item + views, 2 * views)
    return max(passes, views + h * w * 16 + C * h * w * (8 + 2 * item))


def _chunks(
    kernel: str,
    device_type: str,
    sizes: tuple[np.ndarray, np.ndarray],
    shape: tuple[int, int],
    resize: Resize,
    cut: bool,
    padded: bool,
) -> list[slice]:
    """Consecutive images grouped so that no group exceeds its budget, by their sizes (heights, widths)
    only; shape is (C, M), resize gives the output size and the work dtype's item size.

    "per_crop": one image at a time (its buffers then stay in the CPU's caches, which measured
    faster than any larger chunk). The CPU's passes: CPU_CHUNK_ELEMENTS of the largest
    intermediate; other devices: DEVICE_CHUNK_BYTES (`_device_bytes`).
    """
    heights, widths = sizes
    if kernel == "per_crop":
        return [slice(i, i + 1) for i in range(len(heights))]
    C, M = shape
    size, item = resize.size, resize.work_dtype.itemsize
    if device_type == "cpu":
        limit, cost = CPU_CHUNK_ELEMENTS, lambda H, W: _cpu_elements(C, M, size, H, W)
    else:
        limit, cost = DEVICE_CHUNK_BYTES, lambda H, W: _device_bytes(kernel, (C, M, H, W), size, item, cut, padded)
    if (heights == heights[0]).all() and (widths == widths[0]).all():  # one size (a batch): equal chunks
        step = max(1, limit // cost(int(heights[0]), int(widths[0])))
        step = -(-len(heights) // -(-len(heights) // step))  # as many chunks, as even as they come
        return [slice(i, min(i + step, len(heights))) for i in range(0, len(heights), step)]
    chunks, start, top, side = [], 0, 0, 0
    for i, (H, W) in enumerate(zip(heights.tolist(), widths.tolist(), strict=True)):
        top, side = max(top, H), max(side, W)
        if i > start and (i + 1 - start) * cost(top, side) > limit:
            chunks.append(slice(start, i))
            start, top, side = i, H, W
    chunks.append(slice(start, len(heights)))
    return chunks


def _canvas(images: Any, kind: str, rows: slice, dtype: torch.dtype, maps: tuple | None) -> torch.Tensor:
    """The images of `rows` as one (b, C, H, W) tensor; a list is zero-padded to its largest image.

    A list takes one concatenation and one gather by the host's index maps (`plan.canvas_maps`),
    so that nothing waits on the device (nested tensors' padding copies its sizes in a blocking copy).
    """
    if kind == "batch":
        return images[rows]
    assert maps is not None
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
    kernel: str | None = None,
    device_type: str | None = None,
) -> torch.Tensor:
    """The CropMix outputs (B, C, h, w) of a batch for given parameters (as drawn by `sample_batch`).

    images: a (B, C, H, W) tensor or a list of (C, Hi, Wi) tensors. Deterministic: the same
    images and parameters give the same output, of the images' dtype and device, channels-last
    when the input batch is, inside autocast too (it is disabled here). kernel: one of BATCH_KERNELS,
    or None to choose by device and size (`select_batch_kernel`). device_type: the device whose choices
    (kernel, chunks, work dtype) to make, by default the images'; e.g. "cuda" on meta tensors.
    """
    kind, heights, widths, channels_last = check_images(images)
    if len(params) != len(heights):
        raise ValueError(f"params hold {len(params)} images, the batch has {len(heights)}")
    mode = batch_mode(interpolation)
    check_kernel(kernel)
    first = images[0]
    on = first.device.type
    device_type = device_type or on
    resize = Resize(size, mode, antialias, batch_work_dtype(first.dtype, device_type))
    # The kernel picks its own dtypes; autocast would recast some matmul operands and not others.
    with torch.autocast(on, enabled=False) if torch.amp.is_autocast_available(on) else nullcontext():
        return _render(images, kind, (heights, widths), channels_last, params, resize, kernel, device_type)


def _render(
    images: Any,
    kind: str,
    sizes: tuple[np.ndarray, np.ndarray],
    channels_last: bool,
    params: BatchParams,
    resize: Resize,
    kernel: str | None,
    device_type: str,
) -> torch.Tensor:
    """`render_batch` past its checks: resize's method is left to `kernel` (None: chosen here)."""
    first = images[0]
    B, C, dtype, M = len(sizes[0]), first.shape[0], first.dtype, params.order.shape[1]
    size, work = resize.size, resize.work_dtype
    # A list is rendered in order of size, so that each chunk pads its images to similar sizes.
    ranked = np.lexsort(sizes[::-1]) if kind == "list" else np.arange(B)
    images = [images[i] for i in ranked] if kind == "list" else images
    heights, widths = sizes[0][ranked], sizes[1][ranked]
    kernel = kernel or select_batch_kernel(device_type, size, heights, widths)
    padded = kind == "list" and kernel != "per_crop"
    renderers = renderers_of(image_renderers(params)).values()
    cut = not all(r.folds for r in renderers)  # some images need their views
    chunks = _chunks(kernel, device_type, (heights, widths), (C, M), resize, cut, padded)
    views_mixup = any(r.folds for r in renderers) and (kernel == "per_crop" or cut)  # folding images, from views
    plan = make_plan(params, ranked, chunks, (heights, widths) if padded else None, C, size, first.device, views_mixup)
    taps = None
    if kernel != "per_crop":  # the separable passes' row pass is the kernel's
        resize = replace(resize, method=kernel)
        taps = crop_taps(plan.starts, plan.lengths, size, resize.mode, resize.antialias, plan.extent, work)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((B, C, *size), dtype=dtype, device=first.device, memory_format=layout)
    for k, rows in enumerate(chunks):
        if kernel == "per_crop":
            views = _native_views(images[rows], plan.host_boxes[rows], plan.counts[rows], resize)
            mixed, transposed = _mix(views, plan, rows, False), False
        else:
            canvas = _canvas(images, kind, rows, work, plan.canvas_maps[k] if padded else None)
            mixed, transposed = _separable(canvas, plan, rows, taps, resize)
        mixed = mixed.transpose(-1, -2) if transposed else mixed
        mixed = _round_half_up(mixed, resize.mode) if dtype == torch.uint8 else cast_like(mixed, dtype)
        if plan.rank is not None:
            out.index_copy_(0, plan.rank[rows], mixed.to(dtype))
        elif len(chunks) == 1:
            out.copy_(mixed)
        else:
            out[rows] = mixed
    return out


def _separable(
    canvas: torch.Tensor, plan: BatchPlan, rows: slice, taps: Taps, resize: Resize
) -> tuple[torch.Tensor, bool]:
    """One chunk on the separable passes: Mixup folded into the column pass, or views mixed."""
    whole = rows == slice(0, len(plan.counts))
    chunk_taps = taps if whole else taps.rows(rows)
    if not all(r.folds for r in renderers_of(plan.host_renderer[rows]).values()):
        views, transposed = resample_crops(canvas, None, resize, taps=chunk_taps)
        return _mix(views, plan, rows, transposed), transposed
    source = plan.source if whole else plan.source[rows]
    return resample_mixup(canvas, None, plan.weight[rows].to(resize.work_dtype), source, resize, taps=chunk_taps)


def _round_half_up(values: torch.Tensor, mode: str) -> torch.Tensor:
    """uint8 pixels: rounded half up by the truncating copy into the output (as .to(uint8) truncates).

    Bilinear values in float32 are convex combinations of pixels, inside [0, 255] up to ~1e-5, so
    they need no clamp; bicubic's negative lobes overshoot, and float16 weights (CUDA) may sum to
    1 + 2^-11 at each of the passes, which could carry a 255 past 255.5.
    """
    values = values.add_(0.5)
    exact = mode == "bilinear" and values.dtype in (torch.float32, torch.float64)
    return values if exact else values.clamp_(0, 255)


def _native_views(part: Any, boxes: np.ndarray, counts: np.ndarray, resize: Resize) -> torch.Tensor:
    """Views (b, M, C, h, w) of the images `part`, each crop by torch's own CPU kernel (one call per crop).

    On the CPU, torch's uint8 resampling of one crop (vectorised integer arithmetic over the crop
    only) beats every composition of batched float ops at ImageNet sizes: the transposes between
    two batched passes alone cost more than the whole per-image CropMix (benchmarks/RESULTS.md).
    An image is made channels-last (the layout that kernel reads) once, rather than each crop,
    when its crops cover more pixels than it has.
    Slots past an image's crop count are zeroed (the mixing weighs them 0).
    """
    size, antialias, interpolation = resize.size, resize.antialias, _INTERPOLATIONS[resize.mode]
    shape = (len(part), boxes.shape[1], part[0].shape[0], *size)
    views = torch.empty(shape, dtype=resize.work_dtype, device=part[0].device)
    for k, (image, image_boxes, count) in enumerate(zip(part, boxes.tolist(), counts.tolist(), strict=True)):
        image_boxes = image_boxes[:count]
        if sum(h * w for _, _, h, w in image_boxes) >= image.shape[-2] * image.shape[-1]:
            image = image[None].contiguous(memory_format=torch.channels_last)[0]
        for m, (top, left, height, width) in enumerate(image_boxes):
            views[k, m] = resized_crop(image, Crop(top, left, height, width), size, interpolation, antialias)
        views[k, count:] = 0
    return views


def _mix(views: torch.Tensor, plan: BatchPlan, rows: slice, transposed: bool) -> torch.Tensor:
    """Mix views (b, M, C, h, w) of the positions `rows` into (b, C, h, w), each image by its op's batched
    renderer (`mixing.BATCHED_RENDERERS`): Mixup as one bmm, CutMix by each pixel's (view, channel).

    With `transposed` the views are (b, M, C, w, h) and so is the result.
    """
    b, M, C, h, w = views.shape
    flat = views.view(b, M * C, h * w)
    out = None
    for index, renderer in renderers_of(plan.host_renderer[rows]).items():  # the first in full, the rest placed
        part = renderer.mix(flat, plan, rows, transposed).view(b, C, h, w)
        out = part if out is None else torch.where(plan.placed[index][rows, None, None, None], part, out)
    return out
