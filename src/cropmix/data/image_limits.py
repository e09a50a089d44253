"""What an input image may be: one list of formats, one pixel limit and one 16-to-8-bit rule for every reading path.

The same limits hold for image files, shard members, npz arrays and Hugging Face images, so a hostile
or broken file is refused with the same message wherever it comes from, before it is decoded.
`open_pil` is the one way PIL opens an image from a user: only as one of IMAGE_FORMATS, which Pillow
decodes itself (never EPS/PostScript, which Pillow hands to Ghostscript, nor any plugin's format).
`BadImageError` is what `--skip-bad` skips.
"""

from __future__ import annotations

import re
import warnings
from typing import IO

import numpy as np
import PIL.Image

__all__ = [
    "BadImageError",
    "IMAGE_FORMATS",
    "MAX_IMAGE_PIXELS",
    "MAX_OUTPUT_SIDE",
    "MIN_IMAGE_SIDE",
    "SIXTEEN_BIT_MODES",
    "check_image_size",
    "open_pil",
    "plain_reason",
    "scale_16bit_to_8bit",
]

MAX_IMAGE_PIXELS = 178_956_970  # Pillow's own DecompressionBombError threshold (2 x its warning limit)
# PIL modes of one 16-bit (or 32-bit integer) channel: scaled by `scale_16bit_to_8bit`, never clamped.
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
MIN_IMAGE_SIDE = 8  # smaller images cannot be cropped into distinct bands nor pass a model's stem
# The largest side images are resized to (a run's image_size, `cropmix show --size`): a received config.json
# is read by `cropmix eval`, which resizes every test image to its side (12,000 px: ~220 GB a batch of 512).
MAX_OUTPUT_SIDE = 1024
# The formats PIL may read a user's image as: decoded in-process by Pillow's own code and bundled libraries.
# PPM covers PBM/PGM/PPM; GIF, TIFF and WebP are read as their first frame only (see open_pil).
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "TIFF", "WEBP", "PPM")


# What decoders add to their messages that says nothing about the file: torchvision's "function, C++ source
# path:line, " prefix and the repr of the buffer PIL was given.
_NOISE = re.compile(
    r"^[\w:()~<>]+, \S+:\d+, |^\S+\.(?:cpp|cc|cu|c|h|hpp):\d+,? ?| ?<_io\.BytesIO object at 0x[0-9a-f]+>"
)


def plain_reason(error: BaseException) -> str:
    """A decoder's error as a plain reason: its first sentence, without source paths or buffer reprs (the rest
    of torchvision's messages points to other functions, not at the file)."""
    lines = str(error).strip().splitlines()
    text = _NOISE.sub("", lines[0] if lines else "").strip()
    return re.split(r"\.\s+(?=[A-Z])", text, maxsplit=1)[0] or type(error).__name__


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


def open_pil(source: str | IO[bytes], name: str) -> PIL.Image.Image:
    """`source` opened (header only, not decoded) as one of IMAGE_FORMATS; BadImageError naming `name` otherwise.

    Pillow is never asked to guess among all its formats: EPS would run Ghostscript on the file. A
    multi-frame image (GIF, TIFF, WebP) stays on its first frame, which is all any caller decodes, so
    the memory used never depends on the frame count. Close the image (`with`) when done.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PIL.Image.DecompressionBombWarning)
            return PIL.Image.open(source, formats=IMAGE_FORMATS)
    except PIL.Image.DecompressionBombError as error:
        raise BadImageError(f"{name}: more pixels than the limit of {MAX_IMAGE_PIXELS} ({error})") from error
    except PIL.UnidentifiedImageError as error:
        raise BadImageError(
            f"{name}: not an image in one of the accepted formats ({', '.join(IMAGE_FORMATS)})"
        ) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"{name}: cannot read image: {plain_reason(error)}") from error


def scale_16bit_to_8bit(array: np.ndarray) -> np.ndarray:
    """16-bit samples (0..65535) to uint8 as their top 8 bits (v >> 8): white stays white, no level clips,
    and it is what Pillow itself does to 16-bit RGB PNGs, so every reading path and mode agrees."""
    if array.dtype == np.uint8:
        return array
    values = array.astype(np.int64)
    if values.min(initial=0) < 0 or values.max(initial=0) > 65535:
        raise BadImageError(f"16-bit samples must lie in [0, 65535], got [{values.min()}, {values.max()}]")
    return (values >> 8).astype(np.uint8)
