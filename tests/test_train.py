"""The training loop, schedules, batch mixing, checkpoints, evaluation and comparison of cropmix.train."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_data import make_npz

from cropmix.train import TrainConfig, compare_runs, evaluate_run, train
from cropmix.train.checkpoint import load_checkpoint
from cropmix.train.mixing import cutmix_batch, mixup_batch, soft_cross_entropy, soft_targets
from cropmix.train.schedule import lr_factor

# A tiny fast net: trains 64 images of 16x16 for an epoch in well under a second.
TINY = {"widths": [8, 8, 16, 16]}


def tiny_config(tmp_path, **changes) -> TrainConfig:
    data = tmp_path / "d.npz"
    if not data.exists():
        make_npz(data)
    values = dict(
        dataset="npz",
        data=str(data),
        out=str(tmp_path / "run"),
        model="fastnet",
        model_kwargs=TINY,
        aug="baseline",
        epochs=2,
        batch_size=16,
        lr=0.2,
        workers=0,
        progress=False,
        eval_batch_size=32,
    )
    values.update(changes)
    return TrainConfig(**values)


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
    steps = [lr_factor(s, 5, cosine) for s in range(50)]
    assert steps[0] == pytest.approx(0.1) and steps[9] == pytest.approx(1.0)
    assert steps[-1] < 0.01 and all(a >= b for a, b in zip(steps[10:], steps[11:]))
    step = tiny_config(tmp_path, epochs=10, schedule="step", milestones=(4, 8), gamma=0.1)
    assert [lr_factor(e * 5, 5, step) for e in (0, 4, 8)] == pytest.approx([1.0, 0.1, 0.01])
    onecycle = tiny_config(tmp_path, epochs=4, schedule="onecycle")
    values = [lr_factor(s, 10, onecycle) for s in range(40)]
    assert max(values) == pytest.approx(1.0) and values[0] < 0.2 and values[-1] < 0.01
    assert math.isclose(lr_factor(3, 10, tiny_config(tmp_path, schedule="constant")), 1.0)


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
    assert TrainConfig.load(out / "config.json") == config
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
    results = evaluate_run(runs[2], fgsm=True)
    assert {"top1", "ece", "rms", "fgsm_top1"} <= set(results) and (runs[2] / "reliability.png").is_file()
    out = compare_runs(runs, tmp_path / "cmp")
    table = (out / "comparison.md").read_text()
    assert "| baseline | 2 |" in table and "| cropmix | 1 |" in table and "±" in table
    assert (out / "curves.png").is_file() and (out / "bars.png").is_file()
