"""Statistical tests of the CropMix parameter sampler: every distribution docs/method.md states.

Each test draws tens of thousands of seeded samples, so a wrong distribution
fails by a wide margin while the right one passes with p-values far from the
thresholds (checked with several seeds while writing them).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from cropmix.transforms import make_config, sample_batch
from cropmix.transforms.mixops import op_index

B = 20_000
P_MIN = 1e-3


def draw(size=32, heights=2000, widths=2000, colour=3, channels=3, seed=0, batch=B, **kwargs):
    config = make_config(size, **kwargs)
    g = torch.Generator().manual_seed(seed)
    return sample_batch(config, np.full(batch, heights), np.full(batch, widths), colour, channels, g)


def area_fraction(crops: np.ndarray, height: int, width: int) -> np.ndarray:
    return crops[..., 2] * crops[..., 3] / (height * width)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_each_crop_is_uniform_in_its_own_band(n):
    # Up to scale 0.5 no aspect ratio in (3/4, 4/3) is rejected, so areas are exactly uniform per band.
    params = draw(scale=(0.05, 0.5), num_crops=n)
    bands = np.linspace(0.05, 0.5, n + 1)
    fractions = area_fraction(params.crops, 2000, 2000)
    for i in range(n):
        lo, hi = bands[i], bands[i + 1]
        x = fractions[:, i]
        assert x.min() >= lo - 2e-3 and x.max() <= hi + 2e-3
        assert stats.kstest(x, stats.uniform(lo, hi - lo).cdf).pvalue > P_MIN
        # and not uniform over the whole range
        assert stats.kstest(x, stats.uniform(0.05, 0.45).cdf).pvalue < 1e-10


def test_paper_imagenet_setting_keeps_crops_in_their_bands():
    params = draw(scale=(0.01, 1.0), num_crops=(2, 3, 4), heights=1000, widths=1000)
    fractions = area_fraction(params.crops, 1000, 1000)
    outside = 0
    for n in (2, 3, 4):
        rows = params.n == n
        bands = np.linspace(0.01, 1.0, n + 1)
        for i in range(n):
            x = fractions[rows, i]
            outside += np.sum((x < bands[i] - 5e-3) | (x > bands[i + 1] + 5e-3))
    assert outside <= 0.001 * B  # only torchvision's fallback after 10 misses may leave a band


def test_aspect_ratios_are_log_uniform():
    params = draw(scale=(0.1, 0.3), num_crops=2, ratio=(0.5, 2.0))
    crops = params.crops[:, :2].reshape(-1, 4)
    log_ratio = np.log(crops[:, 3] / crops[:, 2])
    lo, hi = math.log(0.5), math.log(2.0)
    assert log_ratio.min() >= lo - 0.01 and log_ratio.max() <= hi + 0.01
    assert stats.kstest(log_ratio, stats.uniform(lo, hi - lo).cdf).pvalue > P_MIN
    assert stats.kstest(np.exp(log_ratio), stats.uniform(0.5, 1.5).cdf).pvalue < 1e-10


def test_num_crops_is_drawn_per_image_uniformly():
    params = draw(num_crops=(2, 3, 4))
    counts = np.array([(params.n == n).sum() for n in (2, 3, 4)])
    assert stats.chisquare(counts).pvalue > P_MIN
    assert np.all(np.abs(counts / B - 1 / 3) < 0.02)
    # the authors' defect: N fixed for the whole process; here consecutive images differ
    assert (np.diff(params.n) != 0).mean() > 0.6


def test_order_is_a_permutation_of_the_crops():
    params = draw(num_crops=(2, 3, 4), batch=2000)
    for n, order in zip(params.n, params.order, strict=False):
        assert sorted(order[:n]) == list(range(n))
    first = params.order[params.n == 3, 0]
    assert stats.chisquare(np.bincount(first, minlength=3)).pvalue > P_MIN


def _lower_half_cdf(x: np.ndarray, a: float) -> np.ndarray:
    # CDF of lam given lam < 1/2 for lam ~ Beta(a, a): 2 F(x). Testing the lower half (and the
    # fair split between halves) avoids values within 1e-16 of 1, which double rounds to 1.
    return 2 * stats.beta(a, a).cdf(x)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_mixup_lambdas_follow_beta_alpha_over_n(n):
    alpha = 0.4
    params = draw(num_crops=n, alpha=alpha, batch=8000)
    lam = params.lam[:, : n - 1].ravel()
    lower = lam[lam < 0.5]
    assert stats.binomtest(len(lower), len(lam)).pvalue > P_MIN
    assert stats.kstest(lower, lambda x: _lower_half_cdf(x, alpha / n)).pvalue > P_MIN
    assert stats.kstest(lower, lambda x: _lower_half_cdf(x, alpha)).pvalue < 1e-10


def test_mixup_lambdas_for_a_large_alpha():
    params = draw(num_crops=2, alpha=6.0, batch=8000)
    lam = params.lam[:, 0]
    assert stats.kstest(lam, stats.beta(3.0, 3.0).cdf).pvalue > P_MIN


def test_cutmix_lambda_is_uniform_and_boxes_have_the_stated_area_on_the_right_axes():
    height, width = 16, 64
    params = draw(size=(height, width), num_crops=2, mix="cutmix")
    lam, box = params.lam[:, 0], params.box[:, 0]
    assert (params.op == op_index("cutmix")).all()
    assert stats.kstest(lam, stats.uniform(0, 1).cdf).pvalue > P_MIN
    assert np.all(box[:, 0] >= 0) and np.all(box[:, 0] + box[:, 2] <= height)
    assert np.all(box[:, 1] >= 0) and np.all(box[:, 1] + box[:, 3] <= width)
    side = np.sqrt(1 - lam)
    inside = (box[:, 2] == np.rint(height * side)) & (box[:, 3] == np.rint(width * side))
    assert inside.mean() > 0.1
    # unclipped boxes: the height follows the output height and the width the output width
    assert np.all(np.abs(box[inside, 2] - height * side[inside]) <= 0.5)
    assert np.all(np.abs(box[inside, 3] - width * side[inside]) <= 0.5)
    # paste direction is a fair coin
    assert abs(params.pasted_new[:, 0].mean() - 0.5) < 0.02


def test_cutmix_box_area_fraction_before_clipping_is_uniform():
    params = draw(size=400, num_crops=2, mix="cutmix")
    box = params.box[:, 0]
    unclipped = (box[:, 0] > 0) & (box[:, 1] > 0) & (box[:, 0] + box[:, 2] < 400) & (box[:, 1] + box[:, 3] < 400)
    # 1 - lam is uniform; among unclipped boxes small ones are over-represented, so compare
    # the area to 1 - lam directly instead.
    area = box[unclipped, 2] * box[unclipped, 3] / 400**2
    assert np.all(np.abs(area - (1 - params.lam[unclipped, 0])) < 0.01)


def test_channel_permutations_are_uniform_and_keep_alpha():
    params = draw(num_crops=2, batch=12_000)
    perms = [tuple(p) for p in params.channel_perm[:, 0]]
    counts = np.array([perms.count(p) for p in set(perms)])
    assert len(counts) == 6
    assert stats.chisquare(counts).pvalue > P_MIN
    rgba = draw(num_crops=2, colour=3, channels=4, batch=2000)
    assert np.all(rgba.channel_perm[:, 0, 3] == 3)
    assert draw(num_crops=2, colour=1, channels=1, batch=10).channel_perm is None
    assert draw(num_crops=2, channel_permute=False, batch=10).channel_perm is None


def test_permuted_view_is_the_lighter_under_mixup_and_the_pasted_under_cutmix():
    mixup = draw(num_crops=2, batch=5000)
    assert np.array_equal(mixup.permuted_new[:, 0], mixup.lam[:, 0] > 0.5)
    cutmix = draw(num_crops=2, mix="cutmix", batch=5000)
    assert np.array_equal(cutmix.permuted_new[:, 0], cutmix.pasted_new[:, 0])


def test_p_falls_back_to_one_rrc_over_the_whole_scale_range():
    params = draw(p=0.3, num_crops=3, scale=(0.05, 0.5))
    single = params.n == 1
    assert abs(single.mean() - 0.7) < 0.02
    x = area_fraction(params.crops[single, 0], 2000, 2000)
    assert stats.kstest(x, stats.uniform(0.05, 0.45).cdf).pvalue > P_MIN


def test_mix_sequence_is_drawn_per_image():
    params = draw(mix=("mixup", "cutmix"), num_crops=3, batch=4000)
    per_image = params.op[:, 0] == op_index("cutmix")
    assert abs(per_image.mean() - 0.5) < 0.03
    assert np.array_equal(params.op[:, 0], params.op[:, 1])


def test_same_generator_seed_gives_same_params_and_global_rng_is_untouched():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a = draw(seed=7, batch=50)
    b = draw(seed=7, batch=50)
    assert torch.equal(before, torch.get_rng_state())
    assert np.array_equal(a.crops, b.crops) and np.array_equal(a.lam, b.lam)
    c = draw(seed=8, batch=50)
    assert not np.array_equal(a.crops, c.crops)


def test_tiny_images_fall_back_to_valid_boxes():
    for h, w in [(1, 1), (1, 500), (500, 1), (2, 3)]:
        params = draw(heights=h, widths=w, batch=200)
        crops = params.crops[:, :2]
        assert np.all(crops[..., 2] >= 1) and np.all(crops[..., 3] >= 1)
        assert np.all(crops[..., 0] + crops[..., 2] <= h) and np.all(crops[..., 1] + crops[..., 3] <= w)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(scale=(0.0, 1.0)), "scale"),
        (dict(scale=(0.8, 0.2)), "scale"),
        (dict(scale=(0.5, 1.2)), "scale"),
        (dict(ratio=(4 / 3, 3 / 4)), "ratio"),
        (dict(ratio=(0.0, 1.0)), "ratio"),
        (dict(num_crops=0), "num_crops"),
        (dict(num_crops=(2, 0)), "num_crops"),
        (dict(num_crops=()), "num_crops"),
        (dict(alpha=0.0), "alpha"),
        (dict(alpha=-1.0), "alpha"),
        (dict(mix="blend"), "mix"),
        (dict(mix=("mixup", "fog")), "mix"),
        (dict(p=1.5), "p"),
        (dict(p=-0.1), "p"),
        (dict(size=0), "size"),
        (dict(size=(32, 0)), "size"),
        (dict(size="32"), "size"),
        (dict(channel_permute="yes"), "channel_permute"),
    ],
)
def test_bad_arguments_name_the_argument_and_value(kwargs, name):
    kwargs = {"size": 32, **kwargs}
    with pytest.raises((ValueError, TypeError)) as info:
        make_config(**kwargs)
    message = str(info.value)
    assert message.startswith(name)
    assert repr(kwargs[name])[:3] in message or str(kwargs[name])[:3] in message
