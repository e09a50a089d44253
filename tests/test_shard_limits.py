"""Shard sets from someone else are read in bounded memory and time: tar headers, the shuffle buffer, brace
patterns, declared counts and the index's nesting all have limits, and going over one is a one-line error."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

import pytest

from cropmix.data.shard_tar import MAX_HEADER_BYTES, iter_samples
from cropmix.data.shard_urls import MAX_SHARD_NAMES, expand_braces

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


def test_brace_groups_that_multiply_past_the_limit_are_refused_before_expanding() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match=rf"'t\{{0\.\.9999\}}\{{0\.\.9999\}}\.tar'.*limit of {MAX_SHARD_NAMES}"):
        expand_braces("t{0..9999}{0..9999}.tar")
    with pytest.raises(ValueError, match="limit of"):
        expand_braces("{a,b}" * 40)
    assert time.perf_counter() - start < 1
    assert expand_braces("s-{08..10}{a,b}.tar") == [
        "s-08a.tar",
        "s-08b.tar",
        "s-09a.tar",
        "s-09b.tar",
        "s-10a.tar",
        "s-10b.tar",
    ]
    assert expand_braces("{a}{3..1}") == ["{a}3", "{a}2", "{a}1"] and expand_braces("plain") == ["plain"]
    assert len(expand_braces("{0..99}" * 3)) == 10**6
