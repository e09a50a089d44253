"""Batched input views for self-supervised pre-training: MoCo v2 views, the CropMix query, MAE inputs.

All views take a batch of uint8 images, (B, C, H, W) or a list of (C, H, W) tensors of any sizes,
and return float images in [0, 1], (B, C, size, size). Crop boxes and CutMix boxes come from
`cropmix.transforms` (`make_config` + `sample_batch`); MoCo's crops are rendered by the batched
kernel (`render_batch`, within rounding of CropMix's crops) and MAE's inputs are `BatchCropMix`
outputs. The colour augmentation is computed
on the whole batch at once, with per-image random parameters, because at 32x32 per-image
torchvision calls cost more than the network.

MoCo v2 augmentation (He et al. / Chen et al. 2020): RandomResizedCrop(scale 0.2-1), ColorJitter(0.4,
0.4, 0.4, 0.1) with p = 0.8 (the four jitters in a random order per image), RandomGrayscale(0.2),
GaussianBlur(sigma in [0.1, 2]) with p = 0.5, horizontal flip. The blur kernel is 10% of the output
side rounded to an odd size (23 at 224 as in MoCo v2, 3 at 32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as nnf

from cropmix.data.augment import random_flip
from cropmix.transforms import (
    BatchCropMix,
    BatchParams,
    CropMixConfig,
    make_config,
    preset_kwargs,
    render_batch,
    sample_batch,
)

Images = torch.Tensor | Sequence[torch.Tensor]
QUERY_VIEWS = ("standard", "cropmix")
MAE_VIEWS = ("standard", "mae-mixup", "mae-cutmix")
_LUMA = (0.299, 0.587, 0.114)


def _sizes(images: Images) -> tuple[list[int], list[int], int]:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4:
            raise ValueError(f"images must be (B, C, H, W) or a list of (C, H, W), got shape {tuple(images.shape)}")
        b, c, h, w = images.shape
        return [h] * b, [w] * b, c
    if len(images) == 0:
        raise ValueError("images must hold at least one image, got an empty list")
    return [int(x.shape[-2]) for x in images], [int(x.shape[-1]) for x in images], int(images[0].shape[0])


def _crops(images: Images, params: BatchParams, size: tuple[int, int], index: int) -> torch.Tensor:
    """Crop `index` of every image, resized by the batched kernel; float (B, C, H, W) in [0, 1]."""
    batch = render_batch(images, params.crop(index), size)
    return batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch.float()


def random_resized_crops(
    images: Images, size: int, scale: tuple[float, float] = (0.2, 1.0), generator: torch.Generator | None = None
) -> torch.Tensor:
    """One RandomResizedCrop per image (CropMix's sampler with N = 1), float in [0, 1]."""
    heights, widths, channels = _sizes(images)
    config = make_config(size, scale=scale, num_crops=1, channel_permute=False)
    params = sample_batch(config, heights, widths, channels, channels, generator)
    return _crops(images, params, config.size, 0)


def _rand(n: int, generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
    return torch.rand(n, generator=generator).mul_(high - low).add_(low).view(n, 1, 1, 1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    r, g, b = x.unbind(1)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)


def _hue_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue of RGB images by `shift` (B,1,1,1, in turns) through HSV, as torchvision's adjust_hue."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    h = (h + shift[:, 0]) % 1.0
    v = maxc
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.long() % 6
    choices_r = torch.stack([v, q, p, p, t, v])
    choices_g = torch.stack([t, v, v, q, p, p])
    choices_b = torch.stack([p, p, t, v, v, q])
    idx = i.unsqueeze(0)
    return torch.stack([c.gather(0, idx)[0] for c in (choices_r, choices_g, choices_b)], dim=1)


def colour_jitter(
    x: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """torchvision's ColorJitter on a float batch, each image with its own factors and order of the four jitters."""
    n = x.shape[0]
    factors = [
        _rand(n, generator, 1 - brightness, 1 + brightness),
        _rand(n, generator, 1 - contrast, 1 + contrast),
        _rand(n, generator, 1 - saturation, 1 + saturation),
        _rand(n, generator, -hue, hue),
    ]
    order = torch.argsort(torch.rand(n, 4, generator=generator), dim=1)
    x = x.clone()
    for slot in range(4):
        for k in range(4):
            # Only the images that apply jitter k at this slot compute it: each image computes each
            # jitter once, instead of the whole batch computing all four.
            rows = (order[:, slot] == k).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            part, factor = x[rows], factors[k][rows]
            if k == 0:
                y = part * factor
            elif k == 1:
                y = torch.lerp(_grey(part).mean(dim=(2, 3), keepdim=True).expand_as(part), part, factor)
            elif k == 2:
                y = torch.lerp(_grey(part).expand_as(part), part, factor)
            else:
                y = _hue_shift(part, factor) if part.shape[1] == 3 else part
            x[rows] = y.clamp(0.0, 1.0)
    return x


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur each image with its own sigma (B,), a separable Gaussian of odd `kernel_size`, reflect padding."""
    n, c, h, w = x.shape
    half = kernel_size // 2
    offsets = torch.arange(-half, half + 1, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (n*c, k)
    y = nnf.pad(x.reshape(1, n * c, h, w), (half, half, half, half), mode="reflect")
    y = nnf.conv2d(y, kernel.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = nnf.conv2d(y, kernel.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w)


def blur_kernel_size(size: int) -> int:
    """MoCo v2's blur kernel, 10% of the image side, made odd (23 at 224, 3 at 32)."""
    k = max(3, int(0.1 * size))
    return k if k % 2 == 1 else k + 1


def moco_colour_flip(x: torch.Tensor, generator: torch.Generator | None = None, blur: bool = True) -> torch.Tensor:
    """MoCo v2's augmentation after the crop: jitter (p 0.8), grey (p 0.2), blur (p 0.5), flip (p 0.5)."""
    n = x.shape[0]
    u = torch.rand(n, 4, generator=generator).view(n, 4, 1, 1, 1)
    x = torch.where(u[:, 0] < 0.8, colour_jitter(x, generator=generator), x)
    x = torch.where(u[:, 1] < 0.2, _grey(x).expand_as(x), x)
    sigma = torch.rand(n, generator=generator) * 1.9 + 0.1
    if blur and min(x.shape[-2:]) > blur_kernel_size(x.shape[-1]) // 2:
        x = torch.where(u[:, 2] < 0.5, gaussian_blur(x, sigma, blur_kernel_size(x.shape[-1])), x)
    return random_flip(x, draws=u[:, 3])


def moco_view(images: Images, size: int, generator: torch.Generator | None = None, blur: bool = True) -> torch.Tensor:
    """The standard MoCo v2 view: RandomResizedCrop(scale 0.2-1) then colour, grey, blur and flip."""
    return moco_colour_flip(random_resized_crops(images, size, (0.2, 1.0), generator), generator, blur)


def cropmix_query_config(size: int) -> CropMixConfig:
    """CropMix's settings for the MoCo query: bands [0.2, 0.6] and [0.6, 1] (N = 2 over [0.2, 1]), CutMix."""
    return make_config(size, scale=(0.2, 1.0), num_crops=2, mix="cutmix", channel_permute=False)


def paste_boxes(small: torch.Tensor, large: torch.Tensor, params: BatchParams) -> torch.Tensor:
    """Paste each large view into its small view inside the CutMix box of the first mixing step."""
    out = small.clone()
    for i in range(small.shape[0]):
        top, left, height, width = (int(v) for v in params.box[i, 0])
        out[i, :, top : top + height, left : left + width] = large[i, :, top : top + height, left : left + width]
    return out


def cropmix_query_view(
    images: Images, size: int, generator: torch.Generator | None = None, blur: bool = True
) -> torch.Tensor:
    """The CropMix MoCo query (docs/method.md): a small-band and a large-band crop, each with the full MoCo v2
    augmentation, the large one pasted into the small one by CutMix (lam ~ U(0, 1), box sides
    sqrt(1 - lam) of the output, centre uniform, clipped)."""
    heights, widths, channels = _sizes(images)
    config = cropmix_query_config(size)
    params = sample_batch(config, heights, widths, channels, channels, generator)
    # params.crops[:, 0] is the small band [0.2, 0.6], [:, 1] the large band [0.6, 1]; the sampler's
    # shuffled order and paste direction are not used: the query always pastes large into small.
    small = moco_colour_flip(_crops(images, params, config.size, 0), generator, blur)
    large = moco_colour_flip(_crops(images, params, config.size, 1), generator, blur)
    return paste_boxes(small, large, params)


class TwoViews:
    """MoCo's (query, key) views of a uint8 batch; query "standard" (MoCo v2) or "cropmix"."""

    def __init__(self, query: str = "standard", size: int = 32, blur: bool = True) -> None:
        if query not in QUERY_VIEWS:
            raise ValueError(f"query must be one of {QUERY_VIEWS}, got {query!r}")
        self.query, self.size, self.blur = query, size, blur

    def __call__(self, images: Images, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        view = cropmix_query_view if self.query == "cropmix" else moco_view
        q = view(images, self.size, generator, self.blur)
        k = moco_view(images, self.size, generator, self.blur)
        return q, k


class MAEView:
    """MAE inputs: "standard" RandomResizedCrop(0.2-1, bicubic) + flip, or a CropMix preset + flip."""

    def __init__(self, aug: str = "standard", size: int = 32) -> None:
        if aug not in MAE_VIEWS:
            raise ValueError(f"aug must be one of {MAE_VIEWS}, got {aug!r}")
        self.aug, self.size = aug, size
        if aug == "standard":  # MAE's RandomResizedCrop: one crop of scale (0.2, 1), the presets' interpolation
            interpolation = preset_kwargs("mae-mixup")["interpolation"]
            self._cropmix = dict(
                size=size, scale=(0.2, 1.0), num_crops=1, channel_permute=False, interpolation=interpolation
            )
        else:
            self._cropmix = preset_kwargs(aug, size)

    def __call__(self, images: Images, generator: torch.Generator | None = None) -> torch.Tensor:
        # The whole batch at once (per-image parameters, the same sampler as CropMix), not a
        # per-image loop: the batched kernel is the faster one on a CPU at these sizes.
        out = BatchCropMix(**self._cropmix, generator=generator)(images)
        out = out.float().div_(255.0) if out.dtype == torch.uint8 else out.float()
        return random_flip(out, draws=torch.rand(out.shape[0], generator=generator))
