"""frost with the reference's photographs, read from an installed `imagecorruptions` package (here a stand-in
package holding five small generated photographs), and the procedural texture as the fallback."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from cropmix.evaluate import CorruptionOptions, corruption_accuracy
from cropmix.evaluate import corruption_frost as frost_module
from cropmix.evaluate import corruptions as C

SHAPES = ((120, 140), (95, 130), (100, 100), (110, 150), (130, 121))  # rows, columns of frost1..frost5


def _photo(index: int) -> np.ndarray:
    rows, cols = SHAPES[index]
    rng = np.random.default_rng(index)
    return rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    """A stand-in `imagecorruptions` package on sys.path whose frost/ folder holds the five photographs
    (PNG for 1-3, as in the package, with an alpha channel that the reference drops; JPEG-named 4-5 as PNG
    bytes too, so the test knows every pixel)."""
    folder = tmp_path / "site" / "imagecorruptions" / "frost"
    folder.mkdir(parents=True)
    (folder.parent / "__init__.py").write_text("raise ImportError('importing the package is not needed')\n")
    for index, name in enumerate(frost_module.FROST_FILES):
        rgba = np.concatenate([_photo(index), np.full((*SHAPES[index], 1), 7, np.uint8)], axis=-1)
        Image.fromarray(rgba).save(folder / name, format="PNG")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "imagecorruptions", raising=False)
    frost_module._photos.cache_clear()
    yield folder
    frost_module._photos.cache_clear()


def _scripted_draws(monkeypatch, values: list[int]) -> list[tuple]:
    """Every randint the corruption asks for answered from `values`, in order; the calls are recorded."""
    calls = []

    def draw(kind, shape, generator, like, **kw):
        calls.append((kind, kw.get("low"), kw.get("high")))
        return torch.tensor([values[len(calls) - 1]])

    monkeypatch.setattr(C, "_draw", draw)
    return calls


def test_frost_source_is_the_photographs_when_installed(installed) -> None:
    assert frost_module.photo_folder() == installed
    assert C.frost_source() == "imagecorruptions"


def test_frost_source_falls_back_when_a_photograph_is_missing(installed) -> None:
    (installed / "frost5.jpg").unlink()
    assert frost_module.photo_folder() is None and C.frost_source() == "procedural"
    out = C.frost(torch.rand(1, 3, 32, 32), 1, torch.Generator().manual_seed(0))
    assert out.shape == (1, 3, 32, 32)
    with pytest.raises(ModuleNotFoundError, match="imagecorruptions"):
        C.frost(torch.rand(1, 3, 32, 32), 1, source="imagecorruptions")


def test_imagenet_table_crops_the_full_photograph_at_the_drawn_offsets(installed, monkeypatch) -> None:
    images = torch.rand(2, 3, 72, 80, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls = _scripted_draws(monkeypatch, [3, 5, 9, 0, 47, 59])
    out = C.frost(images, 2, torch.Generator())
    # the reference's draws: the photograph among the first five, then randint(0, rows - h), randint(0, cols - w)
    assert calls == [("randint", 0, 5), ("randint", 0, 110 - 72), ("randint", 0, 150 - 80)] + [
        ("randint", 0, 5), ("randint", 0, 120 - 72), ("randint", 0, 140 - 80)
    ]  # fmt: skip
    image_weight, frost_weight = C.severity_constants("frost", images, 2)
    for image, got, (index, top, left) in zip(images, out, ((3, 5, 9), (0, 47, 59)), strict=True):
        crop = torch.from_numpy(_photo(index)[top : top + 72, left : left + 80]).permute(2, 0, 1).double() / 255
        assert torch.allclose(got, (image_weight * image + frost_weight * crop).clamp(0, 1))


def test_cifar_table_shrinks_the_photograph_by_five_as_opencv_does(installed, monkeypatch) -> None:
    images = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    calls = _scripted_draws(monkeypatch, [1, 2, 3])
    out = C.frost(images, 4, torch.Generator())
    shrunk = _photo(1)[2::5, 2::5]  # cv2.resize(fx=0.2, INTER_LINEAR) samples every fifth pixel from the third
    assert shrunk.shape[:2] == (round(95 / 5), round(130 / 5))
    assert calls[1:] == [("randint", 0, shrunk.shape[0] - 16), ("randint", 0, shrunk.shape[1] - 16)]
    image_weight, frost_weight = C.severity_constants("frost", images, 4)
    crop = torch.from_numpy(shrunk[2:18, 3:19].copy()).permute(2, 0, 1).double() / 255
    assert torch.allclose(out[0], (image_weight * images[0] + frost_weight * crop).clamp(0, 1))


def test_photographs_not_larger_than_the_image_are_enlarged(installed) -> None:
    images = torch.rand(2, 1, 160, 160, generator=torch.Generator().manual_seed(0))
    out = C.frost(images, 5, torch.Generator().manual_seed(1))
    assert out.shape == images.shape and torch.isfinite(out).all()


def test_the_procedural_texture_can_be_asked_for_and_a_bad_source_is_refused(installed) -> None:
    images = torch.rand(1, 3, 32, 32)
    a = C.frost(images, 3, torch.Generator().manual_seed(0), source="procedural")
    b = C.frost(images, 3, torch.Generator().manual_seed(0), source="imagecorruptions")
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="source"):
        C.frost(images, 3, source="photos")


def test_corruption_accuracy_reports_the_frost_source(installed) -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 2))
    loader = [(torch.rand(3, 3, 32, 32), torch.zeros(3, dtype=torch.long))]
    result = corruption_accuracy(model, loader, "cpu", CorruptionOptions(("frost",), (1,)), progress=False)
    assert result["frost_source"] == "imagecorruptions"


def test_an_oversized_photograph_is_refused_before_it_is_decoded(installed) -> None:
    big = frost_module.MAX_PHOTO_SIDE + 1
    Image.new("RGB", (big, 8)).save(installed / "frost2.png", format="PNG")
    with pytest.raises(ValueError, match="frost2.png"):
        C.frost(torch.rand(1, 3, 32, 32), 1, source="imagecorruptions")
