"""What `cropmix eval` and `cropmix compare` do with run folders and checkpoints from others: results of
two folders of one name both kept, never a download, one-line errors for a malformed checkpoint or what is
not a run folder, a run's changed data named, skipped files counted, run names escaped in tables."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import labelled_folder, last_line, make_npz, pretrain_config, tiny_mae, trained

from cropmix.cli import main
from cropmix.models.weights import CheckpointError, load_checkpoint
from cropmix.ssl import pretrain
from cropmix.train import loop
from cropmix.train.config import TrainConfig


def test_ood_results_of_two_folders_of_one_name_are_both_kept(tmp_path, capsys):
    _, out = trained(tmp_path)
    for parent in ("a", "b"):
        labelled_folder(tmp_path / parent / "val")
    said = []
    capsys.readouterr()
    for parent in ("a", "b"):
        assert main(["eval", str(out), "--data", str(tmp_path / parent / "val"), "--no-progress"]) == 0
        said.append(capsys.readouterr().out.splitlines()[0])
    files = sorted(p.name for p in out.glob("ood_val*.json"))
    assert len(files) == 2
    assert said[0].endswith("(ood_val.json):") and said[1] != said[0] and "*" not in said[1], said
    assert any(said[1].endswith(f"({name}):") for name in files)
    sources = {json.loads((out / name).read_text())["data"] for name in files}
    assert sources == {os.path.realpath(tmp_path / p / "val") for p in ("a", "b")}
    assert main(["eval", str(out), "--data", str(tmp_path / "a" / "val"), "--no-progress"]) == 0
    assert len(list(out.glob("ood_val*.json"))) == 2  # the same folder again: its own file rewritten


def test_eval_data_skip_bad(tmp_path, capsys):
    _, out = trained(tmp_path)
    root = labelled_folder(tmp_path / "ood")
    (root / "c1" / "broken.png").write_bytes(b"not an image")
    assert main(["eval", str(out), "--data", str(root), "--no-progress"]) == 2
    assert "broken.png" in last_line(capsys)
    assert main(["eval", str(out), "--data", str(root), "--no-progress", "--skip-bad", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped_files"] == 1


def test_eval_says_when_the_data_changed_since_training(tmp_path, capsys):
    data, out = trained(tmp_path)
    make_npz(data, classes=3)
    assert main(["eval", str(out)]) == 2
    assert "no longer matches what it was trained on: num_classes 4 -> 3" in last_line(capsys)


def test_eval_of_a_malformed_checkpoint_is_one_line(tmp_path, capsys):
    _, out = trained(tmp_path)
    state = load_checkpoint(out / "checkpoint.pt")
    torch.save({**state, "model": {"nonsense": torch.zeros(1)}}, out / "checkpoint.pt")
    assert main(["eval", str(out)]) == 2
    assert "'model' cannot be restored" in last_line(capsys)
    torch.save({**state, "epoch": "1"}, out / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="'epoch' holds a str, not a int"):
        loop.train(TrainConfig.load(out / "config.json"), resume=True)


def test_comparison_md_escapes_run_names(tmp_path):
    _, out = trained(tmp_path, "run", 1, "--name", "evil | 1 | 2 |\n| injected | row |")
    assert main(["compare", str(out), "--out", str(tmp_path / "cmp")]) == 0
    table = (tmp_path / "cmp" / "comparison.md").read_text().splitlines()
    assert len(table) == 3 and "injected" in table[2] and table[2].count(" | ") == table[0].count(" | ")


def test_eval_never_downloads_where_a_received_config_says(tmp_path, monkeypatch):
    import torchvision.datasets

    from cropmix.train import evaluate_run

    _, out = trained(tmp_path)
    config = json.loads((out / "config.json").read_text())
    target = tmp_path / "elsewhere" / "deep"
    config.update(dataset="cifar10", data=str(target), download=True)
    (out / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", lambda self: pytest.fail("eval downloaded"))
    with pytest.raises((FileNotFoundError, ValueError), match="deep"):
        evaluate_run(out)
    assert not (tmp_path / "elsewhere").exists()


def test_pretrain_eval_only_never_downloads_for_a_received_checkpoint(tmp_path, npz_path, monkeypatch):
    import torchvision.datasets

    from cropmix.ssl import evaluate_checkpoint

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", lambda self: pytest.fail("eval downloaded"))
    config = pretrain_config(tmp_path, npz_path, "mae", "mae-mixup", steps=1, eval_train=16, eval_test=8)
    pretrain(config, model=tiny_mae())
    checkpoint = os.path.join(config.run.out, "checkpoint.pt")
    state = load_checkpoint(checkpoint)
    state["config"].update(dataset="cifar10", data=str(tmp_path / "elsewhere" / "deep"))
    torch.save(state, checkpoint)
    with pytest.raises((FileNotFoundError, ValueError), match="deep"):
        evaluate_checkpoint(checkpoint)
    assert not (tmp_path / "elsewhere").exists()


def test_eval_of_what_is_not_a_run_folder_says_what_it_is(tmp_path, capsys):
    (tmp_path / "d.npz").write_bytes(b"PK")
    (tmp_path / "folder").mkdir()
    for given, said in (("d.npz", "is a file, not a run folder"), ("folder", "is not a run folder (no config.json)")):
        assert main(["eval", str(tmp_path / given)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and said in err and "does not exist" not in err, err


def test_eval_refuses_a_received_config_whose_image_size_would_exhaust_memory(tmp_path, capsys):
    """Every test image is resized to config.json's image_size: 12,000 px is ~220 GB for one batch of 512."""
    _, out = trained(tmp_path)
    config = json.loads((out / "config.json").read_text())
    config.update(image_size=12_000)
    (out / "config.json").write_text(json.dumps(config))
    assert main(["eval", str(out)]) == 2
    said = last_line(capsys)
    assert f"{out / 'config.json'}: image_size (--image-size) must be an int from 8 to 1024, got 12000" in said


def test_eval_names_a_dataset_root_given_where_a_class_folder_is_wanted(tmp_path, capsys):
    """--data given the dataset's root (train/ and val/ inside) rather than the folder of classes."""
    _, out = trained(tmp_path)
    root = tmp_path / "other"
    for split in ("train", "val"):
        labelled_folder(root / split)
    assert main(["eval", str(out), "--data", str(root)]) == 2
    said = last_line(capsys)
    assert f"--data '{root}' (it holds the splits ['train', 'val']: give one of them, e.g. '{root / 'val'}')" in said
    assert main(["eval", str(out), "--run-data", str(root)]) == 2
    assert f"npz file '{root}' is a folder, not an .npz file" in last_line(capsys)


def test_eval_refuses_skip_bad_where_it_applies_to_nothing(tmp_path, capsys):
    _, out = trained(tmp_path)  # trained on an npz file: arrays, no files to skip
    assert main(["eval", str(out), "--no-progress", "--skip-bad"]) == 2
    said = last_line(capsys)
    assert "--skip-bad" in said and "'npz'" in said and "--imagenet-c" in said, said


def test_a_run_trained_with_skip_bad_is_evaluated_without_skipping_unless_asked(tmp_path, capsys):
    """The run's own skip_bad must not pass on to eval unseen: a test file gone bad is an error naming it,
    and with --skip-bad it is skipped."""
    from helpers import TINY_NET, make_folder

    data = make_folder(tmp_path / "data", per_class=3, size=16)
    out = tmp_path / "run"
    args = ["train", "--dataset", "imagefolder", "--data", str(data), "--out", str(out), *TINY_NET, "--workers", "0"]
    args += ["--batch-size", "4", "--epochs", "1", "--in-memory", "--skip-bad", "--no-progress", "--device", "cpu"]
    assert main(args) == 0
    bad = sorted((data / "val").rglob("*.*"))[0]
    bad.write_bytes(b"not an image")
    capsys.readouterr()
    assert main(["eval", str(out), "--no-progress", "--device", "cpu"]) == 2
    assert bad.name in last_line(capsys)
    assert main(["eval", str(out), "--no-progress", "--device", "cpu", "--skip-bad"]) == 0
