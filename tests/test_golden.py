"""Golden outputs: CropMix and BatchCropMix give the recorded bits for fixed seeds.

A refactor of the transforms must not change a drawn parameter or an integer output. The integer
parameters (crops, order, ops, boxes, permutations) and integer outputs are exact on every CPU, so
they are compared by hash. Floats may differ in their last bits between CPUs (numpy's vectorised
log and cos, used by the batched Beta draws, differ between AVX2 and AVX-512, as do BLAS builds), so
the mixing weights lam and the float outputs are stored as arrays (tests/data/golden_float.npz) and
compared with a tolerance: LAM_ATOL for lam, and FLOAT_ATOL relative to the data's range for the
outputs, far below one uint8 level, which a real change exceeds. The comparison runs wherever torch,
numpy and Pillow are the recorded versions, whatever the CPU.

Re-record after an intended change (e.g. a new batched resampling kernel changes only
golden_batch.json's "outputs"):

    CROPMIX_RECORD_GOLDEN=1 python -m pytest tests/test_golden.py
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import PIL
import PIL.Image
import pytest
import torch
from helpers import textured_image
from torchvision.transforms.v2 import InterpolationMode

from cropmix.transforms import BatchCropMix, CropMix
from cropmix.transforms.mixops import op_index

DATA = Path(__file__).parent / "data"
RECORD = os.environ.get("CROPMIX_RECORD_GOLDEN") == "1"
SEEDS = range(6)
FLOAT_ATOL = 1e-4  # times the data's range: one uint8 level is 1/255, 39x more
LAM_ATOL = 1e-9  # a last-bit difference is ~1e-16; a changed draw moves lam by far more
FLOATS: dict[str, np.ndarray] = {}  # float outputs and lam of this run, by case and seed


def fingerprint() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }


def digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode() + str(part.shape).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, bytes):
            h.update(part)
        else:
            h.update(repr(part).encode())
        h.update(b"|")
    return h.hexdigest()[:20]


def params_tuple(params) -> tuple[tuple, np.ndarray]:
    """The exact content of a CropMixParams, independent of how the class spells it, and its lam per step."""
    steps = []
    for s in params.steps:
        pasted = None if s.pasted_new is None else ("new" if s.pasted_new else "mix")
        permuted = None if s.permuted_new is None else ("new" if s.permuted_new else "mix")
        steps.append((s.op, s.box, pasted, permuted, s.channel_perm))
    crops = [(c.top, c.left, c.height, c.width) for c in params.crops]
    lam = np.array([float(s.lam) for s in params.steps], dtype=np.float64)
    return (params.image_size, params.output_size, crops, params.order, steps), lam


BATCH_FIELDS = ("n", "crops", "order", "cutmix", "box", "pasted_new", "permuted_new", "channel_perm")
# Recorded arrays that BatchParams now spells otherwise, from its fields: "cutmix" was (B, S) bool.
DERIVED = {"cutmix": lambda params: params.op == op_index("cutmix")}


def batch_params_arrays(params) -> tuple[list[np.ndarray | None], np.ndarray]:
    """The exact arrays of a BatchParams in a fixed order, independent of the field names, and its lam."""
    out = []
    for field in BATCH_FIELDS:
        value = DERIVED[field](params) if field in DERIVED else getattr(params, field)
        out.append(None if value is None else np.asarray(value))
    return out, np.asarray(params.lam, dtype=np.float64)


def output_record(out, key: str) -> str:
    """The hash of an integer output; a float output is kept in FLOATS[key] and recorded as "float"."""
    array = np.asarray(out) if isinstance(out, PIL.Image.Image) else out.detach().cpu().numpy()
    if np.issubdtype(array.dtype, np.floating):
        FLOATS[key] = array.astype(np.float64)
        return "float"
    return digest(*output_bytes(out))


def output_bytes(out) -> tuple:
    if isinstance(out, PIL.Image.Image):
        return ("pil", out.mode, out.size, out.tobytes())
    cl = out.ndim == 4 and out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    return ("tensor", str(out.dtype), tuple(out.shape), cl, out.detach().contiguous().cpu().numpy().tobytes())


def pil(height: int, width: int, mode: str) -> PIL.Image.Image:
    array = textured_image(height, width, 3, seed=1).permute(1, 2, 0).numpy()
    return PIL.Image.fromarray(np.ascontiguousarray(array), "RGB").convert(mode)


def channels_last(image: torch.Tensor) -> torch.Tensor:
    return image.permute(1, 2, 0).contiguous().permute(2, 0, 1)


def cropmix_cases() -> dict:
    big = textured_image(300, 400, 3, seed=2)
    small = textured_image(40, 48, 3, seed=3)
    return {
        "pil_rgb_cifar": (lambda: pil(32, 32, "RGB"), dict(size=32, scale=(0.5, 1.0), num_crops=2)),
        "pil_rgb_234": (lambda: pil(32, 32, "RGB"), dict(size=32, num_crops=(2, 3, 4))),
        "pil_l_mixup": (lambda: pil(36, 30, "L"), dict(size=(24, 20), num_crops=(2, 3, 4))),
        "pil_rgb_cutmix": (lambda: pil(32, 32, "RGB"), dict(size=32, num_crops=(2, 3), mix="cutmix")),
        "pil_l_cutmix_p": (lambda: pil(32, 32, "L"), dict(size=32, mix="cutmix", p=0.5)),
        "pil_rgb_large": (lambda: pil(150, 200, "RGB"), dict(size=64, num_crops=(2, 3, 4))),
        "pil_rgba": (lambda: pil(40, 40, "RGBA"), dict(size=24, mix=("mixup", "cutmix"))),
        "pil_p": (lambda: pil(40, 40, "P"), dict(size=24)),
        "pil_bicubic": (lambda: pil(32, 32, "RGB"), dict(size=32, interpolation=InterpolationMode.BICUBIC)),
        "uint8_224": (lambda: big, dict(size=224, num_crops=(2, 3, 4))),
        "uint8_224_cl": (lambda: channels_last(big), dict(size=224, num_crops=(2, 3, 4))),
        "uint8_224_cutmix_p": (lambda: big, dict(size=224, mix="cutmix", num_crops=(2, 3, 4), p=0.6)),
        "uint8_small_234": (lambda: small, dict(size=32, num_crops=(2, 3, 4))),
        "uint8_small_cl": (lambda: channels_last(small), dict(size=32, num_crops=(3, 4))),
        "uint8_mixed_ops": (lambda: small, dict(size=(20, 28), mix=("mixup", "cutmix"), num_crops=(2, 3, 4))),
        "float_96": (lambda: big.float() / 255, dict(size=96, num_crops=(2, 3, 4))),
        "float_cutmix": (lambda: big.float() / 255, dict(size=(40, 64), mix="cutmix", num_crops=(2, 3, 4))),
        "float64_rgba": (lambda: textured_image(50, 60, 4).double(), dict(size=20, mix=("mixup", "cutmix"))),
        "int16_gray": (lambda: textured_image(50, 60, 1).to(torch.int16), dict(size=20, num_crops=3)),
        "nearest": (lambda: small, dict(size=32, interpolation=InterpolationMode.NEAREST)),
    }


def batch_cases() -> dict:
    sizes = [(40, 50), (33, 64), (80, 24), (40, 50), (61, 61)]
    images = [textured_image(h, w, 3, seed=i) for i, (h, w) in enumerate(sizes)]
    batch = torch.stack([textured_image(48, 64, 3, seed=10 + i) for i in range(6)])
    return {
        "batch_uint8": (lambda: batch, dict(size=32, num_crops=(2, 3, 4))),
        "batch_uint8_cl": (lambda: batch.contiguous(memory_format=torch.channels_last), dict(size=24)),
        "batch_uint8_cutmix": (lambda: batch, dict(size=(24, 40), mix="cutmix", num_crops=(2, 3, 4))),
        "batch_float_mixed": (lambda: batch.float() / 255, dict(size=32, mix=("mixup", "cutmix"), p=0.7)),
        "batch_enlarge": (lambda: batch[:, :, :20, :20], dict(size=32, scale=(0.5, 1.0), num_crops=2)),
        "batch_no_antialias": (lambda: batch.float(), dict(size=16, antialias=False)),
        "list_uint8": (lambda: images, dict(size=32, num_crops=(2, 3, 4))),
        "list_float_cutmix": (lambda: [x.float() / 255 for x in images], dict(size=20, mix="cutmix")),
        "list_same_size": (lambda: images[:1] * 3, dict(size=16)),
    }


def record_cropmix() -> dict:
    result = {}
    for name, (make, kwargs) in cropmix_cases().items():
        image = make()
        t = CropMix(**kwargs)
        rows = []
        for seed in SEEDS:
            g = torch.Generator().manual_seed(seed)
            params = CropMix(**kwargs, generator=g).make_params([image])
            exact, FLOATS[f"{name}/{seed}/lam"] = params_tuple(params)
            rows.append([digest(exact), output_record(t.transform(image, params), f"{name}/{seed}")])
        result[name] = rows
    return result


def record_batch() -> tuple[dict, dict]:
    params_out, outputs = {}, {}
    for name, (make, kwargs) in batch_cases().items():
        images = make()
        p_rows, o_rows = [], []
        for seed in SEEDS[:3]:
            aug = BatchCropMix(**kwargs, generator=torch.Generator().manual_seed(seed))
            params = aug.make_params(images)
            exact, FLOATS[f"batch/{name}/{seed}/lam"] = batch_params_arrays(params)
            p_rows.append(digest(*exact))
            o_rows.append(output_record(aug.render(images, params), f"batch/{name}/{seed}"))
        params_out[name], outputs[name] = p_rows, o_rows
    return params_out, outputs


def load(name: str) -> dict:
    path = DATA / name
    if RECORD:
        return {}
    data = json.loads(path.read_text())
    if data["fingerprint"] != fingerprint():
        pytest.skip(f"{name} was recorded on {data['fingerprint']}, this is {fingerprint()}")
    return data


def assert_float_close(key: str) -> None:
    want = np.load(DATA / "golden_float.npz")[key]
    got = FLOATS[key]
    assert got.shape == want.shape, f"{key}: shape {got.shape}, recorded {want.shape}"
    if key.endswith("/lam"):
        worst = float(np.abs(got - want).max(initial=0.0))
        assert worst <= LAM_ATOL, f"{key}: lam moved by {worst:.2e} (tolerance {LAM_ATOL}): parameters changed"
        return
    scale = max(1.0, float(np.abs(want).max()))
    worst = float(np.abs(got - want).max()) / scale
    assert worst <= FLOAT_ATOL, f"{key}: float output moved by {worst:.2e} of its range (tolerance {FLOAT_ATOL})"


def save_floats() -> None:
    """Write FLOATS: outputs as float32 (their tolerance is far above it), lam as float64."""
    arrays = {k: v if k.endswith("/lam") else v.astype(np.float32) for k, v in FLOATS.items()}
    np.savez_compressed(DATA / "golden_float.npz", **arrays)


def save(name: str, payload: dict) -> None:
    DATA.mkdir(exist_ok=True)
    text = json.dumps({"fingerprint": fingerprint(), **payload}, indent=1, sort_keys=True)
    (DATA / name).write_text(text + "\n")


def test_cropmix_outputs_and_params_are_the_recorded_bits():
    golden = load("golden_cropmix.json")
    got = record_cropmix()
    if RECORD:
        save("golden_cropmix.json", {"cases": got})
        save_floats()
        return
    assert set(got) == set(golden["cases"])
    for name, rows in got.items():
        want_rows = golden["cases"][name]
        assert len(rows) == len(want_rows), name
        for seed, row in enumerate(rows):
            want = want_rows[seed]
            assert row[0] == want[0], f"{name} seed {seed}: parameters changed"
            assert_float_close(f"{name}/{seed}/lam")
            assert row[1] == want[1], f"{name} seed {seed}: output bits changed"
            if row[1] == "float":
                assert_float_close(f"{name}/{seed}")


def test_batch_cropmix_outputs_and_params_are_the_recorded_bits():
    golden = load("golden_batch.json")
    params, outputs = record_batch()
    if RECORD:
        save("golden_batch.json", {"params": params, "outputs": outputs})
        save_floats()
        return
    assert params == golden["params"], "BatchCropMix parameters changed"
    for name in outputs:
        for seed in range(len(outputs[name])):
            assert_float_close(f"batch/{name}/{seed}/lam")
        assert outputs[name] == golden["outputs"][name], f"{name}: BatchCropMix output bits changed"
        for seed, row in enumerate(outputs[name]):
            if row == "float":
                assert_float_close(f"batch/{name}/{seed}")


def test_golden_digest_sees_a_one_bit_change():
    out = textured_image(8, 8)
    flipped = out.clone()
    flipped[0, 0, 0] ^= 1
    assert digest(*output_bytes(out)) != digest(*output_bytes(flipped))


def test_float_comparison_sees_a_one_level_change():
    record_cropmix()
    key = "float_96/0"
    FLOATS[key] = FLOATS[key].copy()
    FLOATS[key].flat[123] += 1 / 255
    with pytest.raises(AssertionError, match="float output moved"):
        assert_float_close(key)


def test_lam_comparison_sees_a_changed_draw_but_not_a_last_bit():
    record_batch()
    key = "batch/batch_uint8/0/lam"
    recorded = np.load(DATA / "golden_float.npz")[key]
    FLOATS[key] = np.nextafter(recorded, 2.0)
    assert_float_close(key)
    FLOATS[key] = recorded + 1e-6
    with pytest.raises(AssertionError, match="lam moved"):
        assert_float_close(key)
