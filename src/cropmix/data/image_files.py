"""Opening one image file from a user's folder: bounded before decoding, 16-bit scaled, errors naming the file.

Only regular files of at most MAX_IMAGE_FILE_BYTES are opened (never a FIFO or a device, which would
hang or read without end), and only as one of image_limits.IMAGE_FORMATS (`open_pil`: never EPS, which
Pillow hands to Ghostscript); the header's pixel count is checked against MAX_IMAGE_PIXELS before any
decode (PIL's own bomb error becomes the same error); 16-bit images are scaled to 8 bits by
`scale_16bit_to_8bit`, the rule every reading path shares. Every failure is a `BadFileError`.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image

from .image_limits import SIXTEEN_BIT_MODES, BadImageError, check_image_size, open_pil, scale_16bit_to_8bit
from .safe_files import FileError, open_regular

__all__ = ["MAX_IMAGE_FILE_BYTES", "BadFileError", "image_from_bytes", "image_size", "open_image", "to_rgb"]

MAX_IMAGE_FILE_BYTES = 256 * 2**20
SKIP_HINT = "(pass --skip-bad, or skip_bad=True, to skip bad files)"


class BadFileError(BadImageError):
    """A bad input file: `path` and `reason`, in one line.

    A DataLoader worker re-raises an error as its type called with the whole worker traceback; this
    type keeps only its own last message from it, so the user sees one line (the traceback stays in
    `worker_traceback`).
    """

    def __init__(self, text: str, reason: str | None = None) -> None:
        self.worker_traceback = ""
        marker = f"{type(self).__name__}: "
        if reason is None and text.startswith("Caught ") and marker in text:
            self.worker_traceback = text
            text = text.rsplit(marker, 1)[1].strip()
        self.path, self.reason = (text, reason) if reason is not None else (text, "")
        super().__init__(f"{text}: {reason}" if reason is not None else text)


@contextlib.contextmanager
def _open(path: Path) -> Iterator[PIL.Image.Image]:
    try:
        handle = open_regular(path, MAX_IMAGE_FILE_BYTES)
    except FileError as error:
        raise BadFileError(str(path), error.strerror or str(error)) from error
    with handle:
        try:
            image = open_pil(handle, str(path))
        except BadImageError as error:
            raise BadFileError(str(path), str(error).removeprefix(f"{path}: ")) from error
        with image:
            yield image


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(width, height) of an image file from its header, checked against the limits; BadFileError otherwise."""
    path = Path(path)
    with _open(path) as image:
        _check_size(image, str(path))
        return image.size


def _check_size(image: PIL.Image.Image, path: str) -> None:
    try:
        check_image_size(image.width, image.height, path)
    except BadImageError as error:
        raise BadFileError(str(path), str(error).removeprefix(f"{path}: ")) from error


def to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """`image` as 8-bit RGB; 16-bit (and 32-bit integer) grey is scaled, not clamped."""
    if image.mode in SIXTEEN_BIT_MODES:
        grey = scale_16bit_to_8bit(np.asarray(image))
        return PIL.Image.fromarray(np.ascontiguousarray(grey), mode="L").convert("RGB")
    return image.convert("RGB")


def open_image(path: str | os.PathLike) -> PIL.Image.Image:
    """Decode an image file to 8-bit RGB within the limits above; BadFileError naming the file otherwise."""
    path = Path(path)
    with _open(path) as image:
        return _decoded(image, str(path))


def image_from_bytes(data: bytes, name: str) -> PIL.Image.Image:
    """Decode an encoded image held in memory (a dataset's stored bytes) as `open_image` decodes a file:
    one of IMAGE_FORMATS, first frame only, within the limits; BadFileError naming `name` otherwise."""
    try:
        image = open_pil(io.BytesIO(data), name)
    except BadImageError as error:
        raise BadFileError(name, str(error).removeprefix(f"{name}: ")) from error
    with image:
        return _decoded(image, name)


def _decoded(image: PIL.Image.Image, name: str) -> PIL.Image.Image:
    _check_size(image, name)
    try:
        return to_rgb(image)
    except BadImageError as error:
        raise BadFileError(name, str(error)) from error
    except (OSError, SyntaxError, ValueError) as error:
        raise BadFileError(name, f"cannot read image: {error}") from error
