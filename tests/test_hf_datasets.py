"""cropmix.integrations.hf: Hugging Face datasets as a data source (--dataset hf), saved to disk or
loaded from parquet files, for training and pretraining."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import hf_dataset_dict


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


def test_hf_image_column_as_label_is_refused_in_one_line(tmp_path):
    import io

    datasets = pytest.importorskip("datasets")
    from cropmix.integrations.hf import load_hf

    def split(shades):
        images = []
        for shade in shades:
            png = io.BytesIO()
            PIL.Image.new("RGB", (8, 8), (shade, 0, 0)).save(png, format="PNG")
            images.append({"bytes": png.getvalue(), "path": None})
        features = datasets.Features({"image": datasets.Image(decode=False), "label": datasets.Value("int64")})
        return datasets.Dataset.from_dict({"image": images, "label": [0] * len(images)}, features=features)

    datasets.DatasetDict({"train": split(range(9)), "test": split([99])}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(ValueError, match=r"--hf-image-key.*--hf-label-key.*'image'") as error:
        load_hf(tmp_path / "hf", "image", "image")
    assert len(str(error.value)) < 200 and "\n" not in str(error.value)  # not the images' bytes


def test_hf_unknown_label_message_does_not_grow_with_the_labels(tmp_path):
    datasets = pytest.importorskip("datasets")
    from cropmix.integrations.hf import load_hf

    parts = hf_dataset_dict(n_train=30, n_test=1, class_label=False)
    train = parts["train"].remove_columns("label").add_column("label", [f"{i:02d}" * 500 for i in range(30)])
    test = parts["test"].remove_columns("label").add_column("label", ["new" * 500])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "hf"))
    with pytest.raises(ValueError, match=r"label 'newnew.* is not one of the training split's 30 classes") as error:
        load_hf(tmp_path / "hf")
    assert len(str(error.value)) < 400


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
