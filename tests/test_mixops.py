"""The mixing-op registry's contract: what every op declares, what is refused, and that an op is its entry alone."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
import torchvision.transforms.v2.functional as F
from helpers import assert_same_params, mix_views, psnr, seeded, texture, textured_image
from scipy import stats

from cropmix.transforms import BatchCropMix, CropMix, make_config, resized_crop, sample_batch, sample_one
from cropmix.transforms.functional import BATCH_KERNELS, render, render_pil_small, select_kernel
from cropmix.transforms.functional.mixing import BATCHED_RENDERERS
from cropmix.transforms.mixops import MIX_OPS, STEP_DRAWS, MixOp, mix_op, op_at, op_index, register
from cropmix.transforms.mixops.cutmix import cutmix_step
from cropmix.transforms.mixops.mixup import MIXUP, mixup_step
from cropmix.transforms.sampling import draw_layout


def test_every_registered_op_declares_draws_a_step_and_a_batched_renderer():
    assert set(MIX_OPS) == {"mixup", "cutmix"}
    _, blocks = draw_layout(3, 3)
    assert "beta" in blocks and blocks["step"][1][0] == len(STEP_DRAWS) - 1  # lam, cut_y, cut_x, paste
    for name, op in MIX_OPS.items():
        assert op.name == name and mix_op(name) is op
        assert op.draws and set(op.draws) <= set(STEP_DRAWS)
        assert callable(op.step) and op.batched in BATCHED_RENDERERS
        assert (op.box is not None) == ("cut_y" in op.draws)
    # BatchParams.op spells an op by its registration index: mixup 0 and cutmix 1, as the recorded params
    assert [op_index(name) for name in MIX_OPS] == [0, 1] and [op_at(i).name for i in range(2)] == list(MIX_OPS)
    assert MIX_OPS["mixup"].weighted and not MIX_OPS["mixup"].pastes_box
    assert MIX_OPS["cutmix"].pastes_box and not MIX_OPS["cutmix"].weighted


@pytest.mark.parametrize("mix", ["blend", ("mixup", "blend"), 3])
def test_unknown_ops_are_refused_naming_mix_and_the_accepted_values(mix):
    with pytest.raises((ValueError, TypeError)) as error:
        make_config(32, mix=mix)
    assert "mix must be one of" in str(error.value) and "'mixup'" in str(error.value) and "'cutmix'" in str(error.value)
    with pytest.raises(ValueError, match=r"mix must be one of \('mixup', 'cutmix'\)"):
        mix_op("blend")


def test_an_op_must_declare_its_draws_consistently_and_once():
    with pytest.raises(ValueError, match="exactly one of 'lam' and 'beta'"):
        MixOp("both", draws=("lam", "beta"), permuted_new=lambda lam, p: p, step=cutmix_step, batched="x")
    with pytest.raises(ValueError, match="box and boxes"):
        MixOp(
            "boxless",
            draws=("lam", "cut_y", "cut_x"),
            permuted_new=lambda lam, p: p,
            step=cutmix_step,
            batched="x",
        )
    with pytest.raises(ValueError, match="'unpasted' pastes a box .*it must draw cut_y, cut_x, paste"):
        cut = MIX_OPS["cutmix"]  # the batched renderer would read the drawn paste the per-image step never sees
        MixOp("unpasted", draws=("lam", "cut_y", "cut_x"), permuted_new=cut.permuted_new, step=cut.step,
              batched=cut.batched, box=cut.box, boxes=cut.boxes)  # fmt: skip
    with pytest.raises(ValueError, match="already registered"):
        register(MIX_OPS["mixup"])


def _left_half(out_h, out_w, lam, u_y, u_x):
    return (0, 0, out_h, out_w // 2)


def _left_halves(out_h, out_w, lam, u_y, u_x):
    return np.broadcast_to(np.array([0, 0, out_h, out_w // 2]), (*np.shape(lam), 4)).copy()


HALF = MixOp(
    name="half",
    draws=("lam", "cut_y", "cut_x", "paste"),
    permuted_new=lambda lam, pasted_new: pasted_new,
    step=cutmix_step,
    batched="selected",
    box=_left_half,
    boxes=_left_halves,
)


def test_an_op_is_its_registry_entry_alone(monkeypatch):
    """An op given only as a MixOp (CutMix of a fixed left half) is accepted, drawn and rendered, alone and batched."""
    monkeypatch.delitem(MIX_OPS, "cutmix")
    monkeypatch.setitem(MIX_OPS, "half", HALF)
    config = make_config((12, 16), num_crops=3, mix="half")
    g = torch.Generator().manual_seed(0)
    one = sample_one(config, 30, 40, 3, 3, g)
    assert one.steps and all(s.op == "half" and s.box == (0, 0, 12, 8) and s.pasted_new is not None for s in one.steps)
    params = sample_batch(config, [30] * 4, [40] * 4, 3, 3, torch.Generator().manual_seed(1))
    assert (params.box[params.op == op_index("half")] == [0, 0, 12, 8]).all()
    images = torch.rand(4, 3, 30, 40, generator=torch.Generator().manual_seed(2))
    batch = render(images, params, size=(12, 16))
    for i in range(4):
        alone = render(images[i], params.image(i, (30, 40), (12, 16)))
        torch.testing.assert_close(batch[i], alone, atol=2e-3, rtol=0)


# A third op for the tests below: Mixup with lam ~ U(0, 1) (the step's uniform), rendered as Mixup.
UNIFORM_MIXUP = MixOp(
    name="uniform_mixup", draws=("lam",), permuted_new=MIXUP.permuted_new, step=mixup_step, batched="weighted"
)
THREE = ("mixup", "cutmix", "uniform_mixup")


@pytest.fixture
def uniform_mixup():
    """UNIFORM_MIXUP registered beside mixup and cutmix for the duration of a test."""
    register(UNIFORM_MIXUP)
    yield UNIFORM_MIXUP
    del MIX_OPS[UNIFORM_MIXUP.name]


def test_a_third_op_draws_its_own_lam_and_the_params_name_it(uniform_mixup):
    config = make_config((12, 16), num_crops=3, mix=THREE, alpha=1.0)
    params = sample_batch(config, [30] * 3000, [40] * 3000, 3, 3, seeded(0))
    assert op_index("uniform_mixup") == 2 and op_at(2) is uniform_mixup
    ops = params.op[:, 0]
    assert set(np.unique(params.op)) == {0, 1, 2} and np.array_equal(params.op[:, 1], ops)
    assert stats.kstest(params.lam[ops == 2, 0], "uniform").pvalue > 1e-3
    assert stats.kstest(params.lam[ops == 0, 0], "uniform").pvalue < 1e-6  # Mixup's Beta(1/3, 1/3) is not
    assert (params.box[ops == 2] == 0).all()
    (i,) = np.flatnonzero(ops == 2)[:1]
    steps = params.image(i, (30, 40), (12, 16)).steps
    assert [s.op for s in steps] == ["uniform_mixup"] * 2 and all(s.box is s.pasted_new is None for s in steps)
    g = seeded(0)
    for i in range(30):  # the per-image sampler draws the same
        assert_same_params(sample_one(config, 30, 40, 3, 3, g), params.image(i, (30, 40), (12, 16)))


def crops_float64(image: torch.Tensor, params) -> list[torch.Tensor]:
    """The replayed crops of a (C, H, W) image in mixing order, in float64 (tests/test_cropmix.py's reference)."""
    return [resized_crop(image, params.crops[i], params.output_size).double() for i in params.order]


def _as_float_chw(out) -> torch.Tensor:
    if isinstance(out, PIL.Image.Image):
        return torch.from_numpy(np.asarray(out, dtype=np.float64)).permute(2, 0, 1)
    return out.double() * (255 if out.is_floating_point() else 1)


@pytest.mark.parametrize("kind", ["small pil", "pil", "uint8", "float"])
def test_cropmix_renders_and_replays_a_third_op(uniform_mixup, kind):
    """PIL (PIL's small kernels or the tensor ones) and tensor input: the drawn output is the replayed one and
    the documented formula within each kernel's tolerance (PIL's own resampling: >= 40 dB)."""
    small = kind == "small pil"
    tensor = textured_image(40, 56) if small else textured_image(150, 200)
    image = {"uint8": tensor, "float": tensor.float() / 255}.get(kind)
    image = F.to_pil_image(tensor) if image is None else image
    size = (24, 20) if small else (48, 40)
    seen, errors = set(), []
    for seed in range(30):
        drawn = CropMix(size, scale=(0.05, 1.0), num_crops=(2, 3), mix=THREE, generator=seeded(seed))(image)
        t = CropMix(size, scale=(0.05, 1.0), num_crops=(2, 3), mix=THREE, generator=seeded(seed))
        params = t.make_params([image])
        out = t.transform(image, params)
        assert (out.tobytes() == drawn.tobytes()) if kind in ("small pil", "pil") else torch.equal(out, drawn)
        assert (select_kernel(image, params, t.interpolation, t.antialias) is render_pil_small) == small
        seen |= {s.op for s in params.steps}
        reference = mix_views(crops_float64(image if kind == "float" else tensor, params), params)
        errors.append((_as_float_chw(out) - reference * (255 if kind == "float" else 1)).abs())
    assert "uniform_mixup" in seen
    if small:
        mse = np.mean([(e**2).mean().item() for e in errors])
        assert 10 * np.log10(255**2 / mse) >= 40.0
    else:
        assert max(e.max().item() for e in errors) <= (255e-5 if kind == "float" else 1.0)


@pytest.mark.parametrize("kernel", BATCH_KERNELS)
@pytest.mark.parametrize("shape", ["enlarged uint8 batch", "shrunk float list"])
def test_batch_cropmix_renders_a_third_op_as_cropmix_does(uniform_mixup, kernel, shape):
    """Every CPU kernel on a batch that mixes all three ops (two share the weighted renderer): the per-image
    kernels' output within the tolerances of tests/test_batch.py, and the drawn batch is the replayed one."""
    if shape == "enlarged uint8 batch":
        images, size = torch.randint(0, 256, (24, 3, 32, 32), generator=seeded(1), dtype=torch.uint8), 32
    else:
        images, size = [texture(150 + 20 * i, 210 - 15 * i, i) / 255 for i in range(9)], 40
    settings = dict(scale=(0.05, 1.0), num_crops=(2, 3), mix=THREE, kernel=kernel)
    aug = BatchCropMix(size, generator=seeded(2), **settings)
    params = aug.make_params(images)
    assert set(np.unique(params.op[:, 0])) == {0, 1, 2}
    out = aug.render(images, params)
    assert torch.equal(BatchCropMix(size, generator=seeded(2), **settings)(images), out)
    refs = [render(x, params.image(i, tuple(x.shape[1:]), (size, size))) for i, x in enumerate(images)]
    if shape == "enlarged uint8 batch":
        diff = (out.int() - torch.stack(refs).int()).abs()
        assert diff.max() <= 1 and diff.float().mean() < 0.35
    else:
        assert min(psnr(o * 255, r * 255) for o, r in zip(out, refs, strict=True)) >= 45
