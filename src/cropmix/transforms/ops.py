"""CropMix kernels on (C, H, W) tensors: crop-and-resize, and mixing.

`render` turns one image and its `CropMixParams` into the output image. It is
deterministic: the same image and parameters give the same bits. The mixing
follows SPEC.md step by step:

    m = view[order[0]]
    for k, step in enumerate(steps):
        a, b = m, view[order[k + 1]]
        the permuted view (a or b) becomes view[channel_perm]
        mixup:  m = lam * a + (1 - lam) * b
        cutmix: m = base with the pasted view's pixels inside box

A chain of Mixup steps is linear, so it is computed as one weighted sum of
channel-mapped views in float (`mixup_weights`) and rounded once: a uint8 output
is within 1 of the exact formula. CutMix steps copy boxes and never leave
uint8.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms.v2 import InterpolationMode

from .params import Crop, CropMixParams, MixStep

# Up to this many output pixels, per-call overhead dominates and numpy mixes uint8 faster than torch;
# above it torch's kernels are faster.
SMALL_OUTPUT_PIXELS = 64 * 64

# torchvision's interpolation modes that work on tensors, by torch's name.
INTERPOLATION_MODES = {
    InterpolationMode.NEAREST: "nearest",
    InterpolationMode.NEAREST_EXACT: "nearest-exact",
    InterpolationMode.BILINEAR: "bilinear",
    InterpolationMode.BICUBIC: "bicubic",
}


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The float dtype CropMix mixes in for an image of `dtype`."""
    if dtype in (torch.float64, torch.int32, torch.int64):
        return torch.float64
    return torch.float32


def resized_crop(
    image: torch.Tensor,
    crop: Crop,
    size: tuple[int, int],
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> torch.Tensor:
    """Crop `image` (C, H, W) to `crop` and resize it to `size` in one call.

    uint8 and float32/float64 resize natively (uint8 fastest when the tensor
    is channels-last in memory, as a decoded PIL image is); other dtypes go
    through the working float dtype and come back as that float dtype.
    """
    top, left, height, width = crop.top, crop.left, crop.height, crop.width
    if (
        top < 0
        or left < 0
        or height < 1
        or width < 1
        or top + height > image.shape[-2]
        or left + width > image.shape[-1]
    ):
        raise ValueError(f"crop {crop} does not lie inside the image of size {tuple(image.shape[-2:])}")
    if image.dtype not in (torch.uint8, torch.float32, torch.float64):
        image = image.to(working_dtype(image.dtype))
    patch = image[None, :, top : top + height, left : left + width]
    if patch.stride(1) == 1:
        # A crop of a channels-last image is not channels-last contiguous; copying it makes it
        # so, and torch's resampling is several times faster on such tensors.
        patch = patch.contiguous(memory_format=torch.channels_last)
    if (height, width) == tuple(size):
        return patch[0]
    if image.device.type != "cpu":  # torchvision knows which dtypes each device resamples natively
        return F.resize(patch, list(size), interpolation=interpolation, antialias=antialias)[0]
    # On the CPU every mode takes uint8 and float directly; calling torch skips torchvision's checks,
    # which cost more than resampling a 32x32 crop.
    mode = INTERPOLATION_MODES[interpolation]
    smooth = mode in ("bilinear", "bicubic")
    return torch.nn.functional.interpolate(
        patch, size=tuple(size), mode=mode, align_corners=False if smooth else None, antialias=antialias and smooth
    )[0]


def cast_like(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast a mixed image back to the input's dtype: integers rounded and clamped to their range."""
    if image.dtype == dtype:
        return image
    if dtype.is_floating_point:
        return image.to(dtype)
    info = torch.iinfo(dtype)
    return image.round().clamp_(info.min, info.max).to(dtype)


def mixup_weights(params: CropMixParams, num_channels: int) -> tuple[list[float], list[list[int]]]:
    """The Mixup chain of `params` in closed form: out[c] = sum_k weight[k] * views[k][source[k][c]].

    views are in mixing order. Each step scales the running image by lam and
    the new view by 1 - lam; a channel permutation of either only re-routes
    channels, so the whole chain is one weighted sum of channel-mapped views.
    (Plain lists: for a handful of numbers they are faster than arrays.)
    """
    n = len(params.order)
    weight = [1.0] + [0.0] * (n - 1)
    source = [list(range(num_channels)) for _ in range(n)]
    for k, step in enumerate(params.steps, start=1):
        perm = step.channel_perm
        if perm is not None and step.permuted == "mix":
            source[:k] = [[row[c] for c in perm] for row in source[:k]]
        elif perm is not None:
            source[k] = list(perm)
        weight[:k] = [w * step.lam for w in weight[:k]]
        weight[k] = 1.0 - step.lam
    return weight, source


def _mixup(views: list[torch.Tensor], params: CropMixParams, out_dtype: torch.dtype) -> torch.Tensor:
    C = views[0].shape[0]
    weight, source = mixup_weights(params, C)
    # Work in the memory order of the views: (h, w, C) when channels-last, where a channel
    # permutation is a select on the last axis.
    channels_last = views[0].stride(0) == 1 and C > 1
    mapped = [v.permute(1, 2, 0) for v in views] if channels_last else list(views)
    channel_axis = 2 if channels_last else 0
    identity = list(range(C))
    for k, channels in enumerate(source):
        if channels != identity:
            mapped[k] = mapped[k].index_select(channel_axis, torch.tensor(channels))
    dtype = working_dtype(out_dtype)
    stacked = torch.stack(mapped).reshape(len(views), -1).to(dtype)
    mixed = (torch.tensor(weight, dtype=dtype) @ stacked).reshape(mapped[0].shape)
    if channels_last:
        mixed = mixed.permute(2, 0, 1)
    if out_dtype == torch.uint8:
        # A convex combination of values in [0, 255] stays there: rounding half up needs no clamp.
        return mixed.add_(0.5).to(torch.uint8)
    return cast_like(mixed, out_dtype)


def mixup_uint8_arrays(views: list[np.ndarray], params: CropMixParams) -> np.ndarray:
    """The Mixup chain of `params` on uint8 (h, w, C) or (h, w) numpy views, rounded once to uint8.

    For small outputs (see SMALL_OUTPUT_PIXELS): numpy's per-call cost is a fraction of torch's.
    """
    C = views[0].shape[2] if views[0].ndim == 3 else 1
    weight, source = mixup_weights(params, C)
    identity = list(range(C))
    mixed = None
    for w, channels, array in zip(weight, source, views):
        if channels != identity:
            array = array[..., channels]
        term = np.multiply(array, np.float32(w), dtype=np.float32)
        mixed = term if mixed is None else np.add(mixed, term, out=mixed)
    mixed += np.float32(0.5)  # a convex combination of values in [0, 255]: rounding half up needs no clamp
    return mixed.astype(np.uint8)


def mix_step(running: torch.Tensor, new: torch.Tensor, step: MixStep) -> torch.Tensor:
    """One mixing step on its own: the running image with the next view (both float for Mixup)."""
    perm = None if step.channel_perm is None else list(step.channel_perm)
    if step.op == "mixup":
        if perm is not None:
            if step.permuted == "mix":
                running = running[perm]
            else:
                new = new[perm]
        return torch.lerp(new, running, step.lam)
    assert step.box is not None
    top, left, height, width = step.box
    base, pasted = (running, new) if step.pasted == "new" else (new, running)
    patch = pasted[:, top : top + height, left : left + width]
    if perm is not None:
        patch = patch[perm]  # under CutMix the pasted view is the permuted one
    out = base.clone()
    out[:, top : top + height, left : left + width] = patch
    return out


def render(
    image: torch.Tensor,
    params: CropMixParams,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> torch.Tensor:
    """The CropMix output for a (C, H, W) image and its parameters, in the image's dtype.

    Keeps the image's memory format: a channels-last input gives a
    channels-last output.
    """
    views = [resized_crop(image, params.crops[i], params.output_size, interpolation, antialias) for i in params.order]
    if not params.steps:
        mixed = views[0]
    elif all(step.op == "mixup" for step in params.steps):
        height, width = params.output_size
        if image.dtype == torch.uint8 and image.device.type == "cpu" and height * width <= SMALL_OUTPUT_PIXELS:
            arrays = [v.permute(1, 2, 0).numpy() for v in views]
            return torch.from_numpy(mixup_uint8_arrays(arrays, params)).permute(2, 0, 1)
        return _mixup(views, params, image.dtype)
    else:
        if any(step.op == "mixup" for step in params.steps):
            views = [v.to(working_dtype(image.dtype)) for v in views]
        mixed = views[0]
        for step, view in zip(params.steps, views[1:]):
            mixed = mix_step(mixed, view, step)
    return cast_like(mixed, image.dtype)
