"""The CropMix transform: pixels, replay, seeding, input types and modes, errors."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms.v2.functional as F
from helpers import mix_views, textured_image
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from cropmix import CropMix, preset
from cropmix.transforms import MixStep, resized_crop
from cropmix.transforms.functional import mix_step


def reference_mix(image: torch.Tensor, params, interpolation=v2.InterpolationMode.BILINEAR) -> torch.Tensor:
    """docs/method.md's algorithm, step by step in float64, from the replayed crops."""
    views = [resized_crop(image, params.crops[i], params.output_size, interpolation).double() for i in params.order]
    return mix_views(views, params)


def test_mix_step_is_the_spec_formula():
    a = torch.tensor([1.0, 2.0, 3.0])[:, None, None].expand(3, 2, 4)
    b = torch.tensor([10.0, 20.0, 30.0])[:, None, None].expand(3, 2, 4)
    # Mixup: the permuted view is b (lam > 0.5): lam * a + (1 - lam) * b[perm]
    step = MixStep(op="mixup", lam=0.75, box=None, pasted_new=None, permuted_new=True, channel_perm=(2, 0, 1))
    assert torch.allclose(mix_step(a, b, step)[:, 0, 0], torch.tensor([0.75 + 7.5, 1.5 + 2.5, 2.25 + 5.0]))
    step = MixStep(op="mixup", lam=0.25, box=None, pasted_new=None, permuted_new=False, channel_perm=(1, 2, 0))
    assert torch.allclose(mix_step(a, b, step)[:, 0, 0], torch.tensor([0.5 + 7.5, 0.75 + 15.0, 0.25 + 22.5]))
    # CutMix: a's box (rows 0-1, columns 1-2) pasted onto b, channel-permuted.
    step = MixStep(op="cutmix", lam=0.5, box=(0, 1, 2, 2), pasted_new=False, permuted_new=False, channel_perm=(1, 0, 2))
    out = mix_step(a, b, step)
    assert torch.equal(out[:, :, 1:3], torch.tensor([2.0, 1.0, 3.0])[:, None, None].expand(3, 2, 2))
    assert torch.equal(out[:, :, 0], b[:, :, 0]) and torch.equal(out[:, :, 3], b[:, :, 3])


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
@pytest.mark.parametrize("layout", ["planar", "channels_last"])
def test_output_is_the_documented_formula_of_the_replayed_crops(mix, layout):
    image = textured_image()
    if layout == "channels_last":
        image = image.permute(1, 2, 0).contiguous().permute(2, 0, 1)
    t = CropMix((24, 40), num_crops=(2, 3, 4), mix=mix, scale=(0.05, 1.0))
    torch.manual_seed(0)
    for _ in range(40):
        params = t.make_params([image])
        out = t.transform(image, params)
        assert out.dtype == torch.uint8 and out.shape == (3, 24, 40)
        assert (out.double() - reference_mix(image, params)).abs().max() <= 1.0


def test_float_output_matches_formula_closely():
    image = textured_image().float() / 255
    t = preset("imagenet", size=48)
    torch.manual_seed(1)
    for _ in range(20):
        params = t.make_params([image])
        out = t.transform(image, params)
        assert out.dtype == torch.float32
        assert (out.double() - reference_mix(image, params)).abs().max() < 1e-5


def test_every_crop_matches_torchvision_antialiased_resized_crop():
    image = textured_image(300, 400)
    t = preset("imagenet", size=64)
    torch.manual_seed(2)
    for _ in range(20):
        params = t.make_params([image])
        for layout in (image, image.permute(1, 2, 0).contiguous().permute(2, 0, 1)):
            for crop in params.crops:
                ours = resized_crop(layout, crop, (64, 64)).double()
                ref = F.resized_crop(image, crop.top, crop.left, crop.height, crop.width, [64, 64], antialias=True)
                mse = ((ours - ref.double()) ** 2).mean().item()
                psnr = float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)
                assert psnr >= 35.0


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_constant_grey_stays_grey(mix):
    grey = torch.full((3, 50, 70), 117, dtype=torch.uint8)
    t = CropMix(32, mix=mix, num_crops=(2, 3, 4))
    torch.manual_seed(0)
    for _ in range(20):
        assert torch.equal(t(grey), torch.full((3, 32, 32), 117, dtype=torch.uint8))
    pil = PIL.Image.new("RGB", (70, 50), (117, 117, 117))
    assert np.all(np.asarray(t(pil)) == 117)


def test_cutmix_pastes_inside_the_box_on_a_non_square_output():
    # Pixels encode their source coordinates, so each output pixel tells which view it came from.
    h, w = 90, 200
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    image = torch.stack([ys.float(), xs.float(), (ys * w + xs).float()])
    t = CropMix((20, 60), num_crops=2, mix="cutmix", channel_permute=False, scale=(0.1, 1.0))
    torch.manual_seed(3)
    for _ in range(30):
        params = t.make_params([image])
        out = t.transform(image, params)
        views = [resized_crop(image, params.crops[i], (20, 60)) for i in params.order]
        top, left, bh, bw = params.steps[0].box
        assert bh <= 20 and bw <= 60
        inside = torch.zeros(20, 60, dtype=torch.bool)
        inside[top : top + bh, left : left + bw] = True
        pasted, base = (views[1], views[0]) if params.steps[0].pasted_new else (views[0], views[1])
        assert torch.equal(out[:, inside], pasted[:, inside])
        assert torch.equal(out[:, ~inside], base[:, ~inside])


def test_replay_is_bit_exact_and_seeding_reproduces():
    image = textured_image()
    t = preset("imagenet", size=32)
    torch.manual_seed(5)
    params = t.make_params([image])
    assert torch.equal(t.transform(image, params), t.transform(image, params))
    torch.manual_seed(5)
    direct = t(image)
    assert torch.equal(direct, t.transform(image, params))
    torch.manual_seed(6)
    assert not torch.equal(t(image), direct)


def test_generator_overrides_global_rng_and_object_keeps_no_state():
    image = textured_image()
    t = preset("imagenet", size=32, generator=torch.Generator().manual_seed(9))
    state = copy.deepcopy({k: v for k, v in vars(t).items() if k != "generator"})
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    first = [t(image) for _ in range(3)]
    assert torch.equal(global_state, torch.get_rng_state())
    assert state == {k: v for k, v in vars(t).items() if k != "generator"}
    t.generator.manual_seed(9)
    assert all(torch.equal(a, t(image)) for a in first)


class _Repeated(Dataset):
    def __init__(self, transform):
        self.image = textured_image(60, 80)
        self.transform = transform

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.image)


def test_dataloader_workers_draw_distinct_outputs_and_a_seed_reproduces_them():
    loader_args = dict(batch_size=4, num_workers=2, shuffle=False)

    def run(seed: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        return torch.cat(list(DataLoader(_Repeated(preset("cifar")), generator=generator, **loader_args)))

    a = run(0)
    flat = a.flatten(1)
    distinct = {tuple(row.tolist()) for row in flat}
    assert len(distinct) == len(flat)  # no two images alike, across batches and workers
    assert torch.equal(a, run(0))
    assert not torch.equal(a, run(1))


PIL_MODES = {
    "1": "L",
    "L": "L",
    "LA": "LA",
    "P": "RGB",
    "RGB": "RGB",
    "RGBA": "RGBA",
    "CMYK": "CMYK",
    "I": "I",
    "I;16": "I;16",
    "F": "F",
}


@pytest.mark.parametrize("mode", sorted(PIL_MODES))
def test_every_pil_mode_comes_back_as_documented(mode):
    rgb = PIL.Image.fromarray(textured_image().permute(1, 2, 0).numpy())
    image = rgb.convert("L").convert(mode) if mode == "I;16" else rgb.convert(mode)  # Pillow < 10.4: no RGB -> I;16
    if mode == "I":
        image = PIL.Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.int32) * 1000 - 50_000).astype(np.int32))
    t = CropMix((20, 30), num_crops=(2, 3))
    torch.manual_seed(0)
    out = t(image)
    assert isinstance(out, PIL.Image.Image)
    assert out.mode == PIL_MODES[mode] and out.size == (30, 20)
    values = np.asarray(out, dtype=np.float64)
    source = np.asarray(image.convert(out.mode) if mode in ("1", "P") else image, dtype=np.float64)
    assert values.min() >= source.min() - 1 and values.max() <= source.max() + 1


def test_alpha_channel_is_never_permuted():
    rgb = textured_image(40, 40)
    alpha = torch.full((1, 40, 40), 200, dtype=torch.uint8)
    t = CropMix(16, num_crops=(2, 3, 4))
    torch.manual_seed(0)
    for _ in range(20):
        out = t(torch.cat([rgb, alpha]))
        assert torch.equal(out[3], torch.full((16, 16), 200, dtype=torch.uint8))
        pil = t(PIL.Image.fromarray(torch.cat([rgb, alpha]).permute(1, 2, 0).numpy(), "RGBA"))
        assert np.all(np.asarray(pil)[..., 3] == 200)
        la = t(PIL.Image.fromarray(torch.stack([rgb[0], alpha[0]], -1).numpy(), "LA"))
        assert np.all(np.asarray(la)[..., 1] == 200)


@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5, 8])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64, torch.float16, torch.int16])
def test_any_channel_count_and_dtype_keeps_type_shape_and_range(channels, dtype):
    image = textured_image(30, 45, channels)
    if dtype.is_floating_point:
        image = (image.float() / 255).to(dtype)
    else:
        image = image.to(dtype)
    out = CropMix((12, 18), num_crops=(2, 3, 4), mix=("mixup", "cutmix"))(image)
    assert out.dtype == dtype and out.shape == (channels, 12, 18) and out.is_contiguous()
    assert out.double().min() >= image.double().min() - 1e-3 and out.double().max() <= image.double().max() + 1e-3


def test_tv_tensor_image_in_image_out_and_labels_pass_through_compose():
    image = tv_tensors.Image(textured_image())
    pipeline = v2.Compose([CropMix(32, num_crops=2), v2.RandomHorizontalFlip(), v2.ToDtype(torch.float32, scale=True)])
    out, label = pipeline(image, 7)
    assert isinstance(out, tv_tensors.Image) and out.shape == (3, 32, 32) and label == 7
    pil_out, pil_label = CropMix(32)(PIL.Image.new("RGB", (50, 40)), {"label": 3})
    assert isinstance(pil_out, PIL.Image.Image) and pil_label == {"label": 3}


@pytest.mark.parametrize("shape", [(3, 1, 1), (3, 1, 500), (3, 500, 1), (1, 2, 3), (3, 1500, 2000)])
def test_tiny_and_large_images(shape):
    image = torch.randint(0, 256, shape, dtype=torch.uint8)
    out = preset("imagenet", size=(24, 32))(image)
    assert out.shape == (shape[0], 24, 32)


def test_bad_inputs_get_clear_errors():
    t = CropMix(32)
    with pytest.raises(ValueError, match="BatchCropMix"):
        t(torch.zeros(2, 3, 8, 8))
    with pytest.raises(ValueError, match="non-empty"):
        t(torch.zeros(3, 0, 8))
    with pytest.raises(TypeError, match="str"):
        t("image.jpg")
    with pytest.raises(TypeError, match="dtype"):
        t(torch.zeros(3, 8, 8, dtype=torch.bool))
    with pytest.raises(TypeError, match="BoundingBoxes"):
        boxes = tv_tensors.BoundingBoxes([[0, 0, 5, 5]], format="XYXY", canvas_size=(120, 160))
        t(tv_tensors.Image(textured_image()), boxes)
    with pytest.raises(ValueError, match="interpolation"):
        CropMix(32, interpolation=v2.InterpolationMode.LANCZOS)
    with pytest.raises(ValueError, match="params were drawn"):
        t.transform(textured_image(10, 10), t.make_params([textured_image()]))


def test_presets_are_the_papers_settings():
    cifar = preset("cifar")
    assert cifar.size == (32, 32) and cifar.scale == (0.5, 1.0) and cifar.num_crops == (2,) and cifar.alpha == 0.4
    imagenet = preset("imagenet")
    assert imagenet.scale == (0.01, 1.0) and imagenet.num_crops == (2, 3, 4) and imagenet.channel_permute
    mae = preset("mae-cutmix", size=32)
    assert mae.mix == ("cutmix",) and mae.size == (32, 32) and not mae.channel_permute
    assert mae.interpolation == v2.InterpolationMode.BICUBIC
    with pytest.raises(ValueError, match="preset"):
        preset("imagenet-21k")


def test_settings_are_read_only_attributes_of_the_config():
    t = CropMix(32, scale=(0.3, 1.0), num_crops=(2, 3))
    assert t.scale == t.config.scale == (0.3, 1.0) and t.num_crops == (2, 3) and t.size == (32, 32)
    assert t.interpolation == v2.InterpolationMode.BILINEAR and t.antialias
    for name, value in [("scale", (0.5, 1.0)), ("num_crops", 4), ("alpha", 1.0), ("p", 0.5), ("config", None)]:
        with pytest.raises(AttributeError, match=rf"{name} is read-only.*new CropMix"):
            setattr(t, name, value)
    assert t.scale == (0.3, 1.0) and t.num_crops == (2, 3)
    assert "scale=(0.3, 1.0)" in repr(t)


@pytest.mark.parametrize(
    "overrides", [dict(alpha=1.0), dict(num_crops=3), dict(channel_permute=False), dict(scale=(0.2, 0.9), p=0.5)]
)
def test_preset_overrides_replace_the_presets_values(overrides):
    t = preset("cifar", **overrides)
    for name, value in overrides.items():
        assert getattr(t.config, name) == (value if name != "num_crops" else (value,))
    assert t.size == (32, 32)
    assert preset("imagenet", 64, alpha=2.0).config.alpha == 2.0


def test_a_keyword_the_transform_lacks_names_the_accepted_ones():
    from cropmix import BatchCropMix

    with pytest.raises(TypeError, match=r"preset 'cifar': CropMix takes no keyword foo; accepted: size, scale, "):
        preset("cifar", foo=1)
    with pytest.raises(TypeError, match=r"BatchCropMix takes no keyword kernal; accepted: .*generator, kernel$"):
        BatchCropMix.from_preset("imagenet", 64, kernal="gather")
    assert BatchCropMix.from_preset("imagenet", 64, kernel="gather").kernel == "gather"


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_many_crops_work(mix):
    # alpha / N = 0.008: log Gamma draws differ by more than exp can take; the Beta ratio must not overflow.
    image = textured_image(64, 64)
    t = CropMix(32, num_crops=50, mix=mix, generator=torch.Generator().manual_seed(0))
    for _ in range(100):
        params = t.make_params([image])
        assert len(params.crops) == 50 and all(0.0 <= s.lam <= 1.0 for s in params.steps)
        assert t.transform(image, params).shape == (3, 32, 32)


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_output_stays_on_the_input_device(mix, dtype, channels):
    t = CropMix(16, num_crops=(2, 3, 4), mix=mix, generator=torch.Generator().manual_seed(0))
    image = torch.empty(channels, 40, 50, dtype=dtype, device="meta")
    for _ in range(10):  # several draws: permutations of the running mix and of the new view
        out = t(image)
        assert out.device.type == "meta" and out.dtype == dtype and out.shape == (channels, 16, 16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
def test_cuda_input_gives_cuda_output_close_to_the_cpu_one(mix, dtype):
    image = textured_image(60, 80)
    image = image if dtype == torch.uint8 else image.float() / 255
    t = CropMix(24, num_crops=(2, 3, 4), mix=mix)
    torch.manual_seed(0)
    for _ in range(10):
        params = t.make_params([image])
        out = t.transform(image.cuda(), params)
        assert out.is_cuda and out.dtype == dtype and out.shape == (3, 24, 24)
        scale = 255 if dtype == torch.float32 else 1
        diff = (out.cpu().double() - t.transform(image, params).double()).abs() * scale
        assert diff.max() <= 3.0 and diff.mean() < 0.5  # resampling rounds differently on the GPU


class _WarningsPerItem(Dataset):
    """Returns, per item, how many RuntimeWarnings the transform raised in this worker."""

    def __init__(self, transform):
        self.image = textured_image(20, 20)
        self.transform = transform

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> int:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.transform(self.image)
        return sum("generator" in str(w.message) and issubclass(w.category, RuntimeWarning) for w in caught)


@pytest.mark.parametrize("with_generator", [True, False])
def test_a_generator_in_dataloader_workers_warns_once_per_worker(with_generator):
    generator = torch.Generator().manual_seed(0) if with_generator else None
    t = CropMix(16, generator=generator)
    loader = DataLoader(_WarningsPerItem(t), batch_size=1, num_workers=2)
    counts = torch.cat(list(loader))
    assert int(counts.sum()) == (2 if with_generator else 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t(textured_image(20, 20))  # in the main process: no workers, no warning
    assert not caught


def test_numpy_integers_are_accepted_where_ints_are_and_bools_are_not() -> None:
    aug = CropMix(np.int64(32), num_crops=np.int64(3), scale=(np.float32(0.5), 1), alpha=np.float64(0.4))
    assert aug.size == (32, 32) and aug.num_crops == (3,) and type(aug.num_crops[0]) is int
    assert CropMix(32, num_crops=[np.int32(2), 3], interpolation=np.int64(3)).num_crops == (2, 3)
    with pytest.raises(TypeError, match="num_crops"):
        CropMix(32, num_crops=True)
    with pytest.raises(TypeError, match="size"):
        CropMix(np.bool_(True))


def test_transform_with_params_that_are_not_cropmix_params_names_them() -> None:
    with pytest.raises(TypeError, match="params must be a CropMixParams.*got dict"):
        CropMix(32).transform(textured_image(40, 40), {})
