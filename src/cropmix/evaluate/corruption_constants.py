"""Severity constants of the 15 standard corruptions, severities 1..5, as published by Hendrycks & Dietterich
(2019): one table for CIFAR-10-C / CIFAR-100-C (make_cifar_c.py, 32x32 images) and one for ImageNet-C
(make_imagenet_c.py, 224x224 images; the `imagecorruptions` package uses the same ImageNet table).
"""

from __future__ import annotations

import numpy as np


def _zooms(*ranges: tuple[float, float]) -> tuple[tuple[float, ...], ...]:
    # np.arange as the reference calls it, so float rounding gives the same number of zoom factors.
    return tuple(tuple(float(z) for z in np.arange(1, stop, step)) for stop, step in ranges)


CIFAR = "cifar"
IMAGENET = "imagenet"

# name -> {table: five per-severity constants}
CONSTANTS: dict[str, dict[str, tuple]] = {
    "gaussian_noise": {CIFAR: (0.04, 0.06, 0.08, 0.09, 0.10), IMAGENET: (0.08, 0.12, 0.18, 0.26, 0.38)},
    "shot_noise": {CIFAR: (500, 250, 100, 75, 50), IMAGENET: (60, 25, 12, 5, 3)},
    "impulse_noise": {CIFAR: (0.01, 0.02, 0.03, 0.05, 0.07), IMAGENET: (0.03, 0.06, 0.09, 0.17, 0.27)},
    # (disk radius, alias blur sigma)
    "defocus_blur": {
        CIFAR: ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
        IMAGENET: ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    },
    # (sigma, max shift, iterations)
    "glass_blur": {
        CIFAR: ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
        IMAGENET: ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    },
    # (ImageMagick radius, sigma)
    "motion_blur": {
        CIFAR: ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
        IMAGENET: ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    },
    # zoom factors averaged with the image
    "zoom_blur": {
        CIFAR: _zooms((1.06, 0.01), (1.11, 0.01), (1.16, 0.01), (1.21, 0.01), (1.26, 0.01)),
        IMAGENET: _zooms((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03)),
    },
    # (flake mean, flake std, zoom, threshold, blur radius, blur sigma, image weight)
    "snow": {
        CIFAR: (
            (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
            (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
            (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
            (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
            (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
        ),
        IMAGENET: (
            (0.1, 0.3, 3, 0.5, 10, 4, 0.8),
            (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
            (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
            (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
            (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55),
        ),
    },
    # (image weight, frost weight)
    "frost": {
        CIFAR: ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
        IMAGENET: ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    },
    # (fog strength, plasma wibble decay)
    "fog": {
        CIFAR: ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
        IMAGENET: ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    },
    "brightness": {CIFAR: (0.05, 0.1, 0.15, 0.2, 0.3), IMAGENET: (0.1, 0.2, 0.3, 0.4, 0.5)},
    "contrast": {CIFAR: (0.75, 0.5, 0.4, 0.3, 0.15), IMAGENET: (0.4, 0.3, 0.2, 0.1, 0.05)},
    # (alpha, sigma, affine jitter) in pixels; the ImageNet table multiplies 244 (the reference's own typo for 224)
    "elastic_transform": {
        CIFAR: tuple(
            (32 * a, 32 * s, 32 * j)
            for a, s, j in ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))
        ),
        IMAGENET: tuple(
            (244 * a, 244 * s, 244 * j)
            for a, s, j in ((2, 0.7, 0.1), (2, 0.08, 0.2), (0.05, 0.01, 0.02), (0.07, 0.01, 0.02), (0.12, 0.01, 0.02))
        ),
    },
    "pixelate": {CIFAR: (0.95, 0.9, 0.85, 0.75, 0.65), IMAGENET: (0.6, 0.5, 0.4, 0.3, 0.25)},
    "jpeg_compression": {CIFAR: (80, 65, 58, 50, 40), IMAGENET: (25, 18, 15, 10, 7)},
}
