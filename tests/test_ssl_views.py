"""Self-supervised pre-training views: MoCo's two views (CropMix query), colour jitter, MAE's inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from helpers import synthetic_images

from cropmix.ssl.views import (
    MAEView,
    TwoViews,
    _hue_shift,
    colour_jitter,
    cropmix_query_config,
    paste_boxes,
)
from cropmix.transforms import render_batch, sample_batch

torch.set_num_threads(1)


@pytest.mark.parametrize("query", ["standard", "cropmix"])
def test_two_views_shape_range(query):
    x, _ = synthetic_images(8)
    q, k = TwoViews(query, size=32)(x, torch.Generator().manual_seed(0))
    assert q.shape == k.shape == (8, 3, 32, 32)
    assert q.dtype == torch.float32 and float(q.min()) >= 0.0 and float(q.max()) <= 1.0 + 1e-5
    assert not torch.allclose(q, k)


def test_query_crops_come_from_the_two_bands_and_large_is_pasted_into_small():
    config = cropmix_query_config(32)
    params = sample_batch(config, [64] * 200, [64] * 200, 3, 3, torch.Generator().manual_seed(1))
    area = params.crops[:, :, 2] * params.crops[:, :, 3] / (64 * 64)
    tol = 0.05  # rounding of crop sides
    assert np.all(area[:, 0] >= 0.2 - tol) and np.all(area[:, 0] <= 0.6 + tol)
    assert np.all(area[:, 1] >= 0.6 - tol) and np.all(area[:, 1] <= 1.0 + tol)
    small, large = torch.zeros(200, 3, 32, 32), torch.ones(200, 3, 32, 32)
    out = paste_boxes(small, large, params)
    for i in range(200):
        top, left, h, w = params.box[i, 0]
        assert bool((out[i, :, top : top + h, left : left + w] == 1.0).all())
        assert float(out[i].sum()) == 3 * h * w  # nothing outside the box
    # box area is (1 - lam) of the output before clipping, lam ~ U(0, 1): mean pasted area <= 1/2
    assert 0.25 < float(out.mean()) < 0.5


def test_hue_shift_matches_torchvision():
    x = torch.rand(4, 3, 8, 8)
    shifts = torch.tensor([0.0, 0.1, -0.07, 0.3]).view(4, 1, 1, 1)
    ours = _hue_shift(x, shifts)
    for i in range(4):
        torch.testing.assert_close(ours[i], TF.adjust_hue(x[i], float(shifts[i])), atol=1e-4, rtol=0)


def test_colour_jitter_without_strength_is_identity():
    x = torch.rand(5, 3, 8, 8)
    torch.testing.assert_close(colour_jitter(x, 0.0, 0.0, 0.0, 0.0), x, atol=1e-5, rtol=0)


def test_colour_jitter_is_torchvisions_per_image_in_its_drawn_order():
    n = 12
    x = torch.rand(n, 3, 8, 8)
    out = colour_jitter(x, generator=torch.Generator().manual_seed(4))
    # The same draws, in colour_jitter's order: four factor vectors, then the order of the jitters.
    g = torch.Generator().manual_seed(4)
    bounds = [(0.6, 1.4), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)]
    factors = [torch.rand(n, generator=g) * (high - low) + low for low, high in bounds]
    order = torch.argsort(torch.rand(n, 4, generator=g), dim=1)
    jitters = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]
    for i in range(n):
        expected = x[i]
        for k in order[i].tolist():
            expected = jitters[k](expected, float(factors[k][i])).clamp(0, 1)
        torch.testing.assert_close(out[i], expected, atol=1e-4, rtol=0)
    assert not torch.equal(out, x)


def test_moco_crops_are_the_drawn_crops_resized_as_torchvision_does():
    x, _ = synthetic_images(6)
    config = cropmix_query_config(32)
    params = sample_batch(config, [x.shape[2]] * 6, [x.shape[3]] * 6, 3, 3, torch.Generator().manual_seed(2))
    for j in range(2):
        out = render_batch(x, params.crop(j), (32, 32))
        for i in range(6):
            top, left, h, w = (int(v) for v in params.crops[i, j])
            ref = TF.resized_crop(x[i], top, left, h, w, [32, 32], antialias=True)
            assert (out[i].int() - ref.int()).abs().max() <= 1
    with pytest.raises(ValueError, match="j must be a crop slot in \\[0, 2\\), got 2"):
        params.crop(2)
    params.n[3] = 1
    with pytest.raises(ValueError, match="crop slot j=1 is unused for 1 images .*the first: \\[3\\]"):
        params.crop(1)


@pytest.mark.parametrize("aug", ["standard", "mae-mixup", "mae-cutmix"])
def test_mae_views(aug):
    x, _ = synthetic_images(4)
    out = MAEView(aug, 32)(x, torch.Generator().manual_seed(0))
    assert out.shape == (4, 3, 32, 32) and float(out.min()) >= 0 and float(out.max()) <= 1


def test_bad_view_names():
    with pytest.raises(ValueError, match="query"):
        TwoViews("mixup")
    with pytest.raises(ValueError, match="aug"):
        MAEView("cutmix")
