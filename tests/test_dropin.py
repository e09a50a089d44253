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
