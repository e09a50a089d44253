"""Common corruptions in the style of CIFAR-10-C (Hendrycks & Dietterich 2019), re-implemented in torch.

Each corruption maps float images (B, C, H, W) in [0, 1] and a severity 1..5 (increasing) to
corrupted images in [0, 1] of the same shape, on the same device. Random ones draw from the
given `torch.Generator` (on its own device), so a seeded generator gives the same result every
time. The severity tables are this project's own choices, tuned for 32x32 images.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

Corruption = Callable[[Tensor, int, "torch.Generator | None"], Tensor]


def _check(images: Tensor, severity: int) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise TypeError(f"images must be a float tensor (B, C, H, W) in [0, 1], got {getattr(images, 'shape', images)}")
    if isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an int in 1..5, got {severity!r}")


def _draw(kind: str, shape: tuple[int, ...], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Uniform [0, 1) ("rand") or standard normal ("randn") numbers, drawn on the generator's device."""
    device = generator.device if generator is not None else like.device
    fn = torch.rand if kind == "rand" else torch.randn
    return fn(shape, generator=generator, device=device).to(like.device, like.dtype)


def _filter_per_image(images: Tensor, kernels: Tensor) -> Tensor:
    """Convolve image b (all channels) with kernels[b] (B, k, k), k odd, replicate padding."""
    b, c, h, w = images.shape
    k = kernels.shape[-1]
    weight = kernels.to(images.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, k, k)
    padded = F.pad(images.reshape(1, b * c, h, w), (k // 2,) * 4, mode="replicate")
    return F.conv2d(padded, weight, groups=b * c).view(b, c, h, w)


def _gaussian_kernel(sigma: float, device: torch.device) -> Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def _disk_kernel(radius: float, device: torch.device, supersample: int = 8) -> Tensor:
    """Antialiased disk: each kernel cell weighted by the fraction of it inside the disk."""
    half = math.ceil(radius)
    fine = (torch.arange((2 * half + 1) * supersample, device=device) + 0.5) / supersample - half - 0.5
    yy, xx = torch.meshgrid(fine, fine, indexing="ij")
    inside = (yy**2 + xx**2 <= radius**2).float()
    kernel = F.avg_pool2d(inside[None, None], supersample)[0, 0]
    return kernel / kernel.sum()


def _motion_kernels(length: float, angles: Tensor) -> Tensor:
    """(B, k, k) kernels: a centred line segment of `length` pixels at angle[b], splatted bilinearly."""
    half = math.ceil(length / 2) + 1
    k = 2 * half + 1
    steps = torch.linspace(-length / 2, length / 2, max(2, int(length * 4)), device=angles.device)
    ys = half + steps[None, :] * torch.sin(angles)[:, None]
    xs = half + steps[None, :] * torch.cos(angles)[:, None]
    kernels = torch.zeros(len(angles), k * k, device=angles.device)
    y0, x0 = ys.floor(), xs.floor()
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (1 - (ys - y0 - dy).abs()) * (1 - (xs - x0 - dx).abs())
            index = ((y0 + dy).clamp(0, k - 1) * k + (x0 + dx).clamp(0, k - 1)).long()
            kernels.scatter_add_(1, index, weight)
    kernels = kernels / kernels.sum(dim=1, keepdim=True)
    return kernels.view(-1, k, k)


def _random_angles(images: Tensor, generator: torch.Generator | None) -> Tensor:
    return _draw("rand", (images.shape[0],), generator, images) * math.pi


def _smooth_noise(images: Tensor, decay: float, generator: torch.Generator | None) -> Tensor:
    """Fractal value noise (B, 1, H, W) in [0, 1]: octaves of upsampled Gaussian noise, amplitude decay^-octave."""
    b, _, h, w = images.shape
    field = torch.zeros(b, 1, h, w, device=images.device, dtype=images.dtype)
    grid, octave = 2, 0
    while grid <= 2 * max(h, w):
        noise = _draw("randn", (b, 1, grid, grid), generator, images)
        field += F.interpolate(noise, size=(h, w), mode="bicubic", align_corners=False) * decay**-octave
        grid, octave = grid * 2, octave + 1
    low = field.amin(dim=(2, 3), keepdim=True)
    high = field.amax(dim=(2, 3), keepdim=True)
    return (field - low) / (high - low).clamp_min(1e-12)


def gaussian_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Additive Gaussian noise, sigma 0.04..0.10."""
    _check(images, severity)
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    return (images + sigma * _draw("randn", tuple(images.shape), generator, images)).clamp(0, 1)


def shot_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Poisson (photon) noise: x' = Poisson(x * rate) / rate, rate 500..50 photons per unit intensity."""
    _check(images, severity)
    rate = (500.0, 250.0, 100.0, 75.0, 50.0)[severity - 1]
    device = generator.device if generator is not None else images.device
    counts = torch.poisson(images.clamp(0, 1).float().to(device) * rate, generator=generator)
    return (counts.to(images.device, images.dtype) / rate).clamp(0, 1)


def impulse_noise(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Salt-and-pepper noise: a fraction 0.01..0.07 of the values set to 0 or 1 (half each)."""
    _check(images, severity)
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    u = _draw("rand", tuple(images.shape), generator, images)
    out = images.clone()
    out[u < amount / 2] = 0.0
    out[u > 1 - amount / 2] = 1.0
    return out.clamp(0, 1)


def gaussian_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Gaussian blur, sigma 0.4..1.0 pixels."""
    _check(images, severity)
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    kernel = _gaussian_kernel(sigma, images.device)
    return _filter_per_image(images, kernel.expand(images.shape[0], -1, -1)).clamp(0, 1)


def defocus_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Defocus: convolution with an antialiased disk of radius 1..2.5 pixels."""
    _check(images, severity)
    radius = (1.0, 1.25, 1.5, 2.0, 2.5)[severity - 1]
    kernel = _disk_kernel(radius, images.device)
    return _filter_per_image(images, kernel.expand(images.shape[0], -1, -1)).clamp(0, 1)


def motion_blur(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Linear motion blur along a random direction per image, streak length 2..7 pixels."""
    _check(images, severity)
    length = (2.0, 3.0, 4.0, 5.5, 7.0)[severity - 1]
    return _filter_per_image(images, _motion_kernels(length, _random_angles(images, generator))).clamp(0, 1)


def fog(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Fog: smooth fractal noise added and the result rescaled to keep each image's maximum."""
    _check(images, severity)
    strength, decay = ((0.2, 3.0), (0.5, 3.0), (0.75, 2.5), (1.0, 2.0), (1.5, 1.75))[severity - 1]
    haze = _smooth_noise(images, decay, generator)
    peak = images.amax(dim=(1, 2, 3), keepdim=True)
    return ((images + strength * haze) * peak / (peak + strength)).clamp(0, 1)


def brightness(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Raise the HSV value (max over channels) by 0.1..0.5, keeping hue and saturation; any channel count."""
    _check(images, severity)
    shift = (0.1, 0.2, 0.3, 0.4, 0.5)[severity - 1]
    value = images.amax(dim=1, keepdim=True)
    new_value = (value + shift).clamp(max=1.0)
    # Scaling all channels by new_value / value keeps hue and saturation; black pixels become grey.
    scaled = images * new_value / value.clamp_min(1e-6)
    return torch.where(value > 1e-6, scaled, new_value.expand_as(images)).clamp(0, 1)


def contrast(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Shrink each channel towards its mean by a factor 0.6..0.15."""
    _check(images, severity)
    factor = (0.6, 0.45, 0.35, 0.25, 0.15)[severity - 1]
    mean = images.mean(dim=(2, 3), keepdim=True)
    return ((images - mean) * factor + mean).clamp(0, 1)


def snow(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Snow: sparse flakes, streaked by a motion blur in a random direction, over a whitened image."""
    _check(images, severity)
    density, flake_size, streak, keep = (
        (0.03, 1.0, 2.0, 0.95),
        (0.05, 1.5, 3.0, 0.9),
        (0.08, 2.0, 4.0, 0.85),
        (0.11, 2.0, 5.0, 0.8),
        (0.15, 2.5, 6.0, 0.65),
    )[severity - 1]
    b, _, h, w = images.shape
    gh, gw = max(1, round(h / flake_size)), max(1, round(w / flake_size))
    flakes = (_draw("rand", (b, 1, gh, gw), generator, images) < density).to(images.dtype)
    flakes = F.interpolate(flakes, size=(h, w), mode="bilinear", align_corners=False)
    flakes = _filter_per_image(flakes, _motion_kernels(streak, _random_angles(images, generator)))
    flakes = (flakes * 2.0).clamp(0, 1)
    grey = images.mean(dim=1, keepdim=True)
    whitened = keep * images + (1 - keep) * torch.maximum(images, grey * 1.5 + 0.5)
    return (whitened + flakes).clamp(0, 1)


def pixelate(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """Average down to 0.9..0.55 of the size, then nearest-neighbour back up (sizes that avoid aligned 2:1 blocks)."""
    _check(images, severity)
    factor = (0.9, 0.8, 0.7, 0.65, 0.55)[severity - 1]
    h, w = images.shape[-2:]
    small = F.interpolate(images, size=(max(1, round(h * factor)), max(1, round(w * factor))), mode="area")
    return F.interpolate(small, size=(h, w), mode="nearest").clamp(0, 1)


def jpeg_compression(images: Tensor, severity: int, generator: torch.Generator | None = None) -> Tensor:
    """JPEG round trip at quality 80..20 (Pillow, on the CPU, one image at a time); 1 or 3 channels."""
    _check(images, severity)
    if images.shape[1] not in (1, 3):
        raise ValueError(f"jpeg_compression needs 1 or 3 channels, got {images.shape[1]}")
    quality = (80, 65, 50, 35, 20)[severity - 1]
    as_uint8 = images.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    decoded = []
    for array in as_uint8:
        buffer = io.BytesIO()
        Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        with Image.open(buffer) as image:
            decoded.append(torch.from_numpy(np.asarray(image).copy()))
    out = torch.stack(decoded).view(as_uint8.shape).permute(0, 3, 1, 2)
    return out.to(images.device, images.dtype).div_(255)


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "gaussian_blur": gaussian_blur,
    "defocus_blur": defocus_blur,
    "motion_blur": motion_blur,
    "fog": fog,
    "brightness": brightness,
    "snow": snow,
    "contrast": contrast,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
}
