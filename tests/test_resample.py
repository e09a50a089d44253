"""The batched kernel's separable resampling against torchvision's own `resized_crop`.

On the photos shipped in examples/photos, many boxes (enlarged, shrunk, thin, one pixel), both
filters, with and without antialiasing: a float image must come out as torchvision's float
resize up to float rounding, a uint8 image within torchvision's own fixed-point rounding
(>= 50 dB per crop). The two contraction methods (dense bmm for GPUs, gather for CPUs) and half
precision must agree with it too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from helpers import psnr
from torchvision.transforms.v2 import InterpolationMode

from cropmix.transforms.functional.resample import Resize, axis_taps, resample_mixup
from cropmix.transforms.functional.resample import resample_crops as resample_views


def resample_crops(*args, **kwargs) -> torch.Tensor:
    """The views in (B, M, C, h, w) order whichever order the passes left them in."""
    views, transposed = resample_views(*args, **kwargs)
    return views.transpose(-1, -2) if transposed else views


PHOTOS = sorted((Path(__file__).resolve().parents[1] / "examples" / "photos").glob("*.jpg"))
MODES = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


def photo(path: Path) -> torch.Tensor:
    return torch.from_numpy(np.array(PIL.Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()


def boxes_for(height: int, width: int, seed: int, count: int = 8) -> torch.Tensor:
    """Random boxes plus the corner cases: one pixel, a thin strip, the whole image."""
    g = torch.Generator().manual_seed(seed)
    boxes = [[0, 0, 1, 1], [height // 3, 0, 2, width], [0, 0, height, width]]
    while len(boxes) < count:
        h = int(torch.randint(1, height + 1, (), generator=g))
        w = int(torch.randint(1, width + 1, (), generator=g))
        top = int(torch.randint(0, height - h + 1, (), generator=g))
        left = int(torch.randint(0, width - w + 1, (), generator=g))
        boxes.append([top, left, h, w])
    return torch.tensor(boxes)


def test_the_shipped_photos_are_there():
    assert len(PHOTOS) >= 4


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("antialias", [True, False])
@pytest.mark.parametrize("size", [(48, 48), (40, 17)])
def test_single_crops_match_torchvision(mode, antialias, size):
    worst_uint8, worst_float = math.inf, 0.0
    for seed, path in enumerate(PHOTOS):
        image = photo(path)
        boxes = boxes_for(*image.shape[1:], seed)
        out = resample_crops(image[None], boxes[None], Resize(size, mode, antialias))[0]  # (M, C, h, w) float32
        out_uint8 = out.round().clamp(0, 255).to(torch.uint8)
        for k, (top, left, h, w) in enumerate(boxes.tolist()):
            args = (top, left, h, w, list(size))
            ref = TF.resized_crop(image, *args, interpolation=MODES[mode], antialias=antialias)
            ref_float = TF.resized_crop(image.float(), *args, interpolation=MODES[mode], antialias=antialias)
            worst_uint8 = min(worst_uint8, psnr(out_uint8[k], ref))
            worst_float = max(worst_float, (out[k] - ref_float).abs().max().item())
    assert worst_float < 1e-2  # the same weights; torch computes source coordinates in float32
    assert worst_uint8 >= 50, worst_uint8


@pytest.mark.parametrize("mode", MODES)
def test_dense_and_gather_agree_and_half_precision_holds(mode):
    images = torch.stack([photo(p)[:, :300, :400] for p in PHOTOS])
    boxes = torch.stack([boxes_for(300, 400, seed, count=3) for seed in range(len(PHOTOS))])
    gather = resample_crops(images, boxes, Resize((56, 56), mode, method="gather"))
    dense = resample_crops(images, boxes, Resize((56, 56), mode, method="dense"))
    assert (gather - dense).abs().max() < 1e-2
    half = resample_crops(images, boxes, Resize((56, 56), mode, work_dtype=torch.float16, method="dense"))
    assert half.dtype == torch.float16
    assert psnr(half.float().round().clamp(0, 255), gather.round().clamp(0, 255)) >= 50


@pytest.mark.parametrize("size", [(40, 24), (24, 40)])  # one size per pass order
@pytest.mark.parametrize("method", ["gather", "dense"])
def test_mixup_folded_into_the_column_pass_is_the_mix_of_the_views(method, size):
    images = torch.stack([photo(p)[:, :120, :150] for p in PHOTOS])
    B, C, M = len(PHOTOS), 3, 3
    boxes = torch.stack([boxes_for(120, 150, seed, count=M) for seed in range(B)])
    g = torch.Generator().manual_seed(0)
    weight = torch.rand(B, M, generator=g)
    weight /= weight.sum(1, keepdim=True)
    source = torch.stack([torch.randperm(C, generator=g) for _ in range(B * M)]).view(B, M, C)
    folded, transposed = resample_mixup(images, boxes, weight, source, Resize(size, "bicubic", method=method))
    folded = folded.transpose(-1, -2) if transposed else folded
    views = resample_crops(images, boxes, Resize(size, "bicubic", method="gather"))  # (B, M, C, h, w)
    expected = torch.zeros(B, C, *size)
    for b in range(B):
        for m in range(M):
            expected[b] += weight[b, m] * views[b, m, source[b, m]]
    assert folded.shape == (B, C, *size)
    assert (folded - expected).abs().max() < 1e-2


def test_taps_sum_to_one_and_stay_inside_the_crop():
    start, length = torch.tensor([0, 5, 17]), torch.tensor([1, 40, 300])
    for mode in MODES:
        for antialias in (True, False):
            idx, weight = axis_taps(start, length, 24, mode, antialias, max_length=300)
            assert torch.allclose(weight.sum(-1), torch.ones(3, 24, dtype=weight.dtype))
            assert (idx >= start[:, None, None]).all() and (idx < (start + length)[:, None, None]).all()


def test_the_pass_order_does_not_change_the_result():
    image = photo(PHOTOS[0])[:, :200, :120]
    boxes = torch.tensor([[[10, 5, 150, 100]]])
    # 30x60 from 200x120 resizes columns first, 60x30 rows first: each must still be torchvision's.
    for size in ((30, 60), (60, 30)):
        out = resample_crops(image[None], boxes, Resize(size, "bilinear"))[0, 0]
        ref = TF.resized_crop(image.float(), 10, 5, 150, 100, list(size), antialias=True)
        assert (out - ref).abs().max() < 1e-3


def test_bad_method_is_named():
    with pytest.raises(ValueError, match="method must be 'dense' or 'gather'"):
        resample_views(torch.zeros(1, 3, 8, 8), torch.tensor([[[0, 0, 8, 8]]]), Resize((4, 4), method="sparse"))


def test_bad_mode_is_named():
    with pytest.raises(ValueError, match="mode must be one of \\['bilinear', 'bicubic'\\], got 'nearest'"):
        Resize((4, 4), mode="nearest")
