"""Image decoders: torchvision's while it has them, else TorchCodec's (the same pixels), else an error that
says what to install."""

from __future__ import annotations

import io
import sys
import types

import numpy as np
import pytest
import torch
import torchvision.io
from PIL import Image

from cropmix.data import image_decoders
from cropmix.data.device_pipeline import DevicePipeline, make_augment


def encoded(array: np.ndarray, fmt: str) -> torch.Tensor:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


RGB = np.random.default_rng(0).integers(0, 256, (10, 14, 3), dtype=np.uint8)
GREY16 = (np.arange(48, dtype=np.uint16).reshape(6, 8) * 1300).astype(np.uint16)


@pytest.fixture
def without_torchvision_decoders(monkeypatch):
    """torchvision.io as a torchvision that dropped its image decoders has it; the choice made afresh."""
    for name in ("decode_jpeg", "decode_png"):
        monkeypatch.delattr(torchvision.io, name)
    image_decoders._decoders.cache_clear()
    yield
    image_decoders._decoders.cache_clear()


def test_torchvision_decodes_while_it_has_decoders() -> None:
    image_decoders._decoders.cache_clear()
    assert image_decoders.decoder_backend() == "torchvision"
    jpeg = image_decoders.decode_jpeg(encoded(RGB, "JPEG"))
    assert jpeg.shape == (3, 10, 14) and jpeg.dtype == torch.uint8
    assert torch.equal(image_decoders.decode_png(encoded(RGB, "PNG")), torch.from_numpy(RGB).permute(2, 0, 1))
    shallow = image_decoders.decode_png(encoded(GREY16, "PNG"))
    assert shallow.shape == (3, 6, 8) and shallow.dtype == torch.uint8  # RGB mode is 8-bit, a 16-bit PNG too
    assert (shallow[0].int() - torch.from_numpy(GREY16.astype(np.int32) / 257).round().int()).abs().max() == 0
    deep = image_decoders.decode_png(encoded(GREY16, "PNG"), keep_depth=True)
    assert deep.shape == (1, 6, 8) and deep.dtype == torch.uint16 and int(deep.int().max()) == int(GREY16.max())


def test_without_them_torchcodec_is_called_as_its_api_asks(without_torchvision_decoders, monkeypatch) -> None:
    calls = []

    def decode_jpeg(data, *, mode, device):
        calls.append(("jpeg", mode, device))
        return torch.zeros(3, 2, 2, dtype=torch.uint8)

    def decode_png(data, *, mode, output_dtype=torch.uint8):
        calls.append(("png", mode, output_dtype))
        return torch.zeros(3, 2, 2, dtype=torch.uint8)

    fake = types.ModuleType("torchcodec.decoders")
    fake.decode_jpeg, fake.decode_png = decode_jpeg, decode_png
    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", fake)
    assert image_decoders.decoder_backend() == "torchcodec"
    data = encoded(RGB, "JPEG")
    image_decoders.decode_jpeg(data, "cpu")
    image_decoders.decode_png(data)
    image_decoders.decode_png(data, keep_depth=True)
    assert calls == [("jpeg", "RGB", "cpu"), ("png", "RGB", torch.uint8), ("png", "UNCHANGED", "auto")]


def test_with_neither_the_error_says_what_to_install(without_torchvision_decoders, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)
    with pytest.raises(ImportError, match=r"torchvision.io's decoders, which this torchvision lacks .*pip install"):
        image_decoders.decode_jpeg(encoded(RGB, "JPEG"))


def test_torchcodec_gives_torchvisions_pixels() -> None:
    pytest.importorskip("torchcodec.decoders")
    image_decoders._decoders.cache_clear()
    tv = image_decoders._decoders()
    tc = image_decoders._torchcodec_decoders(ImportError("not asked"))
    jpegs = [encoded(np.roll(RGB, i, axis=1), "JPEG") for i in range(3)]
    for a, b in zip(tv.jpeg(jpegs, "cpu"), tc.jpeg(jpegs, "cpu"), strict=True):
        assert torch.equal(a, b)
    for array in (RGB, GREY16):
        for keep_depth in (False, True):
            a, b = tv.png(encoded(array, "PNG"), keep_depth), tc.png(encoded(array, "PNG"), keep_depth)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert (a.int() - b.int()).abs().max() <= (0 if keep_depth or array is RGB else 1)  # 16 -> 8 bits


def test_the_device_stage_runs_on_torchcodec_alone(without_torchvision_decoders) -> None:
    pytest.importorskip("torchcodec.decoders")
    pipeline = DevicePipeline(make_augment("center", 8), device="cpu", flip=False)
    batch = types.SimpleNamespace(
        images=[encoded(RGB, "JPEG"), encoded(RGB, "PNG")], keys=["a", "b"], labels=torch.tensor([0, 1])
    )
    images, labels = pipeline(batch)
    assert image_decoders.decoder_backend() == "torchcodec"
    assert images.shape == (2, 3, 8, 8) and labels.tolist() == [0, 1]
