"""`CropMix`: the paper's transform as a torchvision v2 Transform."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode, Transform

from .ops import INTERPOLATION_MODES, render
from .params import CropMixConfig, CropMixParams, make_config
from .pil_ops import render_pil, renders_with_pil
from .sample_one import sample_one

# Modes whose last band is alpha (premultiplied ones included): alpha is never permuted.
ALPHA_MODES = frozenset({"LA", "La", "PA", "RGBA", "RGBa"})
_REJECTED_TYPES = (tv_tensors.BoundingBoxes, tv_tensors.Mask, tv_tensors.Video, tv_tensors.KeyPoints)


def colour_channels(num_channels: int, has_alpha: bool) -> int:
    """How many leading channels are colour (permutable) channels."""
    return num_channels - 1 if has_alpha and num_channels > 1 else num_channels


def tensor_has_alpha(num_channels: int) -> bool:
    """torchvision's convention for tensors: 2 channels are LA and 4 are RGBA."""
    return num_channels in (2, 4)


def pil_to_tensor(image: PIL.Image.Image) -> tuple[torch.Tensor, str, np.dtype]:
    """A PIL image as a (C, H, W) tensor sharing one HWC buffer, plus the mode and dtype to return.

    Modes "1" and "P"/"PA" cannot hold mixed pixels: they come back as "L",
    and "RGB" or "RGBA" (when the palette has transparency).
    """
    mode = image.mode
    if mode == "1":
        image, mode = image.convert("L"), "L"
    elif mode in ("P", "PA"):
        mode = "RGBA" if mode == "PA" or "transparency" in image.info else "RGB"
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


class CropMix(Transform):
    """CropMix (Han et al., 2022): mix crops of one image taken from distinct scale bands.

    A drop-in replacement for RandomResizedCrop. The scale range is split into
    N equal bands; one RandomResizedCrop is drawn from each band; the N views
    are shuffled and mixed one after another by Mixup (lam ~ Beta(alpha/N,
    alpha/N)) or CutMix, with a random colour-channel permutation of one view
    at each step. The label is unchanged.

    Args:
        size: output (height, width), or an int for a square.
        scale: range of crop area as a fraction of the image, split into N bands.
        ratio: aspect-ratio range (width / height), sampled log-uniformly.
        num_crops: N, or a set of N values drawn from uniformly for every image.
        mix: "mixup", "cutmix", or a sequence of them drawn from per image.
        alpha: Mixup strength; each step draws lam ~ Beta(alpha/N, alpha/N).
        channel_permute: permute one view's colour channels at each step
            (never an alpha channel; one colour channel makes it a no-op).
        p: probability of CropMix; otherwise one RandomResizedCrop over `scale`.
        interpolation, antialias: as in torchvision's `resized_crop`.
        generator: a `torch.Generator` to draw from instead of torch's global RNG.

    Inputs: PIL images of any mode, and (C, H, W) tensors (uint8, float or
    other integer dtypes, any C) or `tv_tensors.Image`; the output has the same
    type, dtype and mode. PIL modes come back unchanged except "1" -> "L",
    "P" -> "RGB" (or "RGBA" with transparency) and "PA" -> "RGBA".

    Small "L"/"RGB" PIL images (up to 128x128 in, 64x64 out, e.g. CIFAR) are
    resampled and mixed by PIL itself, as torchvision resamples PIL images;
    everything else by torch's kernels. Both are antialiased and agree to
    >= 40 dB; either way the same image and parameters give the same bits.
    """

    _transformed_types = (torch.Tensor, PIL.Image.Image)

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.01, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        num_crops: int | Sequence[int] = (2, 3, 4),
        mix: str | Sequence[str] = "mixup",
        alpha: float = 0.4,
        channel_permute: bool = True,
        p: float = 1.0,
        interpolation: InterpolationMode = InterpolationMode.BILINEAR,
        antialias: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config: CropMixConfig = make_config(size, scale, ratio, num_crops, mix, alpha, channel_permute, p)
        if interpolation not in INTERPOLATION_MODES:
            raise ValueError(
                f"interpolation must be one of {[m.name for m in INTERPOLATION_MODES]}, got {interpolation!r}"
            )
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
        self.size = self.config.size
        self.scale, self.ratio = self.config.scale, self.config.ratio
        self.num_crops, self.mix = self.config.num_crops, self.config.mix
        self.alpha, self.channel_permute, self.p = self.config.alpha, self.config.channel_permute, self.config.p
        self.interpolation = interpolation
        self.antialias = antialias
        self.generator = generator

    def forward(self, *inputs: Any) -> Any:
        """Transform an image, or the images inside a structure (labels pass through), as any v2 transform."""
        if len(inputs) == 1 and isinstance(inputs[0], (PIL.Image.Image, torch.Tensor)):
            # One image, the DataLoader case: skip v2's flattening, which costs as much as a 32x32 crop.
            return self.transform(inputs[0], self.make_params(inputs))
        return super().forward(*inputs)

    def check_inputs(self, flat_inputs: list[Any]) -> None:
        for inpt in flat_inputs:
            if isinstance(inpt, _REJECTED_TYPES):
                raise TypeError(
                    f"CropMix mixes crops into one image and cannot carry {type(inpt).__name__}; "
                    "pass images (PIL, tensor or tv_tensors.Image) and plain labels only"
                )
        images = [x for x, needed in zip(flat_inputs, self._needs_transform_list(flat_inputs)) if needed]
        if not images:
            kinds = ", ".join(sorted({type(x).__name__ for x in flat_inputs})) or "nothing"
            raise TypeError(f"CropMix expects a PIL image or a (C, H, W) tensor, got {kinds}")
        for image in images:
            _image_shape(image)

    def make_params(self, flat_inputs: list[Any]) -> CropMixParams:  # type: ignore[override]
        """Draw the parameters for the first image among `flat_inputs`."""
        channels, height, width, has_alpha = _image_shape(flat_inputs[0])
        return sample_one(self.config, height, width, colour_channels(channels, has_alpha), channels, self.generator)

    def transform(self, inpt: Any, params: CropMixParams) -> Any:  # type: ignore[override]
        """Render `inpt` with `params`; the same inputs always give the same output."""
        channels, height, width, _ = _image_shape(inpt)
        if (height, width) != params.image_size:
            raise ValueError(
                f"params were drawn for an image of size {params.image_size}, got one of size {(height, width)}"
            )
        if isinstance(inpt, PIL.Image.Image):
            if renders_with_pil(inpt, params, self.interpolation, self.antialias):
                return render_pil(inpt, params, self.interpolation)
            tensor, mode, dtype = pil_to_tensor(inpt)
            return tensor_to_pil(render(tensor, params, self.interpolation, self.antialias), mode, dtype)
        out = render(inpt.as_subclass(torch.Tensor), params, self.interpolation, self.antialias)
        if isinstance(inpt, tv_tensors.TVTensor):
            return tv_tensors.wrap(out, like=inpt)
        return out.contiguous()


def _image_shape(image: Any) -> tuple[int, int, int, bool]:
    """(channels, height, width, has_alpha) of a PIL image or (C, H, W) tensor, or a clear error."""
    if isinstance(image, PIL.Image.Image):
        width, height = image.size
        bands = len(image.getbands())
        mode = image.mode
        if mode == "P":
            bands, has_alpha = (4, True) if "transparency" in image.info else (3, False)
        elif mode == "PA":
            bands, has_alpha = 4, True
        else:
            has_alpha = mode in ALPHA_MODES
        channels = bands
    elif isinstance(image, torch.Tensor):
        if image.ndim != 3:
            hint = " (for batches use BatchCropMix)" if image.ndim == 4 else ""
            raise ValueError(f"CropMix expects a (C, H, W) tensor, got shape {tuple(image.shape)}{hint}")
        if image.dtype == torch.bool or image.is_complex():
            raise TypeError(f"CropMix expects a real-valued image tensor, got dtype {image.dtype}")
        channels, height, width = image.shape
        has_alpha = tensor_has_alpha(channels)
    else:
        raise TypeError(f"CropMix expects a PIL image or a (C, H, W) tensor, got {type(image).__name__}")
    if min(channels, height, width) < 1:
        raise ValueError(f"CropMix expects a non-empty image, got (C, H, W) = {(channels, height, width)}")
    return channels, height, width, has_alpha
