"""The reference's 8-bit steps: Pillow's rounding in pixelate, the snow layer's rounding, and the storage of
the published sets (uint8 truncation, ImageNet-C's JPEG q85) that on-the-fly corruptions emulate."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cropmix.evaluate import CorruptionOptions, corruption_accuracy
from cropmix.evaluate import corruption_ops as ops
from cropmix.evaluate import corruptions as C

ROOT = Path(__file__).resolve().parents[1]


def _levels(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _pillow_pixelate(image: np.ndarray, c: float) -> np.ndarray:
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((int(w * c), int(h * c)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BOX)).astype(np.int64)


@pytest.mark.parametrize(("h", "w"), [(32, 32), (224, 224), (45, 61)])
@pytest.mark.parametrize("severity", [1, 2, 3, 4, 5])
def test_pixelate_is_pillows_8bit_box_down_and_up_exactly(h, w, severity) -> None:
    levels = _levels(2, h, w, seed=severity)
    c = C.severity_constants("pixelate", levels.float(), severity)
    ours = (C.pixelate(levels.double() / 255, severity) * 255).round().long()
    for image, out in zip(levels, ours, strict=True):
        expected = _pillow_pixelate(image.permute(1, 2, 0).numpy(), c)
        assert np.array_equal(out.permute(1, 2, 0).numpy(), expected)


def test_box_resize_8bit_rounds_each_pass_like_pillow() -> None:
    # 1 x 4 -> 1 x 2 -> 2 x 2: a half after the first pass rounds up, and the second pass sees the rounded level
    levels = torch.tensor([[[[10, 11, 0, 0]]]])
    out = ops.box_resize_8bit(levels, 2, 2)
    expected = np.asarray(Image.fromarray(levels[0, 0].numpy().astype(np.uint8)).resize((2, 2), Image.BOX))
    assert np.array_equal(out[0, 0].numpy(), expected)
    assert out[0, 0, 0].tolist() == [11, 0]


def test_snow_layer_is_rounded_after_the_blur(monkeypatch) -> None:
    # ImageMagick (ClampToQuantum, ScaleQuantumToChar) and imagecorruptions (np.round) round the blurred layer
    monkeypatch.setattr(ops, "motion_blur", lambda flakes, *args: torch.full_like(flakes, 100.6 / 255))
    black = torch.zeros(1, 3, 32, 32, dtype=torch.float64)
    keep = C.severity_constants("snow", black, 1)[-1]
    out = C.snow(black, 1, torch.Generator().manual_seed(0))
    expected = (1 - keep) * 0.5 + 2 * 101 / 255
    assert torch.allclose(out, torch.full_like(out, expected), atol=1e-9)


def test_stored_truncates_to_uint8_as_np_uint8_does() -> None:
    levels = torch.arange(0, 250, dtype=torch.float64).view(1, 1, 10, 25).expand(1, 3, 10, 25)
    for dtype in (torch.float32, torch.float64):
        exact = (levels / 255).to(dtype)
        assert torch.equal(C.stored(exact), exact)  # exact levels stay
    assert torch.allclose(C.stored((levels + 0.7) / 255) * 255, levels)  # truncated, not rounded
    assert C.storage_of(levels) == "uint8"


def test_motion_blur_is_rounded_to_8_bits_like_imagemagicks_output() -> None:
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = C.motion_blur(images, 3, torch.Generator().manual_seed(1)) * 255
    assert torch.allclose(out, out.round(), atol=1e-9) and not torch.allclose(out, images * 255)


def test_stored_imagenet_table_is_a_jpeg_q85_round_trip_of_the_truncated_image() -> None:
    images = (_levels(2, 96, 96).double() + 0.6) / 255
    out = C.stored(images)
    for image, got in zip(images, out, strict=True):
        buffer = io.BytesIO()
        truncated = (image * 255).floor().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(truncated).save(buffer, format="JPEG", quality=85)
        expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue()))).astype(np.float64)
        assert np.array_equal((got * 255).round().permute(1, 2, 0).numpy(), expected)
    assert C.storage_of(images) == "uint8 + JPEG q85"
    with pytest.raises(ValueError, match="storage=False"):
        C.stored(torch.rand(1, 4, 96, 96))
    assert torch.equal(C.stored(images, table="cifar") * 255, (images * 255).floor())


class Recorder(nn.Module):
    """Predicts class 0 and keeps every batch it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return torch.zeros(len(x), 2) + self.anchor


def _loader(size: int) -> list:
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(1))
    return [(images, torch.zeros(4, dtype=torch.long))]


@pytest.mark.parametrize(("size", "storage"), [(32, "uint8"), (72, "uint8 + JPEG q85")])
def test_corruption_accuracy_scores_stored_images_by_default(size, storage) -> None:
    model = Recorder()
    result = corruption_accuracy(
        model, _loader(size), "cpu", CorruptionOptions(("contrast", "fog"), (2,)), progress=False
    )
    assert result["storage"] == storage and "frost_source" not in result
    for batch in model.seen:
        assert torch.allclose(batch * 255, (batch * 255).round(), atol=1e-4)
    reference = C.stored(C.contrast(_loader(size)[0][0], 2))
    assert torch.allclose(model.seen[0], reference, atol=1e-6)


def test_corruption_accuracy_storage_false_scores_the_float_outputs() -> None:
    model = Recorder()
    options = CorruptionOptions(("contrast", "frost"), (2,), storage=False)
    result = corruption_accuracy(model, _loader(32), "cpu", options, progress=False)
    assert result["storage"] == "float" and result["frost_source"] in ("imagecorruptions", "procedural")
    assert torch.allclose(model.seen[0], C.contrast(_loader(32)[0][0], 2))
    with pytest.raises(TypeError, match="storage"):
        CorruptionOptions(("contrast",), storage="yes")


def test_cifar10_benchmark_table_shows_a_missing_rms_as_a_dash(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    script = ROOT / "benchmarks" / "cifar10_accuracy.py"
    spec = importlib.util.spec_from_file_location("cifar10_accuracy_under_test", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    finals = [{m: 1.0 for m in module.METRICS} | {"rms": None}, {m: 3.0 for m in module.METRICS} | {"rms": None}]
    row = module.table({"cropmix": finals}).splitlines()[-1]
    assert row.split(" | ")[4] == "-" and "2.00 ± 1.41" in row
    finals[0]["rms"] = 5.0
    assert "5.00 ± 0.00" in module.table({"cropmix": finals})
