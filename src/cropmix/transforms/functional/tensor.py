"""CropMix kernels for one (C, H, W) tensor: crop-and-resize, and the mixing chain.

Deterministic: the same image and parameters give the same bits. A chain of Mixup steps is
mixed in closed form (`mixing.mixup_weights`) in float and rounded once, so a uint8 output
is within 1 of the step-by-step formula; CutMix steps copy boxes and never leave uint8.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torchvision.transforms.v2.functional as F
from torchvision.transforms.v2 import InterpolationMode

from ..config import INTERPOLATION_MODES
from ..mixops import step_op
from ..params import Crop, CropMixParams
from .mixing import mix_step, mixup_uint8_arrays, mixup_weights


def tensor_has_alpha(num_channels: int) -> bool:
    """torchvision's convention for tensors: 2 channels are LA and 4 are RGBA."""
    return num_channels in (2, 4)


def colour_channels(num_channels: int, has_alpha: bool) -> int:
    """How many leading channels are colour (permutable) channels."""
    return num_channels - 1 if has_alpha and num_channels > 1 else num_channels


def tensor_info(image: torch.Tensor) -> tuple[int, int, int, int]:
    """(channels, height, width, colour channels) of a (C, H, W) tensor, or a clear error."""
    if image.ndim != 3:
        hint = " (for batches use BatchCropMix)" if image.ndim == 4 else ""
        raise ValueError(f"CropMix expects a (C, H, W) tensor, got shape {tuple(image.shape)}{hint}")
    if image.dtype == torch.bool or image.is_complex():
        raise TypeError(f"CropMix expects a real-valued image tensor, got dtype {image.dtype}")
    channels, height, width = image.shape
    return channels, height, width, colour_channels(channels, tensor_has_alpha(channels))


def warn_if_channels_last(image: Any, who: str, layout: str) -> None:
    """Warn when an image tensor reads as channels last, (..., H, W, C) with C in 1, 3, 4 and more than 4
    "channels", as `torch.from_numpy` of a decoded image gives: it would be cropped along its width and
    channels without an error. The message is one text, so Python shows it once, not per image size."""
    if isinstance(image, torch.Tensor) and image.ndim >= 3 and image.shape[-1] in (1, 3, 4) and image.shape[-3] > 4:
        warnings.warn(
            f"{who} reads image tensors as {layout} but got one shaped like (H, W, C) with C = 1, 3 or 4; "
            "permute it (image.permute(2, 0, 1), or v2.ToImage() on arrays) unless it has that many channels",
            UserWarning,
            stacklevel=3,
        )


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """The float dtype CropMix mixes in for an image of `dtype`."""
    if dtype in (torch.float64, torch.int32, torch.int64):
        return torch.float64
    return torch.float32


def cast_like(image: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Cast a mixed image back to the input's dtype: integers rounded and clamped to their range."""
    if image.dtype == dtype:
        return image
    if dtype.is_floating_point:
        return image.to(dtype)
    info = torch.iinfo(dtype)
    return image.round().clamp_(info.min, info.max).to(dtype)


def resized_crop(
    image: torch.Tensor,
    crop: Crop,
    size: tuple[int, int],
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> torch.Tensor:
    """Crop `image` (C, H, W) to `crop` and resize it to `size` in one call.

    uint8 and float32/float64 resize natively (uint8 fastest when the tensor is channels-last
    in memory, as a decoded PIL image is); other dtypes go through the working float dtype and
    come back as that float dtype.
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


def _views(
    image: torch.Tensor, params: CropMixParams, interpolation: InterpolationMode, antialias: bool
) -> list[torch.Tensor]:
    """The resized crops in mixing order."""
    return [resized_crop(image, params.crops[i], params.output_size, interpolation, antialias) for i in params.order]


def _mixup(views: list[torch.Tensor], params: CropMixParams, out_dtype: torch.dtype) -> torch.Tensor:
    C = views[0].shape[0]
    device = views[0].device
    weight, source = mixup_weights(params, C)
    # Work in the memory order of the views: (h, w, C) when channels-last, where a channel
    # permutation is a select on the last axis.
    channels_last = views[0].stride(0) == 1 and C > 1
    mapped = [v.permute(1, 2, 0) for v in views] if channels_last else list(views)
    channel_axis = 2 if channels_last else 0
    identity = list(range(C))
    for k, channels in enumerate(source):
        if channels != identity:
            mapped[k] = mapped[k].index_select(channel_axis, torch.tensor(channels, device=device))
    dtype = working_dtype(out_dtype)
    stacked = torch.stack(mapped).reshape(len(views), -1).to(dtype)
    mixed = (torch.tensor(weight, dtype=dtype, device=device) @ stacked).reshape(mapped[0].shape)
    if channels_last:
        mixed = mixed.permute(2, 0, 1)
    if out_dtype == torch.uint8:
        # A convex combination of values in [0, 255] stays there: rounding half up needs no clamp.
        return mixed.add_(0.5).to(torch.uint8)
    return cast_like(mixed, out_dtype)


def render_tensor(
    image: torch.Tensor,
    params: CropMixParams,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> torch.Tensor:
    """The CropMix output of a (C, H, W) tensor on any device, in its dtype and memory format."""
    views = _views(image, params, interpolation, antialias)
    if not params.steps:
        return cast_like(views[0], image.dtype)
    ops = [step_op(step) for step in params.steps]
    if all(op.weighted for op in ops):
        return _mixup(views, params, image.dtype)
    if not all(op.pastes_box for op in ops):  # only pasting keeps the input's dtype
        views = [v.to(working_dtype(image.dtype)) for v in views]
    mixed = views[0]
    for step, view in zip(params.steps, views[1:], strict=True):
        mixed = mix_step(mixed, view, step)
    return cast_like(mixed, image.dtype)


def render_small_uint8(
    image: torch.Tensor,
    params: CropMixParams,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> torch.Tensor:
    """`render_tensor` for a uint8 CPU tensor and a chain of weighted (Mixup) steps, mixed with numpy.

    For small outputs torch's per-call cost is several times numpy's; the output is (C, h, w)
    over an (h, w, C) buffer.
    """
    arrays = [v.permute(1, 2, 0).numpy() for v in _views(image, params, interpolation, antialias)]
    return torch.from_numpy(mixup_uint8_arrays(arrays, params)).permute(2, 0, 1)
