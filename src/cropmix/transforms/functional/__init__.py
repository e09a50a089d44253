"""CropMix kernels per backend behind one dispatcher, `render(inpt, params)`.

As torchvision's functional API dispatches on the input's type, `render` picks the kernel
from the input and the parameters, here and nowhere else:

- `BatchParams` with a (B, C, H, W) tensor or a list of (C, H, W) tensors: `render_batch`, whose
  kernel (`BATCH_KERNELS`) `select_batch_kernel` picks by device and size unless one is named.
- a small "L"/"RGB" PIL image (up to 128x128 in, 64x64 out, only weighted or only pasting
  steps, bilinear or bicubic, antialiased): PIL's own kernels (`render_pil_small`);
- any other PIL image: its pixels as a tensor (`pil_to_tensor`, PIL mode rules in pil.py),
  the tensor kernels below, and back to PIL;
- a uint8 CPU tensor with a small output (up to 64x64) and a chain of weighted (Mixup) steps: torch crops,
  numpy mixing (`render_small_uint8`); torch's per-call cost exceeds the work there;
- any other (C, H, W) tensor, on any device: `render_tensor`.

Every kernel is deterministic, and the PIL and tensor kernels agree to >= 40 dB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode

from ..mixops import step_op
from ..params import BatchParams, CropMixParams
from .batch import (
    BATCH_KERNELS,
    BATCH_MODES,
    batch_mode,
    check_images,
    check_kernel,
    cpu_batch_passes,
    render_batch,
    select_batch_kernel,
)
from .mixing import mix_step, mixup_slots, mixup_uint8_arrays, mixup_weights
from .pil import MAX_SOURCE_PIXELS, PIL_RESAMPLE, SMALL_MODES, pil_info, pil_to_tensor, render_pil_small, tensor_to_pil
from .tensor import (
    cast_like,
    colour_channels,
    render_small_uint8,
    render_tensor,
    resized_crop,
    tensor_has_alpha,
    tensor_info,
    warn_if_channels_last,
    working_dtype,
)

# Up to this many output pixels, per-call overhead dominates: numpy mixes uint8 faster than torch,
# and PIL renders small images faster than a conversion to tensors.
SMALL_OUTPUT_PIXELS = 64 * 64

__all__ = [
    "BATCH_KERNELS",
    "BATCH_MODES",
    "batch_mode",
    "cast_like",
    "check_images",
    "check_kernel",
    "colour_channels",
    "cpu_batch_passes",
    "image_info",
    "mix_step",
    "mixup_slots",
    "mixup_uint8_arrays",
    "mixup_weights",
    "render",
    "render_batch",
    "resized_crop",
    "select_batch_kernel",
    "select_kernel",
    "tensor_has_alpha",
    "warn_if_channels_last",
    "working_dtype",
]


def image_info(inpt: Any) -> tuple[int, int, int, int]:
    """(channels, height, width, colour channels) of a PIL image or (C, H, W) tensor, or a clear error."""
    if isinstance(inpt, PIL.Image.Image):
        info = pil_info(inpt)
    elif isinstance(inpt, torch.Tensor):
        info = tensor_info(inpt)
    else:
        raise TypeError(f"CropMix expects a PIL image or a (C, H, W) tensor, got {type(inpt).__name__}")
    if min(info[:3]) < 1:
        raise ValueError(f"CropMix expects a non-empty image, got (C, H, W) = {info[:3]}")
    return info


def _render_pil_via_tensor(
    image: PIL.Image.Image, params: CropMixParams, interpolation: InterpolationMode, antialias: bool
) -> PIL.Image.Image:
    tensor, mode, dtype = pil_to_tensor(image)
    kernel = _tensor_kernel(tensor, params)
    return tensor_to_pil(kernel(tensor, params, interpolation, antialias), mode, dtype)


def _tensor_kernel(image: torch.Tensor, params: CropMixParams) -> Callable:
    height, width = params.output_size
    if (
        image.dtype == torch.uint8
        and image.device.type == "cpu"
        and height * width <= SMALL_OUTPUT_PIXELS
        and params.steps
        and all(step_op(step).weighted for step in params.steps)
    ):
        return render_small_uint8
    return render_tensor


def _one_kind_of_step(params: CropMixParams) -> bool:
    """Whether every step is weighted or every step pastes a box: the chains `render_pil_small` takes
    (it blends or pastes in uint8, step by step)."""
    ops = [step_op(step) for step in params.steps]
    return all(op.weighted for op in ops) or all(op.pastes_box for op in ops)


def select_kernel(inpt: Any, params: CropMixParams, interpolation: InterpolationMode, antialias: bool) -> Callable:
    """The kernel `render` runs for this input and these parameters: kernel(inpt, params, interpolation, antialias)."""
    if isinstance(inpt, PIL.Image.Image):
        height, width = params.output_size
        small = (
            inpt.mode in SMALL_MODES
            and antialias
            and interpolation in PIL_RESAMPLE
            and inpt.width * inpt.height <= MAX_SOURCE_PIXELS
            and height * width <= SMALL_OUTPUT_PIXELS
            and _one_kind_of_step(params)
        )
        return render_pil_small if small else _render_pil_via_tensor
    return _tensor_kernel(inpt, params)


def render(
    inpt: Any,
    params: CropMixParams | BatchParams,
    interpolation: InterpolationMode = InterpolationMode.BILINEAR,
    antialias: bool = True,
    size: Sequence[int] | None = None,
) -> Any:
    """The CropMix output of `inpt` for `params`; the same inputs always give the same output.

    One image (PIL, (C, H, W) tensor or tv_tensors.Image) with `CropMixParams`: the same type,
    dtype and PIL mode (see pil.py for "1", "P", "PA"). A batch with `BatchParams`: a
    (B, C, h, w) tensor; `size` is its output size (bilinear or bicubic).
    """
    if isinstance(params, BatchParams):
        if size is None:
            raise TypeError("render with BatchParams needs the output size: render(images, params, size=(h, w))")
        return render_batch(inpt, params, (int(size[0]), int(size[1])), antialias, interpolation)
    _, height, width, _ = image_info(inpt)
    if (height, width) != params.image_size:
        raise ValueError(
            f"params were drawn for an image of size {params.image_size}, got one of size {(height, width)}"
        )
    if isinstance(inpt, PIL.Image.Image):
        return select_kernel(inpt, params, interpolation, antialias)(inpt, params, interpolation, antialias)
    image = inpt.as_subclass(torch.Tensor)
    out = _tensor_kernel(image, params)(image, params, interpolation, antialias)
    if isinstance(inpt, tv_tensors.TVTensor):
        return tv_tensors.wrap(out, like=inpt)
    return out.contiguous()
