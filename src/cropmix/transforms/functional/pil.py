"""CropMix on PIL images: the PIL mode rules, and PIL's own kernels for small 8-bit images.

Mode rules: modes "1" and "P"/"PA" cannot hold mixed pixels; they are mixed as "L", and
"RGB" or "RGBA" (when the palette has transparency). An alpha band (LA, La, PA, RGBA, RGBa)
is never permuted. Other modes are mixed as tensors of their own values.

Small kernels (the CIFAR DataLoader path): for a 32x32 image, converting to a tensor and
calling torch a dozen times costs several times the work itself. So small "L"/"RGB" images
are cut and resized by PIL (exactly what torchvision's RandomResizedCrop does to a PIL image),
a two-view Mixup (any weighted op, `MixOp.weighted`) is one `Image.blend` (which truncates:
within 1 of the formula), a channel permutation is a `convert` matrix and CutMix (`MixOp.pastes_box`)
a `paste`. Longer Mixup chains are mixed in closed form by `mixup_uint8_arrays`.
"""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import torch
from torchvision.transforms.v2 import InterpolationMode

from ..mixops import step_op
from ..params import CropMixParams
from .mixing import mixup_uint8_arrays
from .tensor import colour_channels

# Modes whose last band is alpha (premultiplied ones included).
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
# What the small kernels take: modes, resampling filters, and sizes up to which they beat torch's
# kernels (above them torch's uint8 resampling is faster and wins back the conversions).
SMALL_MODES = ("L", "RGB")
PIL_RESAMPLE = {
    InterpolationMode.BILINEAR: PIL.Image.Resampling.BILINEAR,
    InterpolationMode.BICUBIC: PIL.Image.Resampling.BICUBIC,
}
MAX_SOURCE_PIXELS = 128 * 128


def _mixing_mode(image: PIL.Image.Image) -> str:
    """The mode an image is mixed (and returned) in."""
    mode = image.mode
    if mode == "1":
        return "L"
    if mode in ("P", "PA"):
        return "RGBA" if mode == "PA" or "transparency" in image.info else "RGB"
    return mode


def pil_info(image: PIL.Image.Image) -> tuple[int, int, int, int]:
    """(channels, height, width, colour channels) of a PIL image as it will be mixed."""
    width, height = image.size
    mode = _mixing_mode(image)
    channels = len(image.getbands()) if mode == image.mode else PIL.Image.getmodebands(mode)
    return channels, height, width, colour_channels(channels, mode in ALPHA_MODES)


def pil_to_tensor(image: PIL.Image.Image) -> tuple[torch.Tensor, str, np.dtype]:
    """A PIL image as a (C, H, W) tensor sharing one HWC buffer, plus the mode and dtype to return."""
    mode = _mixing_mode(image)
    if mode != image.mode:
        image = image.convert(mode)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    dtype = array.dtype
    if not (dtype == np.uint8 or dtype == np.int32 or dtype == np.float32):
        array = array.astype(np.int32)  # 16-bit modes: torch has few uint16 kernels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only buffer: CropMix never writes to it
        tensor = torch.from_numpy(array)
    return tensor.permute(2, 0, 1), mode, dtype


def tensor_to_pil(image: torch.Tensor, mode: str, dtype: np.dtype) -> PIL.Image.Image:
    """Inverse of `pil_to_tensor` for an output of the same dtype."""
    array = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    if array.dtype != dtype:
        info = np.iinfo(dtype)
        array = np.clip(array, info.min, info.max).astype(dtype)
    height, width = array.shape[:2]
    if array.dtype == np.uint8:
        channels = array.shape[2]
        return PIL.Image.frombuffer(mode, (width, height), array.reshape(height, width * channels), "raw", mode, 0, 1)
    return PIL.Image.frombytes(mode, (width, height), array.tobytes())


def _permuted(view: PIL.Image.Image, perm: tuple[int, ...] | None) -> PIL.Image.Image:
    if perm is None or list(perm) == list(range(len(perm))):
        return view
    matrix = [0.0] * 12  # output channel c = input channel perm[c]
    for c, source in enumerate(perm):
        matrix[4 * c + source] = 1.0
    return view.convert("RGB", tuple(matrix))


def render_pil_small(
    image: PIL.Image.Image, params: CropMixParams, interpolation: InterpolationMode, antialias: bool = True
) -> PIL.Image.Image:
    """The CropMix output of a small "L"/"RGB" image with PIL's kernels, in the same mode (antialias always on)."""
    height, width = params.output_size
    views = []
    for i in params.order:
        crop = params.crops[i]
        view = image.crop((crop.left, crop.top, crop.left + crop.width, crop.top + crop.height))
        if view.size != (width, height):
            view = view.resize((width, height), PIL_RESAMPLE[interpolation])
        views.append(view)
    if not params.steps:
        return views[0]
    ops = [step_op(step) for step in params.steps]
    if all(op.weighted for op in ops) and len(views) > 2:
        mixed = mixup_uint8_arrays([np.asarray(v) for v in views], params)
        return PIL.Image.fromarray(mixed)  # (h, w) -> "L", (h, w, 3) -> "RGB"
    mixed = views[0]
    for step, op, new in zip(params.steps, ops, views[1:], strict=True):
        if op.weighted:
            if step.permuted_new:
                new = _permuted(new, step.channel_perm)
            else:
                mixed = _permuted(mixed, step.channel_perm)
            mixed = PIL.Image.blend(new, mixed, step.lam)  # new + lam * (mixed - new)
        else:
            assert op.pastes_box and step.box is not None
            top, left, box_h, box_w = step.box
            base, pasted = (mixed, new) if step.pasted_new else (new, mixed)
            patch = _permuted(pasted.crop((left, top, left + box_w, top + box_h)), step.channel_perm)
            mixed = base.copy()
            mixed.paste(patch, (left, top))
    return mixed
