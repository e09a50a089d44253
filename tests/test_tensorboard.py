"""cropmix.integrations.tensorboard: TensorBoard logs of training and pretraining runs (--log tensorboard)."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_config


def _events(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_train_log_tensorboard_writes_epochs_steps_and_a_grid(tmp_path):
    pytest.importorskip("tensorboard")
    from cropmix.train import train
    from cropmix.train.run_files import read_metrics

    out = train(tiny_config(tmp_path, log="tensorboard", epochs=2))
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
        train(tiny_config(tmp_path, log="tensorboard", epochs=2))
    monkeypatch.setattr(loop, "train_one_epoch", real)
    out = train(tiny_config(tmp_path, log="tensorboard", epochs=2), resume=True)
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
    config = tiny_config(tmp_path, log="tensorboard")
    with pytest.raises(MissingExtra, match=r"pip install cropmix\[tensorboard\]"):
        config.validate(False)
    with pytest.raises(ValueError, match="log"):
        tiny_config(tmp_path, log="wandb").validate(False)
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
        config = tiny_config(
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


def test_a_link_planted_as_the_tensorboard_folder_is_refused_not_written_through(tmp_path):
    pytest.importorskip("tensorboard")
    from cropmix.data.safe_files import FileError
    from cropmix.integrations.tensorboard import TensorBoardLog

    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "tensorboard").symlink_to(outside, target_is_directory=True)
    with pytest.raises(FileError, match=r"run/tensorboard is a link, not the run's own folder"):
        TensorBoardLog(tmp_path / "run", purge_step=3)
    assert list(outside.iterdir()) == []
