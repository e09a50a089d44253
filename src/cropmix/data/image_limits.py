"""What an input image may be: one pixel limit and one 16-to-8-bit rule for every reading path.

The same limits hold for image files, shard members and npz arrays, so a hostile or broken file is
refused with the same message wherever it comes from, before it is decoded. `BadImageError` is what
`--skip-bad` skips.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BadImageError", "MAX_IMAGE_PIXELS", "MIN_IMAGE_SIDE", "check_image_size", "scale_16bit_to_8bit"]

MAX_IMAGE_PIXELS = 178_956_970  # Pillow's own DecompressionBombError threshold (2 x its warning limit)
MIN_IMAGE_SIDE = 8  # smaller images cannot be cropped into distinct bands nor pass a model's stem


class BadImageError(ValueError):
    """An image that cannot be used, with a message naming it and what is accepted."""


def check_image_size(width: int, height: int, name: str) -> None:
    """Refuse an image of more than MAX_IMAGE_PIXELS pixels or with a side under MIN_IMAGE_SIDE, naming it."""
    if width * height > MAX_IMAGE_PIXELS:
        raise BadImageError(
            f"{name}: {width}x{height} pixels is more than the limit of {MAX_IMAGE_PIXELS} "
            "(a decompression bomb or a corrupt header)"
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise BadImageError(f"{name}: {width}x{height} pixels is too small: each side must be >= {MIN_IMAGE_SIDE}")


def scale_16bit_to_8bit(array: np.ndarray) -> np.ndarray:
    """16-bit samples (0..65535) to uint8 by rounding v * 255 / 65535, so white stays white and no level clips."""
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.int64)
    if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
        raise BadImageError(f"16-bit samples must lie in [0, 65535], got [{values.min()}, {values.max()}]")
    return ((values * 255 + 32767) // 65535).astype(np.uint8)
