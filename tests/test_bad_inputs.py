"""Bad image files are named in one line, skippable, and never decoded past the limits or read without end."""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

from cropmix.data import AugmentSpec, Batching, decode_folder, index_folder, load_npz, make_loader, open_image
from cropmix.data.image_files import BadFileError
from cropmix.viz.grid import open_rgb


def bomb_jpeg(side: int = 30000) -> bytes:
    """A small JPEG whose frame header claims side x side pixels."""
    out = io.BytesIO()
    PIL.Image.new("RGB", (16, 16), "red").save(out, format="JPEG")
    data = bytearray(out.getvalue())
    i = 2
    while data[i + 1] not in (0xC0, 0xC2):
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    data[i + 5 : i + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def grey16_png(path) -> np.ndarray:
    values = np.linspace(0, 40000, 16 * 16).astype(np.uint16).reshape(16, 16)
    PIL.Image.fromarray(values).save(path)  # mode I;16
    return values


def folder_with(tmp_path, name: str, data: bytes | None = None):
    root = tmp_path / "train"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        PIL.Image.new("RGB", (12, 12), "blue").save(root / c / "good.png")
    bad = root / "b" / name
    if data is not None:
        bad.write_bytes(data)
    return root, bad


def test_a_bomb_jpeg_is_named_and_skippable(tmp_path):
    root, bad = folder_with(tmp_path, "bomb.jpg", bomb_jpeg())
    with pytest.raises(BadFileError, match=r"bomb\.jpg.*pixels.*--skip-bad"):
        decode_folder(index_folder(root))
    images, _ = decode_folder(index := index_folder(root), skip_bad=True)
    assert len(images) == 2 and index.skipped == [str(bad)]
    with pytest.raises(BadFileError, match="bomb.jpg"):
        open_rgb(bad)


def test_a_tiny_image_is_refused(tmp_path):
    path = tmp_path / "tiny.png"
    PIL.Image.new("RGB", (2, 2)).save(path)
    with pytest.raises(BadFileError, match=r"tiny\.png.*too small"):
        open_image(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_or_a_link_to_a_device_is_not_read(tmp_path):
    root, fifo = folder_with(tmp_path, "fifo.png")
    os.mkfifo(fifo)
    (root / "a" / "zero.png").symlink_to("/dev/zero")
    index = index_folder(root)
    images, _ = decode_folder(index, skip_bad=True)  # hung on the FIFO before
    assert len(images) == 2 and sorted(index.skipped) == sorted([str(fifo), str(root / "a" / "zero.png")])
    with pytest.raises(BadFileError, match="not a regular file"):
        open_image(fifo)


def test_16bit_png_is_scaled_not_clamped(tmp_path):
    path = tmp_path / "grey16.png"
    values = grey16_png(path)
    assert PIL.Image.open(path).mode.startswith("I")
    expected = values >> 8
    for image in (open_image(path), open_rgb(path)):
        array = np.asarray(image)
        assert array.shape == (16, 16, 3) and (array[..., 0] == expected).all()


def test_16bit_rgb_png_reads_alike_from_a_folder_and_a_shard(tmp_path):
    from encoded_files import png16

    from cropmix.data.shard_tar import check_member_image

    pixels = np.random.default_rng(0).integers(0, 65536, (12, 10, 3)).astype(np.uint16)
    data = png16(pixels)
    (tmp_path / "rgb16.png").write_bytes(data)
    from_folder = np.asarray(open_image(tmp_path / "rgb16.png"))
    with PIL.Image.open(io.BytesIO(check_member_image(data, "rgb16.png"))) as image:
        from_shard = np.asarray(image.convert("RGB"))
    assert from_folder.shape == (12, 10, 3) and (from_folder == pixels >> 8).all() and (from_shard == from_folder).all()


def test_worker_error_is_one_line_and_skip_logs_the_path(tmp_path, caplog):
    root, bad = folder_with(tmp_path, "broken.png", b"not an image")
    index = index_folder(root)
    loader = make_loader(
        index, AugmentSpec("none", 12).per_image(in_memory=False), Batching(batch_size=3, train=False, workers=1)
    )
    with pytest.raises(BadFileError) as caught:
        next(iter(loader))
    assert "\n" not in str(caught.value) and "broken.png" in str(caught.value) and "--skip-bad" in str(caught.value)
    loader = make_loader(
        index,
        AugmentSpec("none", 12).per_image(in_memory=False),
        Batching(batch_size=3, train=False, workers=0, skip_bad=True),
    )
    with caplog.at_level("WARNING", logger="cropmix.data"):
        images, _ = next(iter(loader))
    assert images.shape[0] == 2 and f"skipping {bad}: " in caplog.text


def test_show_names_a_bomb_in_one_line(tmp_path):
    bad = tmp_path / "bomb.jpg"
    bad.write_bytes(bomb_jpeg())
    result = subprocess.run(
        [sys.executable, "-m", "cropmix", "show", str(bad), "--out", str(tmp_path / "g.png")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "bomb.jpg" in result.stderr and "Traceback" not in result.stderr
    assert torch is not None


def test_imagefolder_finds_nested_files_and_a_val_split_may_lack_a_class(tmp_path):
    root, _ = folder_with(tmp_path, "unused.png")
    (root / "a" / "deeper").mkdir()
    PIL.Image.new("RGB", (12, 12)).save(root / "a" / "deeper" / "nested.png")
    train = index_folder(root)
    assert root / "a" / "deeper" / "nested.png" in train.paths and train.targets.count(0) == 2
    val = tmp_path / "val"
    (val / "b").mkdir(parents=True)
    PIL.Image.new("RGB", (12, 12)).save(val / "b" / "x.png")
    index = index_folder(val, classes=train.classes)
    assert index.classes == ["a", "b"] and index.targets == [1]
    (val / "zebra").mkdir()
    with pytest.raises(ValueError, match="zebra"):
        index_folder(val, classes=train.classes)


def npz_with(path, **arrays):
    base = {"x_train": np.zeros((2, 12, 12, 3), np.uint8), "y_train": np.array([0, 1]), "classes": np.array(["a", "b"])}
    base.update(arrays)
    base.update({k.replace("train", "test"): v for k, v in base.items() if k.endswith("_train")})
    np.savez(path, **base)
    return path


def test_npz_zip_bomb_is_refused_unread(tmp_path):
    import zipfile

    path = tmp_path / "bomb.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**6, 10**5)})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x_train.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            member.write(b"\0" * 2**20)
    with pytest.raises(ValueError, match=r"bomb\.npz.*x_train.*over the limit"):
        load_npz(path, "train")


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x_train": np.zeros((2, 12, 12, 4), np.uint8)}, "x_train has 4 channels.*1 .* or 3"),
        ({"x_train": np.zeros((2, 2, 2, 3), np.uint8)}, "x_train.*too small"),
        ({"y_train": np.array([0, 5])}, r"y_train.*\[0, 2\)"),
        ({"y_train": np.array([0.0, 1.0])}, "y_train must be 1-d integer"),
        ({"y_train": np.array([0, "a"], dtype=object)}, "y_train holds Python objects"),
    ],
)
def test_npz_wrong_channels_sizes_and_labels_are_named(tmp_path, arrays, message):
    path = npz_with(tmp_path / "data.npz", **arrays)
    with pytest.raises(ValueError, match=message) as caught:
        load_npz(path, "train")
    assert "data.npz" in str(caught.value)


def test_npz_grey_images_become_rgb(tmp_path):
    grey = np.arange(2 * 12 * 12, dtype=np.uint8).reshape(2, 12, 12, 1)
    split = load_npz(npz_with(tmp_path / "g.npz", x_train=grey), "train")
    assert split.images.shape == (2, 3, 12, 12) and (split.images[:, 2] == torch.from_numpy(grey[..., 0])).all()


def test_a_planted_huge_label_is_refused_before_naming_its_classes(tmp_path):
    from cropmix.integrations.hf import _label_coding

    with pytest.raises(ValueError, match="10000000000000 classes.*MAX_CLASSES"):
        _label_coding(None, [0, 1, 10**13 - 1])
    path = tmp_path / "labels.npz"
    np.savez(path, x_train=np.zeros((2, 12, 12, 3), np.uint8), y_train=np.array([0, 10**13 - 1]))
    with pytest.raises(ValueError, match=r"labels\.npz.*y_train names 10000000000000 classes"):
        load_npz(path, "train")


@pytest.mark.parametrize("images", [np.uint8(3), np.zeros(5, np.uint8)], ids=["0-d", "1-d"])
def test_an_npz_image_array_of_the_wrong_shape_is_named_before_its_labels_are_counted(tmp_path, images):
    """The image array's shape is the error, not len() of an array without one or a label count to match."""
    path = tmp_path / "shape.npz"
    np.savez(path, x_train=images, y_train=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=r"shape\.npz': x_train must be uint8 \(N, H, W, C\) or \(N, H, W\)"):
        load_npz(path, "train")


def test_npz_encoded_images_are_held_to_the_decoded_array_limit(tmp_path, monkeypatch):
    from cropmix.data import arrays

    pngs = []
    for seed in range(4):
        out = io.BytesIO()
        PIL.Image.new("RGB", (40, 40), (seed, 0, 0)).save(out, format="PNG")  # 4800 bytes decoded, ~100 encoded
        pngs.append(np.frombuffer(out.getvalue(), np.uint8))
    offsets = np.cumsum([0] + [len(p) for p in pngs]).astype(np.int64)
    path = tmp_path / "enc.npz"
    np.savez(path, jpeg_train=np.concatenate(pngs), jpeg_train_offsets=offsets, y_train=np.zeros(4, np.int64))
    split = load_npz(path, "train")
    assert split.images.shape == (4, 3, 40, 40)
    monkeypatch.setattr(arrays, "MAX_ARRAY_BYTES", 3 * 4800 - 1)
    with pytest.raises(ValueError, match=r"enc\.npz jpeg_train: images 0\.\.2 decode to 14400 bytes, over the limit"):
        load_npz(path, "train")


@pytest.mark.parametrize("planted", ["y_train", "classes"])
def test_npz_label_and_class_counts_are_checked_before_they_are_converted(tmp_path, planted):
    """Refused before the int64 copy of the labels or the list of names is made, whose size the peak shows."""
    import tracemalloc

    arrays = {"x_train": np.zeros((2, 12, 12, 3), np.uint8), "y_train": np.zeros(2, np.int64)}
    if planted == "y_train":
        arrays["y_train"] = np.zeros(20_000_000, np.uint8)  # 20 MB, 160 MB as int64 targets
    else:
        arrays["classes"] = np.full(2_000_000, "ab", "<U2")  # 16 MB as an array, ~120 MB as Python strings
    path = tmp_path / "planted.npz"
    np.savez_compressed(path, **arrays)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"planted\.npz.*(20000000 labels for 2 images|2000000 classes)"):
            load_npz(path, "train")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 60 * 2**20, f"{peak} bytes held"


def test_a_channels_last_image_tensor_is_warned_about_once_per_transform() -> None:
    import warnings

    from cropmix import BatchCropMix, CropMix

    hwc = torch.zeros(40, 40, 3, dtype=torch.uint8)  # torch.from_numpy(np.asarray(pil_image))
    with pytest.warns(UserWarning, match=r"CropMix reads image tensors as \(C, H, W\) but got one shaped like \(H, W"):
        CropMix(16)(hwc)
    with pytest.warns(UserWarning, match=r"BatchCropMix reads image tensors as \(B, C, H, W\)"):
        BatchCropMix(16)(hwc[None].expand(2, -1, -1, -1))
    with pytest.warns(UserWarning, match="BatchCropMix reads"):
        BatchCropMix(16)([hwc])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own: a message once per place it is raised from
        transform = CropMix(16)
        for side in (40, 50, 60):
            transform(torch.zeros(side, side + 1, 3, dtype=torch.uint8))
    assert sum("reads image tensors" in str(w.message) for w in caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for chw in (torch.zeros(3, 40, 40), torch.zeros(1, 40, 4), torch.zeros(4, 40, 40, dtype=torch.uint8)):
            CropMix(16)(chw)
            BatchCropMix(16)(chw[None])
