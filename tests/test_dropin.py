"""CropMix as a drop-in for torchvision's RandomResizedCrop: the arguments it takes as v2 takes them."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms import v2

from cropmix import CropMix


@pytest.mark.parametrize(
    "given,mode",
    [(2, v2.InterpolationMode.BILINEAR), (3, v2.InterpolationMode.BICUBIC), (0, v2.InterpolationMode.NEAREST),
     ("bilinear", v2.InterpolationMode.BILINEAR), ("BICUBIC", v2.InterpolationMode.BICUBIC),
     (v2.InterpolationMode.NEAREST_EXACT, v2.InterpolationMode.NEAREST_EXACT)],
)  # fmt: skip
def test_interpolation_as_torchvision_takes_it(given, mode):
    transform = CropMix(16, interpolation=given)
    assert transform.config.interpolation == mode
    image = torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8)
    assert transform(image).shape == (3, 16, 16)


@pytest.mark.parametrize("bad", [1, "lanczos", "bilnear", 2.0, True])
def test_interpolation_cropmix_cannot_run_is_named(bad):
    with pytest.raises(ValueError, match=r"interpolation must be one of .*BILINEAR.*got"):
        CropMix(16, interpolation=bad)


def test_both_transforms_take_the_same_arguments_in_the_same_order():
    import inspect

    from cropmix import BatchCropMix

    def arguments(cls):
        return [(p.name, p.kind) for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"]

    assert arguments(BatchCropMix)[: len(arguments(CropMix))] == arguments(CropMix)
    assert [name for name, kind in arguments(CropMix) if kind == inspect.Parameter.POSITIONAL_OR_KEYWORD] == [
        "size", "scale", "ratio",
    ]  # fmt: skip  # as RandomResizedCrop: size, scale, ratio, then keywords
    assert repr(BatchCropMix(16, interpolation=3)).count("interpolation=<InterpolationMode.BICUBIC") == 1


def test_the_defaults_stand_alike_in_every_signature_and_are_the_imagenet_preset():
    """The defaults are written out in three signatures for readable docs; this keeps them one fact."""
    import inspect

    from cropmix import BatchCropMix
    from cropmix.transforms.config import PRESETS, make_config

    def defaults(function):
        parameters = inspect.signature(function).parameters.values()
        return {p.name: p.default for p in parameters if p.default is not inspect.Parameter.empty}

    shared = defaults(make_config)
    assert {k: v for k, v in defaults(CropMix.__init__).items() if k != "generator"} == shared
    assert {k: v for k, v in defaults(BatchCropMix.__init__).items() if k not in ("generator", "kernel")} == shared
    imagenet = {k: v for k, v in PRESETS["imagenet"].items() if k != "size"}
    assert {k: shared[k] for k in imagenet} == imagenet


def test_pil_images_in_a_batch_are_told_to_convert_first():
    import PIL.Image

    from cropmix import BatchCropMix, CropMixCollate

    samples = [(PIL.Image.new("RGB", (12, 10)), 0), (PIL.Image.new("RGB", (12, 10)), 1)]
    with pytest.raises(TypeError, match=r"got Image \(convert PIL images with torchvision.transforms.v2.PILToTensor"):
        CropMixCollate(BatchCropMix(8))(samples)
