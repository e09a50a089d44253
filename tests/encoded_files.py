"""Encoded images and the files they travel in, for the tests of decoding and of reading shards:
PNG and JPEG bytes, a folder of JPEGs with odd modes, and WebDataset tar shards.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import PIL.Image


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit RGB PNG (PIL cannot write one)."""
    h, w = pixels.shape[:2]
    raw = b"".join(b"\x00" + pixels[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def encoded(mode: str = "RGB", fmt: str = "JPEG", size=(20, 24), seed: int = 0, **save) -> bytes:
    """A smooth image (gradients, a little noise: JPEG decoders agree closely on it) encoded as `fmt`."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[: size[0], : size[1]]
    base = np.stack([x * 255 / size[1], y * 255 / size[0], (x + y) * 127 / sum(size)], axis=-1)
    pixels = np.clip(base + rng.uniform(0, 60, 3) + rng.normal(0, 4, base.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).convert(mode).save(out, format=fmt, **save)
    return out.getvalue()


def make_jpeg_folder(root: Path, train_per_class: int = 4, val_per_class: int = 2) -> Path:
    """train/ and val/ with 2 classes of small JPEGs of several sizes, plus a PNG, a greyscale and a CMYK JPEG."""
    specials = [("png.png", "RGB", "PNG"), ("grey.jpg", "L", "JPEG"), ("cmyk.jpg", "CMYK", "JPEG")]
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(("cat", "dog")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                size = (16 + 4 * i, 20 + 2 * c)
                (folder / f"{i}.jpg").write_bytes(encoded(size=size, seed=100 * c + i))
        for j, (name, mode, fmt) in enumerate(specials):
            (root / split / "dog" / name).write_bytes(encoded(mode, fmt, size=(18, 22), seed=50 + j))
    return root


def write_tar(path: Path, members: list[dict]) -> None:
    """A shard of `members` ({"__key__": key, field: bytes, ...}), as WebDataset lays samples out."""
    with tarfile.open(path, "w") as tar:
        for member in members:
            for field, data in member.items():
                if field != "__key__":
                    info = tarfile.TarInfo(f"{member['__key__']}.{field}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
