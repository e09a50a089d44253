"""The mixing-op registry's contract: what every op declares, what is refused, and that an op is its entry alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cropmix.transforms import make_config, sample_batch, sample_one
from cropmix.transforms.functional import render
from cropmix.transforms.functional.mixing import BATCHED_RENDERERS
from cropmix.transforms.mixops import MIX_OPS, STEP_DRAWS, MixOp, mix_op, op_at, op_index, register
from cropmix.transforms.mixops.cutmix import cutmix_step
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
