"""The 15 standard corruptions of CIFAR-10-C and ImageNet-C (Hendrycks & Dietterich, ICLR 2019), in torch.

Each corruption maps float images (B, C, H, W) in [0, 1] and a severity 1..5 to corrupted images in
[0, 1] of the same shape, on the same device. The formulas and severity constants are those of the
reference code (make_cifar_c.py, make_imagenet_c.py; `corruption_constants.py`): images of at most
64 pixels a side use the CIFAR table, larger ones the ImageNet table (`table=` overrides). Random ones
draw from the given `torch.Generator` (on its own device), so a seeded generator repeats its result;
the draws are torch's, so single images differ from the reference's numpy draws, their statistics not.

Where this is not the reference:
- frost: the reference blends crops of frost photographs shipped with its code. With the `imagecorruptions`
  package installed (the `robustness` extra) `frost` reads them from there and follows the reference;
  without it, it blends a procedural ice texture, 17-27% milder, whose scores are not comparable with
  published frost numbers (`frost_source()` says which one runs; `corruption_accuracy` reports it).
- motion_blur and snow: the reference calls ImageMagick's motion blur (Wand); this is a torch
  re-implementation of that kernel (as the `imagecorruptions` package re-implements it in numpy).
- Outputs are float. The published sets store uint8 (and ImageNet-C JPEG at quality 85): `stored` turns
  outputs into what those files hold, and `corruption_accuracy` applies it by default.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from . import corruption_ops as ops
from .corruption_constants import CIFAR, CONSTANTS, IMAGENET
from .corruption_frost import PHOTOGRAPHS, PROCEDURAL, frost_source, frost_texture, photo_layer

Corruption = Callable[..., Tensor]  # (images, severity, generator=None, *, table=None) -> images
CIFAR_MAX_SIDE = 64  # images up to this size use the CIFAR constants


def _check(images: Tensor, severity: int) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise TypeError(f"images must be a float tensor (B, C, H, W) in [0, 1], got {getattr(images, 'shape', images)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")


def severity_constants(name: str, images: Tensor, severity: int, table: str | None = None):
    """The reference constant of corruption `name` at `severity` for images of this size (or `table`)."""
    _check(images, severity)
    return CONSTANTS[name][table_of(images, table)][severity - 1]


def table_of(images: Tensor, table: str | None = None) -> str:
    """The severity table for these images: `table` if given, else CIFAR up to CIFAR_MAX_SIDE pixels a side."""
    if table is None:
        return CIFAR if max(images.shape[-2:]) <= CIFAR_MAX_SIDE else IMAGENET
    if table not in (CIFAR, IMAGENET):
        raise ValueError(f"table must be None, {CIFAR!r} or {IMAGENET!r}, got {table!r}")
    return table


def _draw(kind: str, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor, **kw) -> Tensor:
    """Numbers drawn on the generator's device and moved to like's: "rand" [0, 1), "randn", "randint"."""
    device = generator.device if generator is not None else like.device
    if kind == "randint":
        return torch.randint(kw["low"], kw["high"], shape, generator=generator, device=device).to(like.device)
    fn = torch.rand if kind == "rand" else torch.randn
    dtype = kw.get("dtype", torch.float32)
    return fn(shape, generator=generator, device=device, dtype=dtype).to(like.device)


def _gray(images: Tensor) -> Tensor:
    """OpenCV's RGB2GRAY luma (B, 1, H, W); the image itself when it has one channel."""
    if images.shape[1] == 1:
        return images
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
    return (images[:, :3] * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def _to_levels(images: Tensor) -> Tensor:
    """Images in [0, 1] as the 8-bit levels the reference starts from (rounded), uint8, same device."""
    return images.detach().clamp(0, 1).mul(255).round().to(torch.uint8)


def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """x + N(0, c^2), clipped."""
    c = severity_constants("gaussian_noise", images, severity, table)
    return (images + c * _draw("randn", tuple(images.shape), generator, images).to(images.dtype)).clamp(0, 1)


def shot_noise(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """Poisson(x * c) / c, clipped."""
    c = severity_constants("shot_noise", images, severity, table)
    device = generator.device if generator is not None else images.device
    counts = torch.poisson(images.clamp(0, 1).float().to(device) * c, generator=generator)
    return (counts.to(images.device, images.dtype) / c).clamp(0, 1)


def impulse_noise(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """Salt and pepper (scikit-image's random_noise 's&p'): each value, with probability c, set to 0 or 1."""
    c = severity_constants("impulse_noise", images, severity, table)
    flipped = _draw("rand", tuple(images.shape), generator, images) < c
    salt = _draw("rand", tuple(images.shape), generator, images) < 0.5
    out = torch.where(flipped & salt, torch.ones_like(images), images)
    return torch.where(flipped & ~salt, torch.zeros_like(images), out).clamp(0, 1)


def defocus_blur(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """Correlation with the reference's anti-aliased disk (OpenCV reflect-101 border), clipped."""
    radius, alias_blur = severity_constants("defocus_blur", images, severity, table)
    kernel = ops.disk_kernel(radius, alias_blur)
    return ops.correlate(images, kernel, "reflect101").clamp(0, 1)


def glass_blur(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """Gaussian blur, 8-bit truncation, the reference's sequential local pixel moves (copies, as its numpy
    "swap" actually ran: see `corruption_ops.local_shuffle`), Gaussian blur again.
    The moves run on the CPU, all images at once, without a loop over pixels."""
    sigma, delta, iterations = severity_constants("glass_blur", images, severity, table)
    b, _, h, w = images.shape
    blurred = (ops.gaussian_blur(images, sigma) * 255).floor() / 255
    positions = max(0, h - 2 * delta) * max(0, w - 2 * delta)
    offsets = _draw("randint", (iterations, positions, b, 2), generator, images, low=-delta, high=delta)
    shuffled = ops.local_shuffle(blurred, delta, iterations, offsets)
    return ops.gaussian_blur(shuffled, sigma).clamp(0, 1)


def motion_blur(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """ImageMagick-style motion blur (re-implemented, see `corruption_ops.motion_blur`) at an angle drawn
    uniformly in [-45, 45) degrees per image, rounded to 8 bits as ImageMagick's PNG output is in the reference."""
    radius, sigma = severity_constants("motion_blur", images, severity, table)
    angles = _draw("rand", (images.shape[0],), generator, images, dtype=torch.float64).cpu() * 90 - 45
    return (ops.motion_blur(images, radius, sigma, angles).clamp(0, 1) * 255).round_().div_(255)


def zoom_blur(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """The mean of the image and its central zooms by each of the severity's factors."""
    zooms = severity_constants("zoom_blur", images, severity, table)
    out = images.clone()
    for zoom in zooms:
        out += ops.clipped_zoom(images, zoom)
    return (out / (len(zooms) + 1)).clamp(0, 1)


def snow(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """The reference's snow: thresholded zoomed Gaussian flakes, motion-blurred at an angle in [-135, -45)
    degrees, added twice (once rotated by 180 degrees) over the image brightened towards its luma."""
    mean, std, zoom, threshold, radius, sigma, keep = severity_constants("snow", images, severity, table)
    b, _, h, w = images.shape
    flakes = mean + std * _draw("randn", (b, 1, h, w), generator, images).to(images.dtype)
    flakes = ops.clipped_zoom(flakes, zoom)
    flakes = torch.where(flakes < threshold, torch.zeros_like(flakes), flakes).clamp(0, 1)
    flakes = (flakes * 255).floor() / 255  # the reference passes the layer through an 8-bit PNG
    angles = _draw("rand", (b,), generator, images, dtype=torch.float64).cpu() * 90 - 135
    flakes = (ops.motion_blur(flakes, radius, sigma, angles) * 255).round() / 255
    whitened = keep * images + (1 - keep) * torch.maximum(images, _gray(images) * 1.5 + 0.5)
    return (whitened + flakes + flakes.flip(-2, -1)).clamp(0, 1)


def frost(
    images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None, source: str | None = None
) -> Tensor:
    """c0 * x + c1 * frost layer, clipped, with the reference's weights. The layer (`corruption_frost`): the
    reference's frost photographs (source "imagecorruptions"; the default when that package is installed) or
    the procedural texture (source "procedural"; the default otherwise)."""
    image_weight, frost_weight = severity_constants("frost", images, severity, table)
    source = frost_source() if source is None else source
    if source not in (PHOTOGRAPHS, PROCEDURAL):
        raise ValueError(f"source must be None, {PHOTOGRAPHS!r} or {PROCEDURAL!r}, got {source!r}")

    def draw(kind: str, shape: tuple[int, ...], **kw) -> Tensor:
        return _draw(kind, shape, generator, images, **kw)

    if source == PHOTOGRAPHS:
        layer = photo_layer(tuple(images.shape), table_of(images, table), draw, images)
    else:
        layer = frost_texture(tuple(images.shape), draw, images)
    return (image_weight * images + frost_weight * layer).clamp(0, 1)


def fog(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """x + c * plasma fractal (the reference's diamond-square map, size the next power of two), rescaled by
    max / (max + c) where max is the image's maximum, clipped."""
    strength, decay = severity_constants("fog", images, severity, table)
    b, _, h, w = images.shape
    mapsize = max(2, 1 << (max(h, w) - 1).bit_length())

    def uniform(shape: tuple[int, ...]) -> Tensor:
        return _draw("rand", shape, generator, images, dtype=torch.float64).cpu()

    plasma = ops.plasma_fractal(b, mapsize, decay, uniform)[:, None, :h, :w].to(images.device, images.dtype)
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images + strength * plasma) * peak / (peak + strength)).clamp(0, 1)


def brightness(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """HSV value + c (clipped), hue and saturation kept: every channel scaled by V' / V (black turns grey)."""
    c = severity_constants("brightness", images, severity, table)
    if images.shape[1] != 3:
        return (images + c).clamp(0, 1)
    value = images.amax(dim=1, keepdim=True)
    new_value = (value + c).clamp(max=1.0)
    scaled = images * new_value / torch.where(value > 0, value, torch.ones_like(value))
    return torch.where(value > 0, scaled, new_value.expand_as(images)).clamp(0, 1)


def contrast(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """Each channel pulled towards its mean: (x - mean) * c + mean."""
    c = severity_constants("contrast", images, severity, table)
    mean = images.mean(dim=(2, 3), keepdim=True)
    return ((images - mean) * c + mean).clamp(0, 1)


def _random_affine(images: Tensor, jitter: float, generator: torch.Generator | None) -> Tensor:
    """The reference's random affine: three points around the centre moved by U(-jitter, jitter), the
    image warped accordingly (cv2.warpAffine, bilinear, reflect-101 border)."""
    b, _, h, w = images.shape
    cy, cx, s = float(h // 2), float(w // 2), float(min(h, w) // 3)
    src = torch.tensor([[cy + s, cx + s], [cy + s, cx - s], [cy - s, cx - s]], dtype=torch.float64)
    moves = _draw("rand", (b, 3, 2), generator, images, dtype=torch.float64).cpu() * 2 * jitter - jitter
    dst = src + moves  # (x, y) pairs as the reference hands them to OpenCV
    ones = torch.ones(3, 1, dtype=torch.float64)
    forward = torch.linalg.solve(torch.cat([src, ones], 1).expand(b, 3, 3), dst)  # (B, 3, 2): [x y 1] @ M^T
    linear, shift = forward[:, :2].transpose(1, 2), forward[:, 2]
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    grid = torch.stack([xx, yy], -1).view(1, -1, 2) - shift[:, None]
    # Each output pixel's source: linear^-1 (pixel - shift), one 2x2 inverse per image.
    source = (grid @ torch.linalg.inv(linear).transpose(1, 2)).view(b, h, w, 2)
    source = source.to(images.device)
    return ops.bilinear_sample(images, source[..., 1], source[..., 0], "reflect101")


def elastic_transform(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None):
    """The reference's elastic transform: a random affine warp, then each pixel displaced by Gaussian-smoothed
    uniform noise (sigma, truncate 3, scaled by alpha), bilinear with a mirrored border."""
    alpha, sigma, jitter = severity_constants("elastic_transform", images, severity, table)
    b, _, h, w = images.shape
    warped = _random_affine(images, jitter, generator)
    noise = _draw("rand", (b, 2, h, w), generator, images, dtype=torch.float64).cpu() * 2 - 1
    shifts = ops.gaussian_blur(noise, sigma, mode="symmetric", truncate=3.0) * alpha
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    ys, xs = (yy + shifts[:, 1]).to(images.device), (xx + shifts[:, 0]).to(images.device)
    return ops.bilinear_sample(warped, ys, xs, "symmetric").clamp(0, 1)


def pixelate(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None) -> Tensor:
    """Pillow BOX resize of the 8-bit image to int(c * size), then BOX back up (as the reference; `imagecorruptions`
    uses NEAREST for the way up), with Pillow's fixed-point arithmetic and 8-bit rounding after every pass."""
    c = severity_constants("pixelate", images, severity, table)
    h, w = images.shape[-2:]
    levels = _to_levels(images)
    small = ops.box_resize_8bit(levels, max(1, int(h * c)), max(1, int(w * c)))
    return ops.box_resize_8bit(small, h, w).to(images.dtype).div_(255)


def _jpeg_round_trip(levels: Tensor, quality: int) -> Tensor:
    """uint8 levels (B, C, H, W), C 1 or 3, saved as Pillow JPEG at `quality` and decoded (CPU, one image at a
    time); uint8 on the CPU."""
    if levels.shape[1] not in (1, 3):
        raise ValueError(f"a JPEG round trip needs 1 or 3 channels, got {levels.shape[1]}")
    arrays = levels.permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for array in arrays:
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as image:
            decoded.append(torch.from_numpy(np.asarray(image).copy()))
    return torch.stack(decoded).view(arrays.shape).permute(0, 3, 1, 2)


def jpeg_compression(images: Tensor, severity: int, generator: torch.Generator | None = None, *, table=None):
    """Pillow JPEG round trip at the reference's quality (on the CPU, one image at a time); 1 or 3 channels."""
    quality = severity_constants("jpeg_compression", images, severity, table)
    return _jpeg_round_trip(_to_levels(images), quality).to(images.device, images.dtype).div_(255)


STORED_QUALITY = 85  # make_imagenet_c.py saves every corrupted image as JPEG at this quality


def stored(images: Tensor, table: str | None = None) -> Tensor:
    """Corrupted images as the published sets hold them: truncated to 8 bits (the reference's np.uint8 of its
    float output) and, for the ImageNet table, saved and decoded as JPEG at quality 85 (ImageNet-C's files;
    CIFAR-10-C's .npy files are the truncated levels). Float in [0, 1], same device and dtype."""
    levels = (images.detach().clamp(0, 1) * 255).floor_().to(torch.uint8)  # exact levels k / 255 stay k
    if table_of(images, table) == IMAGENET:
        if images.shape[1] not in (1, 3):
            raise ValueError(
                f"images must have 1 or 3 channels to be stored as JPEG (the ImageNet table), got {images.shape[1]}; "
                "corruption_accuracy(..., CorruptionOptions(storage=False)) scores the float outputs"
            )
        levels = _jpeg_round_trip(levels, STORED_QUALITY)
    return levels.to(images.device, images.dtype).div_(255)


def storage_of(images: Tensor, table: str | None = None) -> str:
    """How `stored` keeps these images, in words for a report: "uint8" or "uint8 + JPEG q85"."""
    return "uint8" if table_of(images, table) == CIFAR else f"uint8 + JPEG q{STORED_QUALITY}"


# In the order of the reference (and of the published .npy files): noise, blur, weather, digital.
CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
