"""BatchCropMix: the same method as CropMix, batched, with per-image parameters."""

from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from helpers import psnr, seeded, texture
from scipy import stats
from torchvision.transforms.v2 import InterpolationMode

from cropmix.transforms import BatchCropMix, CropMix, CropMixCollate, render, render_batch, sample_batch


def reference(images, params, size) -> list[torch.Tensor]:
    """The per-image CropMix kernels (`render` with each image's `CropMixParams`) on the same parameters."""
    return [render(img, params.image(i, tuple(img.shape[1:]), size)) for i, img in enumerate(images)]


@pytest.mark.parametrize(
    "dtype", [torch.uint8, torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int16]
)
def test_shape_dtype_device(dtype, cpu_kernel):
    x = (texture(40, 50, 0)[None].repeat(5, 1, 1, 1) / (1 if not dtype.is_floating_point else 255)).to(dtype)
    out = BatchCropMix((24, 32), generator=seeded(0), kernel=cpu_kernel)(x)
    assert out.shape == (5, 3, 24, 32) and out.dtype == dtype and out.device == x.device
    if dtype.is_floating_point:
        assert 0 <= out.float().min() and out.float().max() <= 1.0 + 1e-2


@pytest.mark.parametrize("mix", ["mixup", "cutmix", ("mixup", "cutmix")])
def test_same_params_as_cropmix_when_enlarging_uint8(mix, cpu_kernel):
    # CIFAR setting: every crop is enlarged, where bilinear grid sampling is torchvision's resize.
    x = torch.randint(0, 256, (16, 3, 32, 32), generator=seeded(1), dtype=torch.uint8)
    aug = BatchCropMix(32, scale=(0.5, 1.0), num_crops=(2, 3), mix=mix, generator=seeded(2), kernel=cpu_kernel)
    params = aug.make_params(x)
    out = render_batch(x, params, (32, 32), kernel=cpu_kernel)
    ref = torch.stack(reference(x, params, (32, 32)))
    diff = (out.int() - ref.int()).abs()
    assert diff.max() <= 1 and diff.float().mean() < 0.35  # rounding: torchvision's uint8 resize rounds per pass


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_same_params_as_cropmix_when_shrinking(mix, cpu_kernel):
    images = [texture(150 + 20 * i, 210 - 15 * i, i) for i in range(6)]  # a list of different sizes
    aug = BatchCropMix(40, scale=(0.05, 1.0), mix=mix, generator=seeded(3), kernel=cpu_kernel)
    params = aug.make_params(images)
    out = aug.render(images, params)
    scores = [psnr(o, r) for o, r in zip(out, reference(images, params, (40, 40)), strict=False)]
    assert min(scores) >= 45, scores  # batched and per-image CropMix agree to >= 45 dB


@pytest.mark.parametrize("interpolation", [InterpolationMode.BILINEAR, InterpolationMode.BICUBIC])
def test_psnr_vs_torchvision_antialiased_resized_crop(interpolation, cpu_kernel):
    images = torch.stack([texture(180, 240, i) for i in range(12)]).round().to(torch.uint8)
    aug = BatchCropMix(
        48, scale=(0.02, 1.0), num_crops=1, interpolation=interpolation, generator=seeded(4), kernel=cpu_kernel
    )
    scores, shrinks = [], []
    for _ in range(3):
        params = aug.make_params(images)
        out = aug.render(images, params)
        for i, img in enumerate(images):
            top, left, h, w = (int(v) for v in params.crops[i, 0])
            ref = TF.resized_crop(img, top, left, h, w, [48, 48], interpolation=interpolation, antialias=True)
            scores.append(psnr(out[i], ref))
            shrinks.append(max(h, w) / 48)
    scores, shrinks = np.array(scores), np.array(shrinks)
    assert (shrinks > 2).any() and (shrinks < 1).any()
    assert scores.min() >= 50, scores  # torchvision's own weights: uint8 rounding differences only


def test_antialias_off_aliases_more():
    images = torch.stack([texture(300, 300, i) for i in range(4)])
    params = BatchCropMix(32, scale=(0.8, 1.0), num_crops=1, generator=seeded(5)).make_params(images)
    scores = {}
    for aa in (True, False):
        out = render_batch(images, params, (32, 32), antialias=aa)
        refs = [
            TF.resized_crop(img, *(int(v) for v in params.crops[i, 0]), [32, 32], antialias=True)
            for i, img in enumerate(images)
        ]
        scores[aa] = np.mean([psnr(o, r) for o, r in zip(out, refs, strict=False)])
    assert scores[True] > scores[False] + 5


def test_list_input_same_size_matches_stacked_batch(cpu_kernel):
    images = [texture(30, 44, i).to(torch.uint8) for i in range(5)]
    aug = BatchCropMix(16, generator=seeded(6), kernel=cpu_kernel)
    params = aug.make_params(images)
    assert torch.equal(
        render_batch(images, params, (16, 16), kernel=cpu_kernel),
        render_batch(torch.stack(images), params, (16, 16), kernel=cpu_kernel),
    )


def test_list_input_of_different_sizes(cpu_kernel):
    images = [texture(h, w, i).to(torch.uint8) for i, (h, w) in enumerate([(20, 30), (64, 48), (33, 33), (100, 7)])]
    out = BatchCropMix(24, generator=seeded(7), kernel=cpu_kernel)(images)
    assert out.shape == (4, 3, 24, 24) and out.dtype == torch.uint8


def test_a_padded_list_renders_each_image_as_on_its_own(monkeypatch, cpu_kernel):
    """Lists are sorted by size and padded per chunk: neither may leak into any output."""
    import cropmix.transforms.functional.batch as kernel

    sizes = [(20, 30), (64, 48), (33, 33), (100, 7), (20, 30), (5, 90)]
    images = [texture(h, w, i) for i, (h, w) in enumerate(sizes)]
    aug = BatchCropMix(24, mix=("mixup", "cutmix"), generator=seeded(8), kernel=cpu_kernel)
    params = aug.make_params(images)
    for name, limit in (("DEVICE_CHUNK_BYTES", 300_000), ("CPU_CHUNK_ELEMENTS", 30_000)):
        monkeypatch.setattr(kernel, name, limit)  # several chunks of mixed sizes
    out = aug.render(images, params)
    for i, image in enumerate(images):
        alone = aug.render(image[None], params.subset([i]))
        assert (out[i] - alone[0]).abs().max() < 1e-3, i


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_a_batch_in_chunks_renders_as_in_one(monkeypatch, mix):
    import cropmix.transforms.functional.batch as kernel

    x = torch.randint(0, 256, (10, 3, 32, 32), generator=seeded(3), dtype=torch.uint8)
    aug = BatchCropMix(32, scale=(0.5, 1.0), num_crops=(2, 3), mix=mix, generator=seeded(4))
    params = aug.make_params(x)
    whole = aug.render(x, params)
    monkeypatch.setattr(kernel, "CPU_CHUNK_ELEMENTS", 3 * 3 * 2 * 32 * 32 * 3)  # three images per chunk
    original, seen = kernel._canvas, []

    def spy(images, kind, rows, *args):
        seen.append(rows)
        return original(images, kind, rows, *args)

    monkeypatch.setattr(kernel, "_canvas", spy)
    assert torch.equal(aug.render(x, params), whole)
    assert seen == [slice(0, 3), slice(3, 6), slice(6, 9), slice(9, 10)]


@pytest.mark.parametrize("interpolation", [InterpolationMode.BILINEAR, InterpolationMode.BICUBIC])
@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_uint8_extremes_stay_exact(interpolation, mix, cpu_kernel):
    """Flat 0 and 255 images come out exactly 0 and 255: float rounding near 255 must not wrap past
    uint8 (bilinear outputs are not clamped: their weights are convex), at enlarging and shrinking
    sizes, with and without antialiasing."""
    for size, antialias in ((48, True), (12, True), (12, False)):
        aug = BatchCropMix(
            size, num_crops=(2, 3), mix=mix, interpolation=interpolation, antialias=antialias, kernel=cpu_kernel
        )
        for value in (0, 255):
            x = torch.full((6, 3, 30, 37), value, dtype=torch.uint8)
            assert torch.equal(aug(x), torch.full((6, 3, size, size), value, dtype=torch.uint8)), (size, value)


def test_channels_last_in_channels_last_out(cpu_kernel):
    x = texture(40, 40, 0)[None].repeat(4, 1, 1, 1).to(torch.uint8)
    cl = x.contiguous(memory_format=torch.channels_last)
    aug = BatchCropMix(20, generator=seeded(8), kernel=cpu_kernel)
    params = aug.make_params(x)
    out = render_batch(cl, params, (20, 20), kernel=cpu_kernel)
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, render_batch(x, params, (20, 20), kernel=cpu_kernel))


def test_no_grad_and_autograd(cpu_kernel):
    x = torch.rand(3, 3, 20, 20)
    with torch.no_grad():
        assert BatchCropMix(10, kernel=cpu_kernel)(x).shape == (3, 3, 10, 10)
    for seed in range(3):
        # 64 -> 16 shrinks most crops by 2x or more: the pyramid (levels >= 1) is built and sampled.
        x = torch.rand(4, 3, 64, 64, requires_grad=True)
        aug = BatchCropMix(16, generator=seeded(seed), kernel=cpu_kernel)
        params = aug.make_params(x)
        assert (params.crops[..., 2:].min(axis=-1) >= 32).any()
        out = aug.render(x, params)
        out.sum().backward()  # differentiable in the pixels: the kernels are linear
        assert x.grad is not None and x.grad.abs().sum() > 0
        with torch.no_grad():
            assert torch.equal(out, aug.render(x, params))  # the grad path computes the same values


def test_many_crops_do_not_overflow(cpu_kernel):
    x = torch.randint(0, 256, (32, 3, 48, 48), dtype=torch.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "overflow in exp" included
        params = BatchCropMix(16, num_crops=50, generator=seeded(30), kernel=cpu_kernel).make_params(x)
        assert np.isfinite(params.lam).all() and (params.lam >= 0).all() and (params.lam <= 1).all()
        assert BatchCropMix(16, num_crops=(40, 50), mix="cutmix", kernel=cpu_kernel)(x).shape == (32, 3, 16, 16)


@pytest.mark.parametrize("kernel", ["gather", "per_crop"])
def test_long_cutmix_chains_match_the_per_image_chain(kernel):
    """The CutMix closed form codes CUT_GROUP steps per bit code: chains longer than one group, with
    channel permutations, must give each image's own chain of mix_step."""
    images = [texture(40 + 3 * i, 36, i).to(torch.uint8) for i in range(6)]
    aug = BatchCropMix(20, num_crops=(26, 31), mix="cutmix", generator=seeded(41), kernel=kernel)
    params = aug.make_params(images)
    assert params.order.shape[1] - 1 > 24
    out = aug.render(images, params)
    for i, ref in enumerate(reference(images, params, (20, 20))):
        assert (out[i].int() - ref.int()).abs().max() <= 1, i


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
@pytest.mark.parametrize("method", ["dense", "gather"])  # the separable passes off the CPU
def test_output_stays_on_the_input_device(mix, method):
    for images in (
        torch.empty(3, 4, 40, 50, device="meta"),
        [torch.empty(4, 30 + i, 40, device="meta") for i in range(3)],
    ):
        out = BatchCropMix(16, mix=mix, generator=seeded(31), kernel=method)(images)
        assert out.device.type == "meta" and out.shape == (3, 4, 16, 16)


def _collate_warnings(samples):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _COLLATE(samples)
    return out, sum("generator" in str(w.message) for w in caught)


_COLLATE = CropMixCollate(BatchCropMix(8, generator=seeded(32)))


def test_a_generator_in_collate_workers_warns_once_per_worker():
    data = [torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8) for _ in range(8)]
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2, collate_fn=_collate_warnings)
    assert sum(count for _, count in loader) == 2


def test_generator_reproducibility():
    x = torch.randint(0, 256, (8, 3, 24, 24), dtype=torch.uint8)
    a = BatchCropMix(16, generator=seeded(9))(x)
    b = BatchCropMix(16, generator=seeded(9))(x)
    c = BatchCropMix(16, generator=seeded(10))(x)
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(3)
    d = BatchCropMix(16)(x)
    torch.manual_seed(3)
    assert torch.equal(d, BatchCropMix(16)(x))


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_every_image_gets_its_own_parameters(mix, cpu_kernel):
    x = texture(32, 32, 0).to(torch.uint8)[None].repeat(64, 1, 1, 1)
    aug = BatchCropMix(32, scale=(0.5, 1.0), num_crops=(2, 3), mix=mix, generator=seeded(11), kernel=cpu_kernel)
    params = aug.make_params(x)
    assert len(np.unique(params.lam[:, 0])) == 64
    assert len({tuple(c) for c in params.crops[:, 0]}) > 32
    if mix == "cutmix":
        assert len({tuple(b) for b in params.box[:, 0]}) > 32
    assert len(set(params.n.tolist())) == 2
    out = render_batch(x, params, (32, 32), kernel=cpu_kernel).flatten(1)
    assert len({tuple(row.tolist()) for row in out}) == 64


def test_parameter_distributions_match_cropmix():
    # BatchCropMix draws one batch; CropMix draws image by image: different streams, same distributions.
    n_images, (H, W) = 1500, (90, 120)
    batch = BatchCropMix(32, num_crops=(2, 3, 4), generator=seeded(12)).make_params(torch.zeros(n_images, 3, H, W))
    single = CropMix(32, num_crops=(2, 3, 4), generator=seeded(13))
    img = torch.zeros(3, H, W)
    per_image = [single.make_params([img]) for _ in range(n_images)]
    counts_b = np.bincount(batch.n, minlength=5)[2:]
    counts_s = np.bincount([len(p.crops) for p in per_image], minlength=5)[2:]
    assert stats.chi2_contingency(np.stack([counts_b, counts_s]))[1] > 1e-3
    lam_b = batch.lam[batch.n == 3, :2].ravel()
    lam_s = np.array([s.lam for p in per_image if len(p.crops) == 3 for s in p.steps])
    assert stats.ks_2samp(lam_b, lam_s).pvalue > 1e-3
    for band in range(3):
        area_b = batch.crops[batch.n == 3, band, 2] * batch.crops[batch.n == 3, band, 3] / (H * W)
        area_s = np.array(
            [p.crops[band].height * p.crops[band].width / (H * W) for p in per_image if len(p.crops) == 3]
        )
        assert stats.ks_2samp(area_b, area_s).pvalue > 1e-3, band


def test_cut_areas_match_cropmix():
    n_images = 1500
    batch = BatchCropMix(32, num_crops=2, mix="cutmix", generator=seeded(14)).make_params(
        torch.zeros(n_images, 3, 40, 40)
    )
    single = CropMix(32, num_crops=2, mix="cutmix", generator=seeded(15))
    per_image = [single.make_params([torch.zeros(3, 40, 40)]) for _ in range(n_images)]
    area_b = batch.box[:, 0, 2] * batch.box[:, 0, 3]
    area_s = np.array([p.steps[0].box[2] * p.steps[0].box[3] for p in per_image])
    assert stats.ks_2samp(area_b, area_s).pvalue > 1e-3


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_output_pixel_statistics_match_cropmix(mix):
    img = texture(48, 64, 3).to(torch.uint8)
    n = 600
    kwargs = dict(size=24, scale=(0.1, 1.0), num_crops=(2, 3), mix=mix)
    out_b = BatchCropMix(**kwargs, generator=seeded(16))(img[None].repeat(n, 1, 1, 1)).double()
    single = CropMix(**kwargs, generator=seeded(17))
    out_s = torch.stack([single(img) for _ in range(n)]).double()
    for stat in (lambda o: o.mean(dim=(1, 2, 3)), lambda o: o.var(dim=(1, 2, 3))):
        assert stats.ks_2samp(stat(out_b).numpy(), stat(out_s).numpy()).pvalue > 1e-3


def test_p_zero_is_one_random_resized_crop_per_image():
    images = torch.stack([texture(60, 80, i) for i in range(6)])
    aug = BatchCropMix(30, scale=(0.3, 1.0), p=0.0, generator=seeded(18))
    params = aug.make_params(images)
    assert (params.n == 1).all()
    out = render_batch(images, params, (30, 30))
    for i, img in enumerate(images):
        ref = TF.resized_crop(img, *(int(v) for v in params.crops[i, 0]), [30, 30], antialias=True)
        assert psnr(out[i], ref) > 40


def test_alpha_and_grayscale(cpu_kernel):
    rgba = torch.cat(
        [torch.randint(0, 256, (6, 3, 20, 20), dtype=torch.uint8), torch.full((6, 1, 20, 20), 200, dtype=torch.uint8)],
        1,
    )
    out = BatchCropMix(12, generator=seeded(19), kernel=cpu_kernel)(rgba)
    assert (out[:, 3] == 200).all()
    gray = torch.rand(5, 1, 20, 30)
    assert BatchCropMix(12, generator=seeded(20), kernel=cpu_kernel)(gray).shape == (5, 1, 12, 12)


def test_from_preset_matches_preset_settings():
    aug = BatchCropMix.from_preset("cifar", size=32, alpha=1.0)
    assert aug.config.scale == (0.5, 1.0) and aug.config.num_crops == (2,) and aug.size == (32, 32)
    assert aug.alpha == 1.0 and aug.scale == (0.5, 1.0)
    with pytest.raises(AttributeError, match="read-only.*new BatchCropMix"):
        aug.scale = (0.1, 1.0)
    assert BatchCropMix.from_preset("mae-mixup").interpolation == InterpolationMode.BICUBIC
    with pytest.raises(ValueError, match="interpolation must be one of.*BILINEAR.*BICUBIC"):
        BatchCropMix(32, interpolation=InterpolationMode.NEAREST)
    assert BatchCropMix.from_preset("mae-cutmix", interpolation=InterpolationMode.BILINEAR).config.mix == ("cutmix",)


def test_collate_fn_in_a_dataloader():
    data = [(torch.randint(0, 256, (3, 20 + i % 3, 24), dtype=torch.uint8), i % 10) for i in range(10)]
    loader = torch.utils.data.DataLoader(data, batch_size=4, collate_fn=CropMixCollate(BatchCropMix(16)))
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8 and labels.tolist() == [0, 1, 2, 3]
    bare = CropMixCollate(BatchCropMix(16))([d[0] for d in data[:3]])
    assert bare.shape == (3, 3, 16, 16)


def test_module_example_runs():
    import cropmix.transforms.batch as batch

    doc = batch.__doc__
    code = doc[doc.index("Example") :].split("::", 1)[1]
    exec(textwrap.dedent(code), {})


def test_bad_inputs_and_arguments():
    aug = BatchCropMix(8)
    with pytest.raises(ValueError, match="B, C, H, W"):
        aug(torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match="non-empty"):
        aug(torch.zeros(0, 3, 8, 8))
    with pytest.raises(ValueError, match="empty list"):
        aug([])
    with pytest.raises(ValueError, match="share channels"):
        aug([torch.zeros(3, 8, 8), torch.zeros(1, 8, 8)])
    with pytest.raises(ValueError, match="share channels"):
        aug([torch.zeros(3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.uint8)])
    with pytest.raises(TypeError, match="real-valued"):
        aug(torch.zeros(2, 3, 8, 8, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.Tensor"):
        aug([torch.zeros(3, 8, 8), np.zeros((3, 8, 8))])
    with pytest.raises(TypeError, match="tensor or a list"):
        aug(np.zeros((2, 3, 8, 8)))
    with pytest.raises(ValueError, match="scale"):
        BatchCropMix(8, scale=(0.5, 2.0))
    with pytest.raises(TypeError, match="generator"):
        BatchCropMix(8, generator=1)
    params = aug.make_params(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="params hold 2 images"):
        render_batch(torch.zeros(3, 3, 8, 8), params, (8, 8))


def test_sampler_is_the_shared_one():
    # BatchCropMix must not keep a sampler of its own: same generator state -> same params as sample_batch.
    aug = BatchCropMix(16, generator=seeded(21))
    mine = aug.make_params(torch.zeros(7, 3, 30, 40))
    ref = sample_batch(aug.config, [30] * 7, [40] * 7, 3, 3, seeded(21))
    assert np.array_equal(mine.crops, ref.crops) and np.array_equal(mine.lam, ref.lam)


def test_collate_of_dict_samples_says_what_samples_it_takes() -> None:
    collate = CropMixCollate(BatchCropMix(16))
    with pytest.raises(TypeError, match=r"\(image, target, \.\.\.\) tuples, got a dict"):
        collate([{"image": torch.zeros(3, 20, 20, dtype=torch.uint8), "label": 0}])
