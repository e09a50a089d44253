"""`cropmix train / eval / compare` end to end, DDP under torchrun, and resuming after SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import torch
from helpers import CROPMIX, base_args, make_npz

from cropmix.cli import main
from cropmix.models.weights import load_checkpoint

# The interpreter running the tests, not whichever `cropmix` script is installed.


def test_train_eval_compare_commands(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    for aug in ("baseline", "cropmix"):
        extra = ["--scale", "0.4", "1", "--num-crops", "2", "3", "--alpha", "0.5"] if aug == "cropmix" else []
        assert main(base_args(data, tmp_path / aug, "--aug", aug, "--epochs", "2", *extra)) == 0
    config = json.loads((tmp_path / "cropmix" / "config.json").read_text())
    assert config["cropmix_scale"] == [0.4, 1.0] and config["cropmix_num_crops"] == [2, 3]
    assert main(["eval", str(tmp_path / "cropmix"), "--fgsm"]) == 0
    assert "fgsm_top1" in json.loads((tmp_path / "cropmix" / "final.json").read_text())
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "baseline"), str(tmp_path / "cropmix"), "--out", str(tmp_path / "cmp")]) == 0
    printed = capsys.readouterr().out
    assert "| baseline | 1 |" in printed and "| cropmix | 1 |" in printed
    assert (tmp_path / "cmp" / "bars.png").is_file()
    # An invalid configuration: a clear message, exit status 2, nothing written.
    assert main(base_args(data, tmp_path / "bad", "--aug", "cropmix", "--scale", "0.9", "0.1")) == 2
    assert "scale" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_torchrun_two_processes_match_one(tmp_path):
    """2 CPU processes (gloo) with batch 8 each = 1 process with batch 16: the same samples per step,
    gradients averaged, so the weights agree up to float summation order (max abs difference < 1e-4;
    SGD, as Adam's normalised steps amplify rounding noise in near-zero gradients).
    A LayerNorm ViT keeps it exact (BatchNorm statistics would be per process)."""
    data = make_npz(tmp_path / "d.npz", n_train=64, n_test=20)
    common = [
        "--model",
        "vit_tiny",
        "--model-kwargs",
        '{"dim": 32, "depth": 1, "num_heads": 2}',
        "--aug",
        "none",
        "--epochs",
        "2",
        "--lr",
        "0.05",
        "--optimizer",
        "sgd",
    ]
    single = base_args(data, tmp_path / "single", *common)
    single[single.index("--batch-size") + 1] = "16"
    assert main(single) == 0
    double = base_args(data, tmp_path / "ddp", *common)
    double[double.index("--batch-size") + 1] = "8"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "cropmix",
            *double,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = (
        load_checkpoint(tmp_path / "single" / "checkpoint.pt"),
        load_checkpoint(tmp_path / "ddp" / "checkpoint.pt"),
    )
    worst = max(float((value - two["model"][key]).abs().max()) for key, value in one["model"].items())
    assert worst < 1e-4, worst
    rows = [
        [json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        for run in ("single", "ddp")
    ]
    for a, b in zip(*rows, strict=True):  # metrics reduced over ranks equal the single-process ones
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and a["test_top1"] == b["test_top1"]
    assert json.loads((tmp_path / "ddp" / "final.json").read_text())["epochs"] == 2


def test_sigkill_mid_epoch_then_resume(tmp_path):
    """Kill a run with SIGKILL inside epoch 2, resume it: it completes all epochs, with a valid
    checkpoint, and (reseeded per epoch) ends with the same weights as an uninterrupted run."""
    data = make_npz(tmp_path / "d.npz", n_train=2048, n_test=64)
    args = base_args(data, tmp_path / "killed", "--aug", "cropmix", "--epochs", "3")
    process = subprocess.Popen([*CROPMIX, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    first = time.time()
    assert ckpt.exists()
    # At once: epoch 1's checkpoint is saved, its metrics files may not be yet; resuming restores them.
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL and time.time() - first < 30
    assert load_checkpoint(ckpt)["epoch"] == 1
    assert main([*args, "--resume"]) == 0
    state = load_checkpoint(ckpt)
    rows = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert state["epoch"] == 3 and [r["epoch"] for r in rows] == [1, 2, 3]
    assert not list((tmp_path / "killed").glob("*.tmp"))
    assert main(base_args(data, tmp_path / "whole", "--aug", "cropmix", "--epochs", "3")) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")
    for key, value in whole["model"].items():
        assert torch.allclose(value.float(), state["model"][key].float(), atol=1e-5), key


def test_conflicting_or_misplaced_options_fail_before_any_work(tmp_path, capsys):
    """Each message names the options involved; nothing is written."""
    data = make_npz(tmp_path / "d.npz")
    cases = [
        (["--aug", "baseline", "--num-crops", "3"], ["--num-crops", "--aug"]),
        (["--aug", "rrc", "--mix", "cutmix"], ["--mix", "--aug"]),
        (["--optimizer", "adamw", "--nesterov"], ["--nesterov", "--optimizer"]),
        (["--dataset", "imagefolder"], ["--data", "is a file", "--dataset", "imagefolder"]),
        (["--device", "cuda:x"], ["device (--device) must be one of", "cuda:N"]),
        (["--aug", "foo"], ["aug (--aug) must be one of", "got 'foo'"]),
    ]
    for i, (extra, words) in enumerate(cases):
        out = tmp_path / f"bad{i}"
        args = base_args(data, out, *extra)
        assert main(args) == 2, extra
        err = capsys.readouterr().err
        assert all(word in err for word in words), err
        assert not out.exists()


def test_cli_adamw_trains_with_its_own_lr(tmp_path):
    data = make_npz(tmp_path / "d.npz")
    args = base_args(data, tmp_path / "adamw", "--optimizer", "adamw", "--epochs", "1", "--schedule", "constant")
    del args[args.index("--lr") : args.index("--lr") + 2]
    assert main(args) == 0
    row = json.loads((tmp_path / "adamw" / "metrics.jsonl").read_text().splitlines()[0])
    assert row["lr"] == 1e-3 and json.loads((tmp_path / "adamw" / "config.json").read_text())["lr"] is None


def test_a_reader_that_goes_away_ends_the_command_quietly():
    import subprocess
    import sys

    command = [sys.executable, "-m", "cropmix", "train", "--data", "d", "--out", "o", "--print-config"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()  # before the command prints: `cropmix ... | head -0`
    _, err = child.communicate(timeout=120)
    assert child.returncode == 1 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_switches_say_their_default_as_on_or_off(capsys):
    """--channels-last defaults to a meaning (None: on), which help said as "True"."""
    import pytest

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "channels-last memory format (default: on)" in text
    assert "(default: True)" not in text and "(default: False)" not in text
