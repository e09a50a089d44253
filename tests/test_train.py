"""The training loop, schedules, batch mixing, checkpoints, evaluation and comparison of cropmix.train."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import tiny_config

from cropmix.models.weights import load_checkpoint
from cropmix.train import EvalOptions, TrainConfig, compare_runs, evaluate_run, train
from cropmix.train.mixing import cutmix_batch, mixup_batch, soft_cross_entropy, soft_targets
from cropmix.train.schedule import lr_factor

# A tiny fast net: trains 64 images of 16x16 for an epoch in well under a second.


def test_soft_targets_and_batch_mixing():
    targets = torch.tensor([0, 1, 2, 1])
    logits = torch.randn(4, 3)
    soft = soft_targets(targets, 3)
    assert torch.allclose(soft_cross_entropy(logits, soft), F.cross_entropy(logits, targets))
    smooth = soft_targets(targets, 3, 0.3)
    assert torch.allclose(soft_cross_entropy(logits, smooth), F.cross_entropy(logits, targets, label_smoothing=0.3))
    images = torch.rand(4, 3, 8, 8)
    torch.manual_seed(0)
    mixed, labels = mixup_batch(images, soft, alpha=1.0)
    assert torch.allclose(labels.sum(1), torch.ones(4)) and not torch.equal(mixed, images)
    torch.manual_seed(1)
    cut, labels = cutmix_batch(images, soft, alpha=1.0)
    changed = (cut != images).any(1).float().mean(dim=(1, 2))  # fraction of pixels pasted, per image
    own = labels[torch.arange(4), targets]
    # An image keeps at least its own share of the label (more if pasted from a same-class image).
    assert torch.all(own >= 1 - changed - 1e-6)


def test_lr_schedules(tmp_path):
    cosine = tiny_config(tmp_path, epochs=10, warmup_epochs=2, schedule="cosine")
    steps = [lr_factor(s, 5, cosine.optim) for s in range(50)]
    assert steps[0] == pytest.approx(0.1) and steps[9] == pytest.approx(1.0)
    assert steps[-1] < 0.01 and all(a >= b for a, b in zip(steps[10:], steps[11:], strict=False))
    step = tiny_config(tmp_path, epochs=10, schedule="step", milestones=(4, 8), gamma=0.1)
    assert [lr_factor(e * 5, 5, step.optim) for e in (0, 4, 8)] == pytest.approx([1.0, 0.1, 0.01])
    onecycle = tiny_config(tmp_path, epochs=4, schedule="onecycle")
    values = [lr_factor(s, 10, onecycle.optim) for s in range(40)]
    assert max(values) == pytest.approx(1.0) and values[0] < 0.2 and values[-1] < 0.01
    assert math.isclose(lr_factor(3, 10, tiny_config(tmp_path, schedule="constant").optim), 1.0)


def test_invalid_configs_are_rejected_before_work(tmp_path):
    cases = {
        "aug": dict(aug="cropmix+rrc"),
        "epochs": dict(epochs=0),
        "model": dict(model="resnet9000"),
        "amp": dict(amp=True, device="cpu"),
        "warmup_epochs": dict(warmup_epochs=5),
        "scale": dict(aug="cropmix", cropmix_scale=(0.8, 0.2)),
        "does_not_exist": dict(data=str(tmp_path / "does_not_exist.npz")),
        "init": dict(init=str(tmp_path / "no_checkpoint.pt")),
    }
    for word, change in cases.items():
        config = tiny_config(tmp_path, out=str(tmp_path / f"bad_{word}"), **change)
        with pytest.raises((ValueError, FileNotFoundError), match=word):
            train(config)
        assert not (tmp_path / f"bad_{word}").exists()
    with pytest.raises(FileNotFoundError, match="resume"):
        train(tiny_config(tmp_path), resume=True)


def test_train_writes_a_complete_run(tmp_path):
    config = tiny_config(tmp_path, aug="cropmix+mixup", epochs=3, warmup_epochs=1, label_smoothing=0.1, seed=4)
    out = train(config)
    for name in ("config.json", "metrics.jsonl", "metrics.csv", "final.json", "checkpoint.pt", "curves.png"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3] and all(r["images_per_second"] > 0 for r in rows)
    assert len((out / "metrics.csv").read_text().splitlines()) == 4
    final = json.loads((out / "final.json").read_text())
    assert {"top1", "ece", "rms", "seconds_per_epoch"} <= set(final)
    assert TrainConfig.load(out / "config.json") == config.replace(image_size=16)  # as used
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(config)
    with pytest.raises(ValueError, match="lr"):
        train(tiny_config(tmp_path, aug="cropmix+mixup", epochs=3, lr=1.0), resume=True)
    # Resuming a finished run trains nothing more and keeps its checkpoint.
    before = load_checkpoint(out / "checkpoint.pt")
    train(config, resume=True)
    after = load_checkpoint(out / "checkpoint.pt")
    assert after["epoch"] == 3
    assert all(torch.equal(v, after["model"][k]) for k, v in before["model"].items())


def test_learns_and_evaluates_and_compares(tmp_path):
    runs = []
    for seed in (0, 1):
        runs.append(train(tiny_config(tmp_path, out=str(tmp_path / f"base{seed}"), epochs=4, seed=seed)))
    runs.append(train(tiny_config(tmp_path, out=str(tmp_path / "cm"), aug="cropmix", epochs=2)))
    final = json.loads((runs[0] / "final.json").read_text())
    assert final["top1"] > 50  # 4 classes of distinct colours: chance is 25%
    results = evaluate_run(runs[2], EvalOptions(fgsm=True))
    assert {"top1", "ece", "rms", "fgsm_top1"} <= set(results) and (runs[2] / "reliability.png").is_file()
    out = compare_runs(runs, tmp_path / "cmp")
    table = (out / "comparison.md").read_text()
    assert "| baseline | 2 |" in table and "| cropmix | 1 |" in table and "±" in table
    assert (out / "curves.png").is_file() and (out / "bars.png").is_file()
    # A run written before a config field existed groups with runs that leave it at its default.
    config = json.loads((runs[1] / "config.json").read_text())
    del config["shuffle_buffer"], config["aug_device"]
    (runs[1] / "config.json").write_text(json.dumps(config))
    table = (compare_runs(runs, tmp_path / "cmp_old") / "comparison.md").read_text()
    assert "| baseline | 2 |" in table


def test_conflicting_options_are_rejected_naming_both(tmp_path):
    """Settings that only apply with another one: an error naming both, before any work."""
    cases = [
        (dict(aug="baseline", cropmix_num_crops=3), "--num-crops", "--aug"),
        (dict(aug="rrc", cropmix_mix="cutmix"), "--mix", "--aug"),
        (dict(aug="cropmix", rrc_scale=(0.2, 1.0)), "--rrc-scale", "--aug"),
        (dict(aug="cropmix", mix_alpha=0.4), "--mix-alpha", "--aug"),
        (dict(optimizer="adamw", nesterov=True), "--nesterov", "--optimizer"),
        (dict(optimizer="adamw", momentum=0.8), "--momentum", "--optimizer"),
        (dict(schedule="cosine", milestones=(1,)), "--milestones", "--schedule"),
        (dict(schedule="onecycle", gamma=0.5), "--gamma", "--schedule"),
    ]
    for i, (change, first, second) in enumerate(cases):
        out = tmp_path / f"bad{i}"
        with pytest.raises(ValueError) as error:
            train(tiny_config(tmp_path, out=str(out), **change))
        assert first in str(error.value) and second in str(error.value), str(error.value)
        assert not out.exists()
    # Each of them is fine with its setting.
    for change in (dict(aug="cropmix", cropmix_num_crops=3), dict(optimizer="sgd", nesterov=False, momentum=0.5)):
        tiny_config(tmp_path, **change).validate(False)


def test_adamw_gets_its_own_learning_rate():
    from cropmix.train.config_parts import OptimSettings
    from cropmix.train.schedule import build_optimizer

    model = torch.nn.Linear(3, 2)
    adamw = build_optimizer(model, OptimSettings(optimizer="adamw"))
    sgd = build_optimizer(model, OptimSettings())
    assert isinstance(adamw, torch.optim.AdamW) and adamw.param_groups[0]["lr"] == pytest.approx(1e-3)
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.1) and sgd.param_groups[0]["nesterov"]
    assert build_optimizer(model, OptimSettings(optimizer="adamw", lr=0.01)).param_groups[0]["lr"] == 0.01


def test_config_fields_are_type_checked():
    with pytest.raises(TypeError, match=r"lr \(--lr\) must be float \| None, got '0.1' \(str\)"):
        TrainConfig.from_dict(dict(lr="0.1"))
    with pytest.raises(TypeError, match=r"epochs \(--epochs\) must be int, got 2.0"):
        TrainConfig.from_dict(dict(epochs=2.0))
    with pytest.raises(TypeError, match="cropmix_scale"):
        TrainConfig.from_dict(dict(cropmix_scale=(0.1, "1")))
    with pytest.raises(TypeError, match="progress"):
        TrainConfig.from_dict(dict(progress="no"))
    config = TrainConfig.from_dict(dict(lr=1, milestones=[2, 3], data=Path("d")))  # an int for a float, a list
    assert config.optim.milestones == (2, 3) and config.data.path == "d"


def test_step_schedule_in_short_runs_and_the_logged_lr(tmp_path):
    """Default milestones stay inside the run (1 epoch: none); metrics log the lr each epoch trained with."""
    one = tiny_config(tmp_path, epochs=1, schedule="step")
    assert [lr_factor(s, 4, one.optim) for s in range(4)] == [1.0] * 4
    two = tiny_config(tmp_path, epochs=2, schedule="step")
    assert [lr_factor(s, 4, two.optim) for s in (0, 3, 4, 7)] == pytest.approx([1, 1, 0.1, 0.1])
    with pytest.raises(ValueError, match="milestones"):
        tiny_config(tmp_path, epochs=4, schedule="step", milestones=(3, 2)).validate(False)
    out = train(tiny_config(tmp_path, epochs=2, schedule="step", lr=0.2))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == pytest.approx([0.2, 0.02])
    cosine = train(tiny_config(tmp_path, out=str(tmp_path / "cos"), epochs=2, lr=0.2))
    first = json.loads((cosine / "metrics.jsonl").read_text().splitlines()[0])["lr"]
    assert 0.1 < first < 0.2  # the mean over the epoch's steps, not the rate after it (about 0.1)


def test_no_progress_draws_no_bar(tmp_path, capfd):
    train(tiny_config(tmp_path, epochs=1, progress=False))
    err = capfd.readouterr().err
    assert "predict" not in err and "epoch 1/1" not in err and "it/s" not in err


def test_a_failed_run_leaves_nothing_to_resume_and_resume_trusts_the_checkpoint(tmp_path, monkeypatch):
    import cropmix.train.loop as loop

    real = loop.train_one_epoch

    def crash_in(epoch_to_crash):
        def step(run, epoch):
            if epoch == epoch_to_crash:
                raise RuntimeError("simulated crash")
            return real(run, epoch)

        return step

    monkeypatch.setattr(loop, "train_one_epoch", crash_in(0))
    with pytest.raises(RuntimeError, match="simulated"):
        train(tiny_config(tmp_path))
    assert not (tmp_path / "run" / "config.json").exists()
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(tiny_config(tmp_path), resume=True)
    monkeypatch.setattr(loop, "train_one_epoch", crash_in(1))
    with pytest.raises(RuntimeError, match="simulated"):
        train(tiny_config(tmp_path))
    # config.json rewritten by hand (or by another run) does not make a different request resumable.
    tiny_config(tmp_path, lr=1.0).save(tmp_path / "run" / "config.json")
    with pytest.raises(ValueError, match=r"\['lr'\] differ from .*checkpoint.pt"):
        train(tiny_config(tmp_path, lr=1.0), resume=True)
    monkeypatch.setattr(loop, "train_one_epoch", real)
    assert load_checkpoint(train(tiny_config(tmp_path), resume=True) / "checkpoint.pt")["epoch"] == 2


def test_skip_bad_reports_a_total_every_epoch(tmp_path, caplog):
    import logging

    from helpers import make_folder

    root = make_folder(tmp_path / "data", per_class=8, size=16)
    for name in ("train/class1/x1.png", "train/class1/x2.png", "train/class0/x3.png", "val/class1/y.png"):
        (root / name).write_bytes(b"broken")
    config = tiny_config(
        tmp_path, dataset="imagefolder", data=str(root), image_size=16, batch_size=19, epochs=2, skip_bad=True
    )
    with caplog.at_level(logging.WARNING, logger="cropmix"):
        out = train(config)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 19 files (3 broken) make one batch: every file is read in each epoch.
    assert [r["skipped_files"] for r in rows] == [3, 3] and [r["test_skipped_files"] for r in rows] == [1, 1]
    assert "epoch 1: skipped 3 unreadable training files" in caplog.text
    assert "epoch 2: skipped 3 unreadable training files" in caplog.text


def test_resolve_device():
    from cropmix.train.distributed import DistInfo, resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "cuda:x", "cuda:", 3):
        with pytest.raises(ValueError, match="device must be one of"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
        return
    assert resolve_device("auto") == torch.device("cuda", 0) == resolve_device("cuda")
    assert torch.cuda.current_device() == 0
    with pytest.raises(ValueError, match="torchrun"):
        resolve_device("cuda:0", DistInfo(rank=1, world=2, local_rank=1))
    with pytest.raises(ValueError, match="only"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
