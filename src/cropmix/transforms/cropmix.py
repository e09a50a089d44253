"""`CropMix`: the paper's transform as a torchvision v2 Transform, thin over `sampling` and `functional.render`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode, Transform

from .config import CONFIG_FIELDS, CropMixConfig, ReadOnlyConfig, make_config, preset_for
from .functional import image_info, render, warn_if_channels_last
from .params import CropMixParams
from .sampling import sample_one, warn_if_generator_in_worker

# Inputs a label-keeping image mix cannot transform consistently (KeyPoints: torchvision 0.23 and later).
_REJECTED_TYPES = tuple(
    getattr(tv_tensors, name) for name in ("BoundingBoxes", "Mask", "Video", "KeyPoints") if hasattr(tv_tensors, name)
)


class CropMix(ReadOnlyConfig, Transform):
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
        generator: a `torch.Generator` to draw from instead of torch's global RNG,
            for reproducible draws in one process. Not in DataLoader workers: each
            worker gets a copy in the same state and all repeat the same draws (a
            RuntimeWarning says so once); there leave it None, as DataLoader seeds
            torch's global RNG per worker.

    The settings are read-only attributes (`t.scale`, `t.num_crops`, ... and
    `t.config`); to change one, build a new transform.

    Inputs: PIL images of any mode, and (C, H, W) tensors (uint8, float or
    other integer dtypes, any C, any device) or `tv_tensors.Image`; the output
    has the same type, dtype, device and mode. PIL modes come back unchanged
    except "1" -> "L", "P" -> "RGB" (or "RGBA" with transparency) and "PA" -> "RGBA".

    Small "L"/"RGB" PIL images (up to 128x128 in, 64x64 out, e.g. CIFAR) are
    resampled and mixed by PIL itself, as torchvision resamples PIL images;
    everything else by torch's kernels (`functional.render` picks). Both are
    antialiased and agree to >= 40 dB; either way the same image and parameters
    give the same bits.
    """

    _transformed_types = (torch.Tensor, PIL.Image.Image)

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.01, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        *,
        num_crops: int | Sequence[int] = (2, 3, 4),
        mix: str | Sequence[str] = "mixup",
        alpha: float = 0.4,
        channel_permute: bool = True,
        p: float = 1.0,
        interpolation: InterpolationMode | str | int = InterpolationMode.BILINEAR,
        antialias: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        config = make_config(size, scale, ratio, num_crops, mix, alpha, channel_permute, p, interpolation, antialias)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
        self.config: CropMixConfig = config
        self.generator = generator

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={getattr(self.config, name)!r}" for name in CONFIG_FIELDS)

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
        images = [x for x, needed in zip(flat_inputs, self._needs_transform_list(flat_inputs), strict=True) if needed]
        if not images:
            kinds = ", ".join(sorted({type(x).__name__ for x in flat_inputs})) or "nothing"
            raise TypeError(f"CropMix expects a PIL image or a (C, H, W) tensor, got {kinds}")
        for image in images:
            image_info(image)

    def make_params(self, flat_inputs: list[Any]) -> CropMixParams:  # type: ignore[override]
        """Draw the parameters for the first image among `flat_inputs`."""
        channels, height, width, colour = image_info(flat_inputs[0])
        warn_if_channels_last(flat_inputs[0], "CropMix", "(C, H, W)")
        warn_if_generator_in_worker(self, self.generator)
        return sample_one(self.config, height, width, colour, channels, self.generator)

    def transform(self, inpt: Any, params: CropMixParams) -> Any:  # type: ignore[override]
        """Render `inpt` with `params`; the same inputs always give the same output."""
        if not isinstance(params, CropMixParams):
            raise TypeError(
                f"params must be a CropMixParams (from make_params or sample_one), got {type(params).__name__}"
            )
        return render(inpt, params, self.config.interpolation, self.config.antialias)


def preset(name: str, size: int | tuple[int, int] | None = None, **overrides: Any) -> CropMix:
    """A `CropMix` with the paper's settings for `name` ("cifar", "imagenet", "mae-mixup", "mae-cutmix").

    `size` and the keyword arguments (alpha, num_crops, p, generator, ...) replace the preset's values.
    """
    return preset_for(CropMix, name, size, **overrides)
