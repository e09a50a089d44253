"""The per-image fast paths agree with their references.

`sample_one` must draw exactly what `sample_batch` draws (the statistical tests in
test_params.py run on `sample_batch`), and the PIL kernels for small images must
give the documented formula on PIL-resized crops.
"""

from __future__ import annotations

import warnings

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms.v2.functional as F
from helpers import assert_same_params, mix_views, textured_image

from cropmix import CropMix
from cropmix.transforms import make_config, sample_batch, sample_one
from cropmix.transforms.functional import mixup_slots, mixup_weights, render_pil_small, select_kernel
from cropmix.transforms.sampling import logistic, logistic_array


def renders_with_pil(image, params, interpolation, antialias) -> bool:
    return select_kernel(image, params, interpolation, antialias) is render_pil_small


CONFIGS = {
    "cifar": make_config(32, scale=(0.5, 1.0), num_crops=2),
    "mixed": make_config((24, 40), num_crops=(1, 2, 3, 4), mix=("mixup", "cutmix"), p=0.7),
    "fallback": make_config(16, scale=(0.9, 1.0), ratio=(3.0, 4.0)),  # often no valid box on square images
    "cutmix": make_config(8, num_crops=3, mix="cutmix", channel_permute=False),
}
IMAGES = [(32, 32, 3, 3), (1, 500, 4, 3), (120, 160, 1, 1), (7, 3, 5, 5)]  # height, width, channels, colour


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("height, width, channels, colour", IMAGES)
def test_sample_one_draws_what_sample_batch_draws(name, height, width, channels, colour):
    config = CONFIGS[name]
    for seed in range(60):
        g_one, g_batch = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        one = sample_one(config, height, width, colour, channels, g_one)
        batch = sample_batch(config, [height], [width], colour, channels, g_batch)
        assert_same_params(one, batch.image(0, (height, width), config.size))
        assert torch.equal(g_one.get_state(), g_batch.get_state())  # the same number of draws


def test_a_batch_is_the_images_drawn_one_after_another():
    config = CONFIGS["mixed"]
    heights, widths = [30 + 7 * i for i in range(25)], [90 - 2 * i for i in range(25)]
    batch = sample_batch(config, heights, widths, 3, 3, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    for i, (h, w) in enumerate(zip(heights, widths, strict=False)):
        assert_same_params(sample_one(config, h, w, 3, 3, g), batch.image(i, (h, w), config.size))


def pil_image(height: int, width: int, mode: str = "RGB", seed: int = 0) -> PIL.Image.Image:
    array = textured_image(height, width, 3, seed).permute(1, 2, 0).numpy()
    return PIL.Image.fromarray(np.ascontiguousarray(array), "RGB").convert(mode)


def pil_reference(image: PIL.Image.Image, params) -> np.ndarray:
    """docs/method.md's algorithm in float64 on crops resized by PIL (as torchvision resizes PIL images), (h, w, C)."""
    h, w = params.output_size
    views = []
    for i in params.order:
        c = params.crops[i]
        view = F.resized_crop(image, c.top, c.left, c.height, c.width, [h, w], antialias=True)
        views.append(torch.from_numpy(np.asarray(view, dtype=np.float64).reshape(h, w, -1)).permute(2, 0, 1))
    return mix_views(views, params).permute(1, 2, 0).numpy()


@pytest.mark.parametrize("mode", ["RGB", "L"])
@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
@pytest.mark.parametrize("num_crops", [2, (3, 4)])
def test_small_pil_images_give_the_formula_on_pil_resized_crops(mode, mix, num_crops):
    image = pil_image(40, 56, mode)
    t = CropMix((24, 20), scale=(0.05, 1.0), num_crops=num_crops, mix=mix)
    torch.manual_seed(1)
    for _ in range(60):
        params = t.make_params([image])
        assert renders_with_pil(image, params, t.interpolation, t.antialias)
        out = t.transform(image, params)
        assert out.mode == mode and out.size == (20, 24)
        got = np.asarray(out, dtype=np.float64).reshape(24, 20, -1)
        assert np.abs(got - pil_reference(image, params)).max() <= 1.0


def test_small_pil_single_crop_is_torchvision_resized_crop_bit_for_bit():
    image = pil_image(32, 32)
    t = CropMix(32, scale=(0.2, 1.0), num_crops=1)
    for seed in range(20):
        torch.manual_seed(seed)
        params = t.make_params([image])
        (crop,) = params.crops
        expected = F.resized_crop(image, crop.top, crop.left, crop.height, crop.width, [32, 32], antialias=True)
        assert t.transform(image, params).tobytes() == expected.tobytes()


def test_small_pil_path_agrees_with_the_tensor_path():
    """PIL's and torch's antialiased resampling differ by rounding: the two paths stay >= 40 dB apart."""
    image = pil_image(32, 32)
    tensor = F.pil_to_tensor(image)
    t = CropMix(32, scale=(0.3, 1.0), num_crops=(2, 3), mix=("mixup", "cutmix"))
    torch.manual_seed(2)
    errors = []
    for _ in range(50):
        params = t.make_params([image])
        a = np.asarray(t.transform(image, params), dtype=np.float64)
        b = t.transform(tensor, params).permute(1, 2, 0).numpy().astype(np.float64)
        errors.append(((a - b) ** 2).mean())
    psnr = 10 * np.log10(255**2 / max(np.mean(errors), 1e-12))
    assert psnr >= 40.0, psnr


def test_small_pil_cutmix_survives_empty_and_full_cut_boxes():
    image = pil_image(8, 8)
    t = CropMix(8, mix="cutmix", num_crops=(2, 3, 4), scale=(0.1, 1.0))
    torch.manual_seed(3)
    sizes = set()
    for _ in range(400):
        params = t.make_params([image])
        out = t.transform(image, params)
        sizes.update(step.box[2] * step.box[3] for step in params.steps)
        assert np.abs(np.asarray(out, dtype=np.float64) - pil_reference(image, params)).max() == 0
    assert 0 in sizes and 64 in sizes


def test_large_pil_images_take_the_tensor_path():
    image = pil_image(200, 300)
    t = CropMix(224)
    assert not renders_with_pil(image, t.make_params([image]), t.interpolation, t.antialias)


@pytest.mark.parametrize("channels, colour", [(3, 3), (4, 3), (1, 1)])
def test_batch_mixup_slots_are_the_per_image_closed_form(channels, colour):
    config = make_config(16, num_crops=(1, 2, 3, 4), p=0.9)
    batch = sample_batch(config, [40] * 200, [50] * 200, colour, channels, torch.Generator().manual_seed(0))
    slot_weight, slot_source = mixup_slots(batch, channels)
    for i in range(len(batch)):
        params = batch.image(i, (40, 50), config.size)
        weight, source = mixup_weights(params, channels)
        unused = [m for m in range(batch.order.shape[1]) if m not in params.order]
        for k, slot in enumerate(params.order):
            assert slot_weight[i, slot] == weight[k] and list(slot_source[i, slot]) == source[k], i
        assert all(slot_weight[i, m] == 0 for m in unused), i


def test_scalar_and_array_logistic_agree_and_never_overflow():
    x = np.concatenate([np.linspace(-800, 800, 4001), [-np.inf, np.inf, 708.9, 709.0, 709.5, 1e308]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        array = logistic_array(x)
        scalar = np.array([logistic(float(v)) for v in x])  # math.exp raises OverflowError past ~709.78
    # numpy's and libm's exp may differ in the last bit, as sample_one and sample_batch may
    assert np.allclose(array, scalar, rtol=1e-14, atol=0) and np.all((array >= 0) & (array <= 1))
    assert array[-1] == scalar[-1] == 0.0 and array[-6] == scalar[-6] == 1.0
    assert np.isnan(logistic_array(np.array([np.nan])))[0]  # a rejected Gamma draw stays visible
