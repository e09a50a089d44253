"""Tar shards read with the standard library, bounded: member sizes, compression and pixel counts are checked first.

`iter_samples` streams a shard (a local file or an http(s) URL, see cropmix.data.shard_urls) and groups
its members into samples the way WebDataset does: members "<key>.<field>" with the same key in a row
form one sample. Only the fields asked for are read, and only when their header declares at most
`max_member_bytes` (MAX_MEMBER_BYTES by default); a larger one is recorded in the sample's
"__oversize__" list unread. A compressed stream (gzip, bzip2, xz, zstd) is refused, whatever its name.

`check_member_image` reads an image member's header only (JPEG and PNG here, the other formats of
image_limits.IMAGE_FORMATS with `open_pil`, which does not decode) and refuses a member in another
format, one whose size it cannot read, or one of more than MAX_IMAGE_PIXELS pixels before any
decoder sees it; 16-bit images are scaled to 8 bits (cropmix.data.image_limits) and handed on as
8-bit PNG bytes, so every decoder downstream gets the same uint8 image.
"""

from __future__ import annotations

import io
import re
import struct
import tarfile
from collections.abc import Iterator

import numpy as np
import PIL.Image

from .image_limits import (
    SIXTEEN_BIT_MODES,
    BadImageError,
    check_image_size,
    open_pil,
    plain_reason,
    scale_16bit_to_8bit,
)
from .shard_urls import open_shard

__all__ = ["MAX_MEMBER_BYTES", "check_member_image", "iter_samples"]

MAX_MEMBER_BYTES = 64 * 2**20
_MEMBER = re.compile(r"^((?:.*/)?[^./]+)\.([^/]+)$")
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ\x00": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_PNG = b"\x89PNG\r\n\x1a\n"


class _Prefixed(io.RawIOBase):
    """A stream whose first bytes were read already (to check them), read again from the start."""

    def __init__(self, head: bytes, rest: io.IOBase) -> None:
        self.head, self.rest = head, rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.head:
            n = min(len(buffer), len(self.head))
            buffer[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _check_uncompressed(head: bytes, url: str) -> None:
    for magic, name in _COMPRESSED.items():
        if head.startswith(magic):
            raise ValueError(
                f"shard {url!r} is a {name}-compressed stream; shards are read as plain (uncompressed) tar files "
                "only, as `cropmix shards` writes them"
            )


# Pax (x, g), GNU long name/link (L, K) and Solaris (X) headers are read into memory whole: bounded here.
MAX_HEADER_BYTES = 2**20
_HEADER_TYPES = (
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
)


class _HeaderRefused(ValueError):
    """A tar header iter_samples does not read; it names the shard when it passes it on."""


class _BoundedHeaders(tarfile.TarInfo):
    """TarInfo that refuses a header member over MAX_HEADER_BYTES before tarfile reads it into memory.

    This relies on tarfile's hook TarInfo._proc_member, which tarfile.py documents as the entry point a
    subclass may override (unchanged in its role since Python 2).
    """

    def _proc_member(self, archive):
        if self.type in _HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise _HeaderRefused(
                f"a {self.type.decode('latin-1')!r} header at byte {self.offset} declares {self.size} bytes, "
                f"more than the limit of {MAX_HEADER_BYTES} for a tar header"
            )
        return super()._proc_member(archive)


def iter_samples(url: str, fields: frozenset[str], max_member_bytes: int = MAX_MEMBER_BYTES) -> Iterator[dict]:
    """The samples of the shard `url` in order: {"__key__", the `fields` present, "__oversize__": [reasons]}."""
    with open_shard(url) as stream:
        head = stream.read(512)
        _check_uncompressed(head, url)
        try:
            with tarfile.open(
                fileobj=io.BufferedReader(_Prefixed(head, stream)), mode="r|", tarinfo=_BoundedHeaders
            ) as tar:
                sample: dict | None = None
                dropped = None  # the key of a sample given out early, at its oversize member
                for member in tar:
                    tar.members.clear()  # a stream keeps every header it read: millions, for a planted shard
                    match = _MEMBER.match(member.name)
                    if not member.isfile() or match is None or match.group(1) == dropped:
                        continue
                    key, field = match.groups()
                    if sample is not None and sample["__key__"] != key:
                        yield sample
                        sample = None
                    if sample is None:
                        sample = {"__key__": key, "__oversize__": []}
                    if field.lower() not in fields:
                        continue
                    if member.size > max_member_bytes:
                        sample["__oversize__"].append(
                            f"member {member.name!r} declares {member.size} bytes, more than the limit of "
                            f"{max_member_bytes} (max_member_bytes)"
                        )
                        # Given out now, before the stream is read past the member (which may be short of it).
                        yield sample
                        sample, dropped = None, key
                        continue
                    sample[field.lower()] = tar.extractfile(member).read(max_member_bytes + 1)
                if sample is not None:
                    yield sample
        except _HeaderRefused as error:
            raise ValueError(f"shard {url!r}: {error}") from error


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's frame header, or None when there is none to read before the first scan."""
    i, n = 2, len(data)
    while i + 9 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:
            i += 2
        elif marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        elif marker == 0xDA:
            return None
        else:
            i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _pil_header(data: bytes, name: str) -> tuple[int, int, str]:
    """(width, height, mode) from the header PIL reads, as one of IMAGE_FORMATS only; BadImageError otherwise."""
    with open_pil(io.BytesIO(data), name) as image:
        return image.size[0], image.size[1], image.mode


def _16bit_array(data: bytes, name: str) -> np.ndarray:
    """A 16-bit image's samples: torchvision keeps every channel's 16 bits of a PNG; PIL reads the rest (16-bit
    TIFF, PGM, ...: one 16-bit or 32-bit int channel) and names what is wrong with a broken one."""
    if data[:8] == _PNG:
        import torch

        from .image_decoders import decode_png

        try:
            image = decode_png(torch.frombuffer(bytearray(data), dtype=torch.uint8), keep_depth=True)
            return image.permute(1, 2, 0).numpy()
        except RuntimeError:
            pass  # PIL below reads it, or raises the plainer error about it
    with open_pil(io.BytesIO(data), name) as opened:
        return np.asarray(opened)


def _to_8bit_png(data: bytes, name: str) -> bytes:
    array = _16bit_array(data, name)
    try:
        scaled = scale_16bit_to_8bit(array.astype(np.int64) if array.dtype != np.uint8 else array)
    except BadImageError as error:
        raise BadImageError(f"{name}: {error}") from error
    scaled = scaled[..., 0] if scaled.ndim == 3 and scaled.shape[2] == 1 else scaled
    out = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(scaled)).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def check_member_image(data: bytes, name: str) -> bytes:
    """`data` if its header allows it (16-bit images as 8-bit PNG bytes); BadImageError naming `name` otherwise.

    Only JPEG, PNG and the other IMAGE_FORMATS are accepted, and only with a size read from the header:
    a JPEG whose frame header the quick scan misses (a stray byte between segments, which libjpeg
    skips) is read by PIL, and one no reader finds a size in is refused, never handed on unchecked.
    """
    sixteen = False
    if data[:8] == _PNG and data[12:16] == b"IHDR" and len(data) >= 26:
        width, height = struct.unpack(">II", data[16:24])
        sixteen = data[24] == 16
    else:
        size = _jpeg_size(data) if data[:2] == b"\xff\xd8" else None
        if size is None:
            width, height, mode = _pil_header(data, name)
            sixteen = mode in SIXTEEN_BIT_MODES
        else:
            width, height = size
    check_image_size(width, height, name)
    if not sixteen:
        return data
    try:
        return _to_8bit_png(data, name)
    except (OSError, SyntaxError, RuntimeError) as error:  # a 16-bit image whose pixel data is broken
        raise BadImageError(f"{name}: cannot decode the 16-bit image: {plain_reason(error)}") from error
