"""What `cropmix train` tells its user: the size it trains at, a start-up summary, readable epoch lines."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from helpers import base_args, make_npz, small_folder

from cropmix.cli import main


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


def test_bad_json_options_say_what_json_is_wanted(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--data", "x", "--out", "y", "--model-kwargs", "{bad"])
    err = capsys.readouterr().err
    assert "argument --model-kwargs: must be a JSON object" in err and "single quotes" in err


def test_an_image_folder_under_the_default_dataset_suggests_imagefolder(tmp_path, capsys):
    root = small_folder(tmp_path / "data")
    assert main(["train", "--data", str(root), "--out", str(tmp_path / "run")]) == 2
    assert "pass --dataset imagefolder" in capsys.readouterr().err
    assert not (root / "cifar-10-batches-py").exists()  # no download tried into it


def test_a_missing_extra_is_one_line_before_any_data_is_read(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now fails, as without the extra
    args = base_args(tmp_path / "absent.npz", tmp_path / "run", "--epochs", "1")
    args[args.index("fastnet")] = "timm:resnet18"
    assert main(args) == 2
    assert "needs the 'timm' package, which is not installed: pip install cropmix[timm]" in capsys.readouterr().err


def test_resuming_with_more_epochs_says_how_to_train_further(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    assert main(base_args(data, tmp_path / "run", "--epochs", "1")) == 0
    assert main(base_args(data, tmp_path / "run", "--epochs", "2", "--resume")) == 2
    assert "start a new run with --init" in capsys.readouterr().err


def test_eval_of_a_moved_dataset_and_of_a_pretrain_run(tmp_path, capsys, monkeypatch):
    data = make_npz(tmp_path / "d.npz")
    assert main(base_args(data, tmp_path / "run", "--epochs", "1")) == 0
    moved = tmp_path / "moved.npz"
    shutil.move(data, moved)
    assert main(["eval", str(tmp_path / "run"), "--run-data", str(moved)]) == 0
    mae = '{"dim": 32, "depth": 1, "heads": 2, "decoder_dim": 16, "decoder_depth": 1, "patch_size": 4}'
    evaluation = ["--eval-train", "32", "--eval-test", "16", "--probe-epochs", "1", "--knn-k", "5"]
    pretrain = ["pretrain", "--method", "mae", "--aug", "standard", "--dataset", "npz", "--data", str(moved),
                "--out", str(tmp_path / "mae"), "--mae-kwargs", mae, "--image-size", "16", "--steps", "2",
                "--batch-size", "16", "--no-progress", "--threads", "1", *evaluation]  # fmt: skip
    assert main(pretrain) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "mae")]) == 2
    assert (
        "is a `cropmix pretrain` run (mae): evaluate it with `cropmix pretrain --eval-only" in capsys.readouterr().err
    )
    monkeypatch.chdir(tmp_path)  # neither --method nor --data: both come from the checkpoint
    assert main(["pretrain", "--eval-only", str(tmp_path / "mae" / "checkpoint.pt"), *evaluation]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 2


def test_the_mae_kwargs_example_of_the_help_builds():
    from cropmix.cli import build_parser
    from cropmix.ssl import MAE

    pretrain = build_parser(["pretrain"])._subparsers._group_actions[0].choices["pretrain"]
    (help_text,) = [a.help for a in pretrain._actions if a.dest == "mae_kwargs"]
    MAE(image_size=32, **json.loads(help_text.split("e.g. '")[1].split("'")[0]))


def test_eval_prints_a_summary_and_json_on_request(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    assert main(base_args(data, tmp_path / "run", "--epochs", "1")) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--fgsm", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "scored on the run's test split (eval.json):" and len(lines) == 3
    assert lines[1].startswith("  top-1 ") and "ECE " in lines[1] and "RMS -" in lines[1]  # 32 images: no RMS
    assert lines[2].startswith("  FGSM top-1 ")
    assert main(["eval", str(tmp_path / "run"), "--json", "--no-progress"]) == 0
    assert json.loads(capsys.readouterr().out)["rms"] is None


def test_model_errors_name_the_options_and_come_before_any_data(tmp_path, capsys):
    missing = tmp_path / "absent.npz"  # never read: the model is checked first
    args = base_args(missing, tmp_path / "run", "--epochs", "1")
    args[args.index("fastnet")] = "resnet18"
    assert main(args) == 2
    assert "model (--model) 'resnet18' with model_kwargs (--model-kwargs)" in capsys.readouterr().err
    args = base_args(missing, tmp_path / "run", "--epochs", "1", "--image-size", "30")
    args[args.index("fastnet")], args[args.index("--model-kwargs") + 1] = "vit_tiny", "{}"
    assert main(args) == 2
    assert "at image size 30: the image size 30x30 must be a multiple of the patch size 4" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "option", "example"),
    [
        ("train", "--timm-aug", '{"auto_augment": "rand-m9-mstd0.5"}'),
        ("train", "--model-kwargs", '{"widths": [8, 16, 32, 64]}'),
        ("pretrain", "--mae-kwargs", '{"dim": 128, "depth": 4, "heads": 4}'),
    ],
)
def test_bad_json_shows_the_options_own_example(capsys, command, option, example):
    with pytest.raises(SystemExit):
        main([command, "--data", "x", "--out", "y", option, "{bad"])
    err = capsys.readouterr().err
    assert f"argument {option}: must be a JSON object such as '{example}'" in err, err
    if option != "--model-kwargs":
        assert "widths" not in err
    with pytest.raises(SystemExit):
        main([command, "--data", "x", "--out", "y", option, "[1]"])
    assert f"such as '{example}', got '[1]'" in capsys.readouterr().err
