"""Shard sets from someone else are read in bounded memory and time: tar headers, the shuffle buffer, brace
patterns, declared counts and the index's nesting all have limits, and going over one is a one-line error."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from cropmix.data.shard_tar import MAX_HEADER_BYTES, iter_samples

HUGE = 5 * 2**30


def header(name: str, kind: bytes, size: int) -> bytes:
    """One 512-byte ustar header of type `kind` declaring `size` bytes."""
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info.tobuf(format=tarfile.GNU_FORMAT if size >= 8**11 else tarfile.USTAR_FORMAT)


def sparse_tar(path: Path, head: bytes, size: int) -> Path:
    """`head`, then zeros up to `size` bytes: a sparse file, nothing but `head` written to disk."""
    path.write_bytes(head)
    os.truncate(path, size)
    return path


@pytest.mark.parametrize("kind", [b"x", b"g", b"L", b"K", b"X"])
def test_a_header_declaring_gigabytes_is_refused_before_it_is_read(tmp_path, kind) -> None:
    shard = sparse_tar(tmp_path / "train-000000.tar", header("././@Header", kind, HUGE), HUGE + 1024)
    with pytest.raises(ValueError, match=rf"train-000000\.tar.*declares {HUGE} bytes.*limit of {MAX_HEADER_BYTES}"):
        list(iter_samples(str(shard), frozenset({"jpg"})))


def test_headers_within_the_limit_are_read_as_before(tmp_path) -> None:
    shard = tmp_path / "a.tar"
    with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("d" * 300 + "/k0.jpg")  # a long name: a pax header
        info.size, info.pax_headers = 3, {"comment": "c" * 100_000}
        tar.addfile(info, io.BytesIO(b"abc"))
    samples = list(iter_samples(str(shard), frozenset({"jpg"})))
    assert [(s["__key__"], s["jpg"]) for s in samples] == [("d" * 300 + "/k0", b"abc")]
