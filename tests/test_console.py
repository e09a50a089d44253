"""What `cropmix train` tells its user: the size it trains at, a start-up summary, readable epoch lines."""

from __future__ import annotations

import json

import PIL.Image
from test_cli_train import base_args
from test_data import make_npz

from cropmix.cli import main


def small_folder(root, side=(20, 24)):
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                PIL.Image.new("RGB", side, (60 * i, 30, 200)).save(root / split / c / f"{i}.png")
    return root


def test_a_folder_of_small_files_trains_at_their_size_and_records_it(tmp_path, capsys):
    root = small_folder(tmp_path / "data")
    args = base_args(root, tmp_path / "run", "--epochs", "1")
    args[args.index("npz")] = "imagefolder"
    args[args.index("--batch-size") + 1] = "4"
    assert main(args) == 0
    assert json.loads((tmp_path / "run" / "config.json").read_text())["image_size"] == 20  # the shorter side
    assert "at 20 px" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # the recorded size is not a changed setting


def test_the_summary_comes_first_and_epochs_are_one_readable_line(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    assert main(base_args(data, tmp_path / "run", "--epochs", "2")) == 0
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("cropmix: training 64 images (32 test) of 4 classes at 16 px, aug baseline")
    assert f"run folder {tmp_path / 'run'}" in lines[0]
    epochs = [line for line in lines if line.startswith("cropmix: epoch ")]
    assert len(epochs) == 2 and epochs[1].startswith("cropmix: epoch 2/2 | train loss ")
    assert "{" not in epochs[0] and "test loss" in epochs[0] and "img/s" in epochs[0]
    loss = epochs[0].split("train loss ")[1].split()[0]
    assert len(loss.split(".")[1]) == 4  # fixed decimals, not 16 digits


def test_too_large_a_batch_names_the_option_and_the_split_size(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    args = base_args(data, tmp_path / "run", "--epochs", "1")
    args[args.index("--batch-size") + 1] = "1000"
    assert main(args) == 2
    assert "--batch-size 1000 x 1 process(es) is more than the 64 training images" in capsys.readouterr().err
