"""cropmix.integrations: timm's transform factory with CropMix, TensorBoard logs, Hugging Face datasets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import hf_dataset_dict, random_pil_image

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
    run = train(_tiny_train_config(tmp_path, aug="cropmix", epochs=1, timm_aug=timm_aug))
    assert len(read_metrics(run)) == 1 and len(built) == 2  # checked before the run, then used
    steps = [type(t).__name__ for t in built[-1].transforms[1].transforms]  # after ToPILImage (in-memory data)
    assert steps == ["CropMix", "RandomHorizontalFlip", "RandAugment", "MaybePILToTensor"]
    with pytest.raises(ValueError, match=r"timm_aug \(--timm-aug\) only applies with aug"):
        _tiny_train_config(tmp_path, aug="baseline", timm_aug={}).validate(False)
    with pytest.raises(ValueError, match="must not set"):
        _tiny_train_config(tmp_path, aug="cropmix", timm_aug={"re_prob": 0.25}).validate(False)
    with pytest.raises(TypeError, match="bogus"):
        _tiny_train_config(tmp_path, aug="cropmix", timm_aug={"bogus": 1}).validate(False)


# --- TensorBoard -----------------------------------------------------------------------------------------


def _events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def _tiny_train_config(tmp_path, **changes):
    from helpers import tiny_config

    return tiny_config(tmp_path, **changes)


def test_train_log_tensorboard_writes_epochs_steps_and_a_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from cropmix.train import train
    from cropmix.train.run_files import read_metrics

    out = train(_tiny_train_config(tmp_path, log="tensorboard", epochs=2))
    rows, events = read_metrics(out), _events(out)
    assert (out / "metrics.jsonl").is_file() and (out / "metrics.csv").is_file()
    steps = 64 // 16  # make_npz's 64 training images, batch 16
    loss = events.Scalars("train_loss")
    assert [e.step for e in loss] == [steps, 2 * steps]
    assert [e.value for e in loss] == pytest.approx([r["train_loss"] for r in rows], rel=1e-6)
    assert [e.value for e in events.Scalars("test_top1")] == pytest.approx([r["test_top1"] for r in rows], rel=1e-6)
    lrs = events.Scalars("lr_per_step")
    assert [e.step for e in lrs] == list(range(1, 2 * steps + 1))
    for epoch, row in enumerate(rows):  # the row's lr is the mean of its steps' rates
        mean = sum(e.value for e in lrs[epoch * steps : (epoch + 1) * steps]) / steps
        assert mean == pytest.approx(row["lr"], rel=1e-5)
    (image,) = events.Images("train_inputs")
    assert image.step == 0 and image.width > 16 and image.height > 16


def test_train_log_tensorboard_resume_appends(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    import cropmix.train.loop as loop
    from cropmix.train import train

    real = loop.train_one_epoch

    def crash_in_second(run, epoch):
        if epoch == 1:
            raise RuntimeError("simulated crash")
        return real(run, epoch)

    monkeypatch.setattr(loop, "train_one_epoch", crash_in_second)
    with pytest.raises(RuntimeError, match="simulated"):
        train(_tiny_train_config(tmp_path, log="tensorboard", epochs=2))
    monkeypatch.setattr(loop, "train_one_epoch", real)
    out = train(_tiny_train_config(tmp_path, log="tensorboard", epochs=2), resume=True)
    events = _events(out)
    assert [e.step for e in events.Scalars("train_loss")] == [4, 8]
    assert [e.step for e in events.Scalars("lr_per_step")] == list(range(1, 9))
    assert len(events.Images("train_inputs")) == 1


def test_tensorboard_purge_step_drops_what_a_stopped_run_wrote(tmp_path):
    pytest.importorskip("tensorboard")
    from cropmix.integrations.tensorboard import TensorBoardLog

    with TensorBoardLog(tmp_path) as log:
        for step in range(1, 11):
            log.scalars({"loss": float(step), "step": step, "flag": True, "name": "x"}, step)
    with TensorBoardLog(tmp_path, purge_step=6) as log:
        for step in range(6, 9):
            log.scalars({"loss": 100.0 + step}, step)
    events = _events(tmp_path)
    assert events.Tags()["scalars"] == ["loss"]
    assert [(e.step, e.value) for e in events.Scalars("loss")] == [(s, float(s)) for s in range(1, 6)] + [
        (s, 100.0 + s) for s in range(6, 9)
    ]


def test_log_tensorboard_without_the_package_fails_before_any_work(tmp_path, monkeypatch, capsys):
    import sys

    from cropmix.cli import main
    from cropmix.integrations import MissingExtra

    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now raises ImportError
    config = _tiny_train_config(tmp_path, log="tensorboard")
    with pytest.raises(MissingExtra, match=r"pip install cropmix\[tensorboard\]"):
        config.validate(False)
    with pytest.raises(ValueError, match="log"):
        _tiny_train_config(tmp_path, log="wandb").validate(False)
    out = tmp_path / "cli_run"
    argv = ["train", "--dataset", "npz", "--data", config.data.path, "--out", str(out), "--log", "tensorboard"]
    assert main([*argv, "--model", "fastnet", "--epochs", "1", "--workers", "0"]) == 2
    assert "pip install cropmix[tensorboard]" in capsys.readouterr().err
    assert not out.exists()


def test_pretrain_log_tensorboard_and_resume(tmp_path):
    pytest.importorskip("tensorboard")
    from helpers import Crash, pretrain_config, synthetic_images, tiny_moco

    from cropmix.data import ArraySplit, save_npz
    from cropmix.ssl.pretrain import pretrain

    x, y = synthetic_images(32)
    npz = save_npz(
        tmp_path / "tiny.npz", {"train": ArraySplit(x, y, list("abcd")), "test": ArraySplit(x, y, list("abcd"))}
    )

    def run(crash_at, resume):
        torch.manual_seed(0)
        config = pretrain_config(tmp_path, npz, "moco", "cropmix", steps=6, checkpoint_every=3, log="tensorboard")
        config.resume, config.eval_train, config.eval_test = resume, 16, 8
        return pretrain(config, model=Crash(tiny_moco(), crash_at))

    with pytest.raises(RuntimeError, match="simulated"):
        run(5, False)  # steps 1-4 logged, checkpoint at step 3
    run(None, True)
    events = _events(tmp_path / "moco-cropmix")
    assert [e.step for e in events.Scalars("lr_per_step")] == list(range(1, 7))
    assert [e.step for e in events.Scalars("loss")] == list(range(1, 7))
    assert [e.step for e in events.Scalars("knn_acc")] == [6]
    (image,) = events.Images("train_inputs")
    assert image.step == 0


# --- Hugging Face datasets -------------------------------------------------------------------------------


def test_hf_source_from_save_to_disk(tmp_path):
    from cropmix.data import Batching, eval_transform, load_source, make_loader
    from cropmix.integrations.hf import HFSplit

    path = tmp_path / "hf"
    hf_dataset_dict().save_to_disk(str(path))
    source = load_source("hf", path)
    assert isinstance(source.train, HFSplit) and not source.in_memory
    assert source.classes == ["cat", "dog", "eel"] and len(source.train) == 16 and len(source.test) == 8
    assert source.train.targets[:4] == [0, 1, 2, 0]
    loader = make_loader(source.test, eval_transform(16, False), Batching(batch_size=4, train=False, workers=0))
    images, targets = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.uint8 and targets.tolist() == [0, 1, 2, 0]
    memory = load_source("hf", path, in_memory=True)
    assert memory.in_memory and memory.train.images.shape == (16, 3, 20, 24)
    assert set(source.train.dataset[3]["image"]) == {"bytes", "path"}  # stored bytes, decoded by cropmix
    expected = np.array(hf_dataset_dict()["train"][3]["image"].convert("RGB"))
    assert torch.equal(memory.train.images[3], torch.from_numpy(expected).permute(2, 0, 1))


def test_hf_source_with_load_dataset_other_keys_and_validation(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    from cropmix.data import load_source

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "parquet"
    parts = hf_dataset_dict(image_key="img", label_key="name", test_name="validation", class_label=False)
    for name, split in parts.items():
        (folder / "data").mkdir(parents=True, exist_ok=True)
        split.to_parquet(str(folder / "data" / f"{name}-00000-of-00001.parquet"))
    source = load_source("hf", folder, hf_keys=("img", "name"))
    assert source.classes == ["cat", "dog", "eel"] and len(source.test) == 8
    assert source.test.targets[:3] == [0, 1, 2]
    with pytest.raises(ValueError, match=r"no column 'image' \(--hf-image-key\)"):
        load_source("hf", folder)


def test_hf_errors_name_what_is_wrong(tmp_path, monkeypatch):
    import sys

    from cropmix.data import check_data_path, load_source
    from cropmix.integrations import MissingExtra

    parts = hf_dataset_dict(n_train=3, n_test=3)
    parts["test"].save_to_disk(str(tmp_path / "one"))
    with pytest.raises(ValueError, match="one saved Dataset"):
        load_source("hf", tmp_path / "one")
    parts.pop("test")
    parts.save_to_disk(str(tmp_path / "train_only"))
    with pytest.raises(ValueError, match="no labelled test split"):
        load_source("hf", tmp_path / "train_only")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        check_data_path("hf", tmp_path / "file.txt")
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(MissingExtra, match=r"pip install cropmix\[hf\]"):
        check_data_path("hf", tmp_path / "one")


def test_cli_train_on_a_hf_dataset(tmp_path, capsys):
    import json
    import subprocess
    import sys

    path = tmp_path / "hf"
    hf_dataset_dict(n_train=16, n_test=6).save_to_disk(str(path))
    out = tmp_path / "run"
    argv = ["train", "--dataset", "hf", "--data", str(path), "--out", str(out), "--model", "fastnet"]
    argv += ["--model-kwargs", '{"widths": [8, 8, 16, 16]}', "--image-size", "16", "--epochs", "1"]
    argv += ["--batch-size", "8", "--workers", "0", "--threads", "1", "--no-progress", "--aug", "cropmix"]
    argv += ["--preset", "imagenet", "--hf-label-key", "label"]
    done = subprocess.run([sys.executable, "-m", "cropmix", *argv], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    final = json.loads((out / "final.json").read_text())
    assert final["epochs"] == 1 and 0 <= final["top1"] <= 100
    config = json.loads((out / "config.json").read_text())
    assert config["dataset"] == "hf" and config["hf_label_key"] == "label"
    from cropmix.cli import main

    argv = ["train", "--dataset", "npz", "--data", str(path), "--out", str(tmp_path / "x"), "--hf-image-key", "img"]
    assert main(argv) == 2
    assert "hf_image_key (--hf-image-key) only applies with dataset (--dataset) 'hf'" in capsys.readouterr().err


# --- the timm example ------------------------------------------------------------------------------------


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


def test_cli_pretrain_on_a_hf_dataset_with_other_columns(tmp_path, capsys):
    import json

    from cropmix.cli import main
    from cropmix.ssl import PretrainConfig

    path = tmp_path / "hf"
    hf_dataset_dict(n_train=16, n_test=6, size=16, image_key="img", label_key="name", square=True).save_to_disk(
        str(path)
    )
    out = tmp_path / "mae"
    mae = '{"patch_size": 4, "dim": 16, "depth": 1, "heads": 2, "decoder_dim": 16, "decoder_depth": 1}'
    args = ["pretrain", "--method", "mae", "--dataset", "hf", "--data", str(path), "--out", str(out)]
    args += ["--hf-image-key", "img", "--hf-label-key", "name", "--image-size", "16", "--mae-kwargs", mae]
    args += ["--steps", "2", "--batch-size", "8", "--no-progress", "--knn-k", "3", "--probe-epochs", "1"]
    assert main(args) == 0
    assert json.loads((out / "config.json").read_text())["hf_image_key"] == "img"
    capsys.readouterr()
    evaluation = ["--eval-only", str(out / "checkpoint.pt"), "--no-progress", "--knn-k", "3", "--probe-epochs", "1"]
    assert main(["pretrain", *evaluation]) == 0  # the saved keys reopen the data
    assert json.loads(capsys.readouterr().out)["step"] == 2
    with pytest.raises(
        ValueError, match=r"hf_image_key \(--hf-image-key\) only applies with dataset \(--dataset\) 'hf'"
    ):
        PretrainConfig.from_dict(dict(dataset="npz", hf_image_key="img"))


def test_the_tensorboard_grid_does_not_change_what_training_draws(tmp_path):
    """The grid is the first training batch itself: with persistent loader workers (an ImageFolder), a
    separate look at the loader advanced the workers' RNG, so runs with and without --log differed."""
    pytest.importorskip("tensorboard")
    from helpers import make_folder

    from cropmix.train import train
    from cropmix.train.run_files import read_metrics

    root = make_folder(tmp_path / "folder", per_class=8, size=20)
    losses = {}
    for log in (None, "tensorboard"):
        config = _tiny_train_config(
            tmp_path,
            dataset="imagefolder",
            data=str(root),
            out=str(tmp_path / f"run_{log}"),
            workers=1,
            aug="cropmix",
            image_size=16,
            epochs=1,
            batch_size=4,
            log=log,
        )
        losses[log] = [row["train_loss"] for row in read_metrics(train(config))]
    assert losses["tensorboard"] == losses[None]
    (image,) = _events(tmp_path / "run_tensorboard").Images("train_inputs")
    assert image.step == 0


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
