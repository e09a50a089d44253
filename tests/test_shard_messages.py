"""What `cropmix shards` and the shard reader say about bad files: the file a member was written from, a
plain reason without decoder build paths, and a one-line warning (or --skip-bad) for bad files at writing."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from encoded_files import encoded, make_jpeg_folder

from cropmix.data import Batching
from cropmix.data.device_pipeline import DevicePipeline, make_augment
from cropmix.data.image_limits import BadImageError, plain_reason
from cropmix.data.shard_reader import ShardLoader
from cropmix.data.shard_tar import check_member_image
from cropmix.data.shards import read_index, write_shards


def folder_with_bad_files(root: Path) -> Path:
    """make_jpeg_folder's tree, plus a file that is no image (junk.jpg) and a JPEG cut short after its
    header (cut.jpg)."""
    make_jpeg_folder(root, train_per_class=2, val_per_class=1)
    (root / "train" / "cat" / "junk.jpg").write_bytes(b"not an image at all")
    good = encoded(size=(20, 24))
    (root / "train" / "cat" / "cut.jpg").write_bytes(good[: len(good) - 80])
    return root


def test_writing_warns_once_per_bad_file_and_lists_them_in_the_index(tmp_path, caplog) -> None:
    src = folder_with_bad_files(tmp_path / "src")
    with caplog.at_level(logging.WARNING, logger="cropmix.data"):
        write_shards(src, tmp_path / "out", progress=False)
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "junk.jpg" in warnings[0] and "--skip-bad" in warnings[0]
    assert "\n" not in warnings[0]
    index = json.loads((tmp_path / "out" / "index.json").read_text())
    assert index["splits"]["train"]["bad_files"] == ["train/cat/junk.jpg"]
    assert index["splits"]["train"]["num_samples"] == 9, "written all the same"
    assert read_index(tmp_path / "out").bad_files == {"train": ["train/cat/junk.jpg"]}
    index["splits"]["train"]["bad_files"] = "junk.jpg"  # a received index: not a list of names
    (tmp_path / "out" / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="bad_files must be lists of file names"):
        read_index(tmp_path / "out")


def test_skip_bad_leaves_bad_files_out_of_the_shards(tmp_path) -> None:
    src = folder_with_bad_files(tmp_path / "src")
    write_shards(src, tmp_path / "out", shard_size=4, progress=False, skip_bad=True)
    split = read_index(tmp_path / "out").split("train")
    assert split.num_samples == 8 and sum(split.counts) == 8
    batches = list(ShardLoader(split, Batching(batch_size=8, train=False, workers=0)))
    assert sum(len(b) for b in batches) == 8 and not any("junk" in s for b in batches for s in b.sources)


def test_decode_errors_name_the_source_file_and_a_plain_reason(tmp_path) -> None:
    src = folder_with_bad_files(tmp_path / "src")
    write_shards(src, tmp_path / "out", progress=False, skip_bad=True)
    (batch,) = ShardLoader(read_index(tmp_path / "out").split("train"), Batching(batch_size=8, train=False, workers=0))
    assert sorted(s for s in batch.sources if "cat" in s)[0].startswith("train/cat/")
    with pytest.raises(ValueError) as caught:
        DevicePipeline(make_augment("center", 16))(batch)
    message = str(caught.value)
    assert "train-000000.tar#train_" in message and "(from 'train/cat/cut.jpg')" in message
    assert ".cpp" not in message and "/__w/" not in message and "BytesIO" not in message
    assert "--skip-bad" in message and "\n" not in message
    pipeline = DevicePipeline(make_augment("center", 16), skip_bad=True)
    images, _ = pipeline(batch)
    assert len(images) == 7 and len(pipeline.skipped) == 1 and "(from" not in pipeline.skipped[0]


def test_plain_reason_drops_build_paths_and_buffer_reprs() -> None:
    tv = RuntimeError("decode_jpeg, /__w/vision/torchvision/csrc/io/image/cpu/decode_jpeg.cpp:171, Image is truncated")
    assert plain_reason(tv) == "Image is truncated"
    assert plain_reason(OSError("cannot identify image file <_io.BytesIO object at 0x7f00aa>")) == (
        "cannot identify image file"
    )
    assert plain_reason(RuntimeError("first line\nException raised from f at x.cpp:3")) == "first line"
    unsupported = "decode_image, /a/decode_image.cpp:67, Unsupported image file. Only jpeg, png are supported."
    assert plain_reason(RuntimeError(unsupported)) == "Unsupported image file"


def test_the_command_counts_bad_files_at_the_end(tmp_path, capsys) -> None:
    from cropmix.cli import main

    src = folder_with_bad_files(tmp_path / "src")
    assert main(["shards", str(src), str(tmp_path / "a"), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "1 bad image files (written anyway" in captured.out
    assert captured.err.count("junk.jpg") == 1
    assert main(["shards", str(src), str(tmp_path / "b"), "--no-progress", "--skip-bad"]) == 0
    assert "train: 8 images" in capsys.readouterr().out


def test_a_broken_16bit_member_is_a_bad_image_not_a_raw_decoder_error() -> None:
    out = io.BytesIO()
    PIL.Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)).save(out, format="PNG")
    data = out.getvalue()
    with pytest.raises(BadImageError, match=r"^s\.tar#k: cannot decode the 16-bit image: image file is truncated$"):
        check_member_image(data[: len(data) // 2], "s.tar#k")
    assert check_member_image(data, "s.tar#k")[:8] == b"\x89PNG\r\n\x1a\n"
