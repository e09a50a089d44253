"""Which images cropmix decodes: only the accepted formats (never EPS, which Pillow hands to Ghostscript), the
first frame of a multi-frame image, and only with a size read from its header. Hostile files made here."""

from __future__ import annotations

import io
import json
import os
import struct
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from encoded_files import encoded, write_tar

from cropmix.data import Batching
from cropmix.data.arrays import decode_jpegs
from cropmix.data.device_pipeline import DevicePipeline, _cpu_decode, batch_decodable, make_augment
from cropmix.data.image_files import BadFileError, open_image
from cropmix.data.image_limits import IMAGE_FORMATS, MAX_IMAGE_PIXELS, BadImageError, open_pil
from cropmix.data.shard_reader import ShardLoader
from cropmix.data.shard_tar import check_member_image
from cropmix.data.shards import read_index

EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n"
ACCEPTED = r"not an image in one of the accepted formats \(JPEG, PNG, GIF"


@pytest.fixture
def ghostscript(tmp_path, monkeypatch) -> Path:
    """A fake `gs` first on PATH that leaves a marker file when run: the marker must never appear."""
    folder = tmp_path / "bin"
    folder.mkdir()
    marker = tmp_path / "gs-ran"
    script = folder / "gs"
    script.write_text(f"#!/bin/sh\ntouch '{marker}'\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return marker


def animated_gif(frames: int, size: int = 32) -> bytes:
    """A GIF of `frames` frames, each a different grey level."""
    images = [PIL.Image.new("L", (size, size), 50 + i % 200) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=10)
    return out.getvalue()


def stray_byte_jpeg(side: int = 20000) -> bytes:
    """A JPEG header declaring side x side pixels, with one 0x00 byte between APP0 and the frame header (libjpeg
    and PIL skip it); enough of a scan header to look like a JPEG, no pixel data."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 17, 8, side, side, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    sos = b"\xff\xda" + struct.pack(">HB", 12, 3) + b"\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return b"\xff\xd8" + app0 + b"\x00" + sof + sos + b"\x00" * 64 + b"\xff\xd9"


def one_shard(tmp_path: Path, members: dict[str, bytes]) -> object:
    """The "val" split of an index over one shard holding `members` ({key: image bytes}), all of class 0."""
    write_tar(tmp_path / "a.tar", [{"__key__": k, "jpg": v, "cls": b"0"} for k, v in members.items()])
    meta = {"format": "cropmix-webdataset", "classes": ["x"], "splits": {"val": {"shards": ["a.tar"]}}}
    meta["splits"]["val"]["counts"] = [len(members)]
    (tmp_path / "index.json").write_text(json.dumps(meta))
    return read_index(tmp_path).split("val")


def test_the_accepted_formats_shell_out_to_nothing() -> None:
    assert "JPEG" in IMAGE_FORMATS and "PNG" in IMAGE_FORMATS
    assert not {"EPS", "PDF", "PSD", "WMF", "MPEG", "FITS", "GRIB", "BUFR", "HDF5"} & set(IMAGE_FORMATS)


def test_eps_is_refused_by_every_reader_and_ghostscript_never_runs(tmp_path, ghostscript) -> None:
    with pytest.raises(BadImageError, match=rf"^x: {ACCEPTED}"):
        open_pil(io.BytesIO(EPS), "x")
    (tmp_path / "photo.jpg").write_bytes(EPS)
    with pytest.raises(BadFileError, match=rf"photo\.jpg: {ACCEPTED}"):
        open_image(tmp_path / "photo.jpg")
    with pytest.raises(BadImageError, match=rf"^npz jpeg_train\[0\]: {ACCEPTED}"):
        decode_jpegs(np.frombuffer(EPS, np.uint8), np.array([0, len(EPS)]), "npz jpeg_train")
    with pytest.raises(BadImageError, match=rf"^s\.tar#k: {ACCEPTED}"):
        check_member_image(EPS, "s.tar#k")
    with pytest.raises(ValueError, match=ACCEPTED):
        _cpu_decode(torch.frombuffer(bytearray(EPS), dtype=torch.uint8))
    assert not ghostscript.exists()


def test_an_eps_shard_member_is_a_bad_member_that_skip_bad_skips(tmp_path, ghostscript) -> None:
    split = one_shard(tmp_path, {"s000000": EPS, "s000001": encoded()})
    with pytest.raises(ValueError, match=rf"a\.tar#s000000: {ACCEPTED}.*--skip-bad") as caught:
        list(ShardLoader(split, Batching(batch_size=4, train=False, workers=0)))
    assert "\n" not in str(caught.value)
    loader = ShardLoader(split, Batching(batch_size=4, train=False, workers=0, skip_bad=True))
    (batch,) = list(loader)
    images, _ = DevicePipeline(make_augment("center", 16), flip=False)(batch)
    assert images.shape == (1, 3, 16, 16) and [s.rsplit("/", 1)[-1] for s in loader.skipped] == ["a.tar#s000000"]
    pipeline = DevicePipeline(make_augment("center", 16), flip=False, skip_bad=True)  # bytes not from the reader
    images, kept = pipeline.decode([torch.frombuffer(bytearray(EPS), dtype=torch.uint8)] * 2, ["a", "b"])
    assert images == [] and kept == [] and pipeline.skipped == ["a", "b"]
    assert not ghostscript.exists()


def test_an_eps_hugging_face_image_is_never_decoded_by_pil(tmp_path, ghostscript) -> None:
    datasets = pytest.importorskip("datasets")
    from cropmix.data import eval_transform, load_source, make_loader

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    png = {"bytes": encoded(fmt="PNG"), "path": None}
    rows = {"image": [{"bytes": EPS, "path": None}, png], "label": [0, 1]}
    split = datasets.Dataset.from_dict(rows, features=features)
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "hf"))
    source = load_source("hf", tmp_path / "hf")
    loader = make_loader(source.test, eval_transform(16, False), Batching(batch_size=2, train=False, workers=0))
    with pytest.raises(BadFileError, match=rf"^Hugging Face image \(row 0\): {ACCEPTED}"):
        next(iter(loader))
    with pytest.raises(BadFileError, match=rf"image 0: {ACCEPTED}"):
        load_source("hf", tmp_path / "hf", in_memory=True)
    assert not ghostscript.exists()


def test_hugging_face_columns_datasets_would_decode_itself_are_refused_unread(tmp_path, ghostscript) -> None:
    datasets = pytest.importorskip("datasets")
    from cropmix.data import load_source

    eps = {"bytes": EPS, "path": None}
    png = {"bytes": encoded(fmt="PNG"), "path": None}
    cases = {  # an EPS label, and EPS images in a list: `datasets` decodes both with PIL, in any format
        "label": ({"image": datasets.Image(), "label": datasets.Image()}, {"image": [png], "label": [eps]}),
        "image": ({"image": datasets.List(datasets.Image()), "label": datasets.Value("int64")},
                  {"image": [[eps]], "label": [0]}),
    }  # fmt: skip
    for column, (features, rows) in cases.items():
        split = datasets.Dataset.from_dict(rows, features=datasets.Features(features))
        datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / column))
        with pytest.raises(ValueError, match=rf"split 'train' of .*: column '{column}' \(--hf-{column}-key\) is "):
            load_source("hf", tmp_path / column)
    assert not ghostscript.exists()


def test_an_animated_gif_decodes_as_its_first_frame_only() -> None:
    data = animated_gif(200)
    assert check_member_image(data, "s.tar#k") is data
    image = _cpu_decode(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    assert image.shape == (3, 32, 32) and int(image[0, 0, 0]) == 50
    images, kept = DevicePipeline(make_augment("center", 16), flip=False).decode(
        [torch.frombuffer(bytearray(data), dtype=torch.uint8)], ["k"]
    )
    assert kept == [0] and images[0].shape == (3, 32, 32)


def test_a_jpeg_with_a_stray_byte_before_its_frame_header_is_still_held_to_the_pixel_limit(tmp_path) -> None:
    data = stray_byte_jpeg()
    assert not batch_decodable(data)
    with pytest.raises(BadImageError, match=rf"^s\.tar#k: more pixels than the limit of {MAX_IMAGE_PIXELS}"):
        check_member_image(data, "s.tar#k")
    pipeline = DevicePipeline(make_augment("center", 16), flip=False)
    with pytest.raises(ValueError, match=rf"member k: more pixels than the limit of {MAX_IMAGE_PIXELS}"):
        pipeline.decode([torch.frombuffer(bytearray(data), dtype=torch.uint8)], ["k"])
    split = one_shard(tmp_path, {"s000000": data, "s000001": encoded()})
    loader = ShardLoader(split, Batching(batch_size=4, train=False, workers=0, skip_bad=True))
    assert len(next(iter(loader))) == 1 and [s.rsplit("/", 1)[-1] for s in loader.skipped] == ["a.tar#s000000"]


def test_a_jpeg_without_a_readable_size_is_refused_not_handed_on() -> None:
    with pytest.raises(BadImageError, match=r"^s\.tar#k: "):
        check_member_image(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 40, "s.tar#k")
