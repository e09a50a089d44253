"""CropMix on small 8-bit PIL images with PIL's own kernels: the CIFAR DataLoader path.

For a 32x32 image, converting to a tensor and calling torch a dozen times costs
several times the work itself. So when the image is small and "L" or "RGB", the
crops are cut and resized by PIL (exactly what torchvision's RandomResizedCrop
does to a PIL image), a two-view Mixup is one `Image.blend` (which truncates: within
1 of the formula), a channel permutation is a `convert` matrix and CutMix a
`paste`. Longer Mixup chains are mixed in closed form by `mixup_uint8_arrays`.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
from torchvision.transforms.v2 import InterpolationMode

from .ops import SMALL_OUTPUT_PIXELS, mixup_uint8_arrays
from .params import CropMixParams

PIL_RESAMPLE = {
    InterpolationMode.BILINEAR: PIL.Image.Resampling.BILINEAR,
    InterpolationMode.BICUBIC: PIL.Image.Resampling.BICUBIC,
}
# Above this source size torch's uint8 resampling is faster than PIL's and wins back the conversions.
MAX_SOURCE_PIXELS = 128 * 128


def renders_with_pil(
    image: PIL.Image.Image, params: CropMixParams, interpolation: InterpolationMode, antialias: bool
) -> bool:
    """Whether `render_pil` handles this image and these parameters (the result is deterministic either way)."""
    height, width = params.output_size
    ops = {step.op for step in params.steps}
    return (
        image.mode in ("L", "RGB")
        and antialias
        and interpolation in PIL_RESAMPLE
        and image.width * image.height <= MAX_SOURCE_PIXELS
        and height * width <= SMALL_OUTPUT_PIXELS
        and len(ops) <= 1
    )


def _permuted(view: PIL.Image.Image, perm: tuple[int, ...] | None) -> PIL.Image.Image:
    if perm is None or list(perm) == list(range(len(perm))):
        return view
    matrix = [0.0] * 12  # output channel c = input channel perm[c]
    for c, source in enumerate(perm):
        matrix[4 * c + source] = 1.0
    return view.convert("RGB", tuple(matrix))


def render_pil(image: PIL.Image.Image, params: CropMixParams, interpolation: InterpolationMode) -> PIL.Image.Image:
    """The CropMix output of an image accepted by `renders_with_pil`, as a PIL image of the same mode."""
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
    if params.steps[0].op == "mixup" and len(views) > 2:
        mixed = mixup_uint8_arrays([np.asarray(v) for v in views], params)
        return PIL.Image.fromarray(mixed)  # (h, w) -> "L", (h, w, 3) -> "RGB"
    mixed = views[0]
    for step, new in zip(params.steps, views[1:]):
        if step.op == "mixup":
            if step.permuted == "mix":
                mixed = _permuted(mixed, step.channel_perm)
            else:
                new = _permuted(new, step.channel_perm)
            mixed = PIL.Image.blend(new, mixed, step.lam)  # new + lam * (mixed - new)
        else:
            assert step.box is not None
            top, left, box_h, box_w = step.box
            base, pasted = (mixed, new) if step.pasted == "new" else (new, mixed)
            patch = _permuted(pasted.crop((left, top, left + box_w, top + box_h)), step.channel_perm)
            mixed = base.copy()
            mixed.paste(patch, (left, top))
    return mixed
