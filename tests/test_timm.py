"""cropmix.integrations.timm: timm's transform factory with CropMix in place of its crop, timm's
augmentations in `cropmix train` (--timm-aug), and the timm training example."""

from __future__ import annotations

import math

import pytest
import torch
from helpers import random_pil_image, tiny_config

from cropmix import CropMix

timm = pytest.importorskip("timm")


def _composes(built):
    return list(built) if isinstance(built, tuple) else [built]


TIMM_ARGS = [
    {},
    {"auto_augment": "rand-m9-mstd0.5", "re_prob": 0.25},
    {"interpolation": "bicubic"},
    {"use_prefetcher": True},
    {"separate": True},
    {"separate": True, "auto_augment": "rand-m9-mstd0.5", "use_prefetcher": True},
]


@pytest.mark.parametrize("kwargs", TIMM_ARGS)
def test_timm_factory_replaces_only_the_crop(kwargs):
    from timm.data.transforms import RandomResizedCropAndInterpolation

    from cropmix.integrations.timm import create_transform

    ours = _composes(create_transform(32, cropmix="imagenet", **kwargs))
    theirs = _composes(timm.data.create_transform(32, is_training=True, **kwargs))
    assert len(ours) == len(theirs)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        types_a = [type(t) for t in a.transforms]
        types_b = [type(t) for t in b.transforms]
        if i == 0:  # the primary transform: the crop first, the rest as timm builds it
            assert types_b[0] is RandomResizedCropAndInterpolation
            assert types_a[0] is CropMix and a.transforms[0].size == (32, 32)
            types_a, types_b = types_a[1:], types_b[1:]
        assert types_a == types_b
    torch.manual_seed(0)
    out_a, out_b = random_pil_image(), random_pil_image()
    for a, b in zip(ours, theirs, strict=True):
        out_a, out_b = a(out_a), b(out_b)
        assert type(out_a) is type(out_b)
        if isinstance(out_a, torch.Tensor):
            assert out_a.shape == out_b.shape == (3, 32, 32) and out_a.dtype == out_b.dtype
    expected = torch.uint8 if kwargs.get("use_prefetcher") else torch.float32
    assert out_a.dtype == expected


def test_timm_factory_interpolation_scale_and_instances():
    from torchvision.transforms.v2 import InterpolationMode

    from cropmix.integrations.timm import create_transform

    step = create_transform((3, 24, 40), interpolation="bicubic", scale=(0.2, 1.0)).transforms[0]
    assert step.size == (24, 40) and step.interpolation == InterpolationMode.BICUBIC and step.scale == (0.2, 1.0)
    assert create_transform(24, interpolation="random").transforms[0].interpolation == InterpolationMode.BILINEAR
    mine = CropMix(24, num_crops=2, interpolation=InterpolationMode.NEAREST)
    assert create_transform(24, cropmix=mine, interpolation="bicubic").transforms[0] is mine
    with pytest.raises(ValueError, match="crop size"):
        create_transform(32, cropmix=mine)
    with pytest.raises(ValueError, match="lanczos"):
        create_transform(32, interpolation="lanczos")
    with pytest.raises(ValueError, match="RandomResizedCropAndInterpolation"):
        create_transform(32, no_aug=True)
    with pytest.raises(TypeError, match="cropmix"):
        create_transform(32, cropmix=3)
    evaluation = create_transform(32, is_training=False)
    assert not any(isinstance(t, CropMix) for t in evaluation.transforms)


def test_train_with_timm_aug(tmp_path, monkeypatch):
    from torchvision.transforms import v2

    import cropmix.integrations.timm as timm_integration
    from cropmix.integrations.timm import train_transform
    from cropmix.train import train
    from cropmix.train.run_files import read_metrics

    tf = train_transform(16, True, "imagenet", {"num_crops": 2, "mix": None}, auto_augment="rand-m9-mstd0.5", hflip=0.0)
    assert isinstance(tf.transforms[0], v2.ToPILImage) and isinstance(tf.transforms[1].transforms[0], CropMix)
    assert tf.transforms[1].transforms[0].num_crops == (2,) and tf.transforms[1].transforms[0].scale == (0.01, 1.0)
    out = tf(torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8))
    assert out.shape == (3, 16, 16) and out.dtype == torch.uint8
    built = []
    monkeypatch.setattr(
        timm_integration, "train_transform", lambda *a, **k: built.append(train_transform(*a, **k)) or built[-1]
    )
    timm_aug = {"auto_augment": "rand-m9-mstd0.5", "color_jitter": None}
    run = train(tiny_config(tmp_path, aug="cropmix", epochs=1, timm_aug=timm_aug))
    assert len(read_metrics(run)) == 1 and len(built) == 2  # checked before the run, then used
    steps = [type(t).__name__ for t in built[-1].transforms[1].transforms]  # after ToPILImage (in-memory data)
    assert steps == ["CropMix", "RandomHorizontalFlip", "RandAugment", "MaybePILToTensor"]
    with pytest.raises(ValueError, match=r"timm_aug \(--timm-aug\) only applies with aug"):
        tiny_config(tmp_path, aug="baseline", timm_aug={}).validate(False)
    with pytest.raises(ValueError, match="must not set"):
        tiny_config(tmp_path, aug="cropmix", timm_aug={"re_prob": 0.25}).validate(False)
    with pytest.raises(TypeError, match="bogus"):
        tiny_config(tmp_path, aug="cropmix", timm_aug={"bogus": 1}).validate(False)


def test_timm_example_trains_a_few_steps(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "timm_train.py"
    args = ["--max-steps", "2", "--batch-size", "8", "--eval-images", "16", "--workers", "0", "--threads", "1"]
    args += ["--auto-augment", "rand-m9-mstd0.5", "--re-prob", "0.25"]
    command = [sys.executable, str(script), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["model"] == "resnet18" and result["steps"] == 2
    assert "training images" in done.stdout and "epoch 1/" in done.stderr  # progress, not minutes of silence
    assert math.isfinite(result["final_loss"]) and 0 <= result["test_top1"] <= 100


@pytest.mark.parametrize(
    ("timm_aug", "said"),
    [('{"auto_augment": "bogus"}', "Unknown AA policy bogus"), ('{"nonsense_arg": 1}', "nonsense_arg")],
)
def test_timm_aug_timm_refuses_is_one_line_naming_the_option(tmp_path, capsys, timm_aug, said):
    from helpers import base_args, make_npz

    from cropmix.cli import main

    argv = base_args(make_npz(tmp_path / "d.npz"), tmp_path / "out", "--aug", "cropmix", "--timm-aug", timm_aug)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--timm-aug" in err and said in err, err
    assert not (tmp_path / "out").exists()
