"""Training end to end on WebDataset shards: `cropmix shards` then `cropmix train
--dataset webdataset` (decode and augmentation on the training device) sees the same images per epoch
as the ImageFolder run of the same data, evaluates, resumes exactly, and under torchrun splits every
epoch over the ranks and resumes after SIGKILL. Tiny JPEGs generated here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from helpers import ctrl_c_at_epoch

from cropmix.cli import main
from cropmix.data import AugmentSpec, Batching, subset
from cropmix.data.shards import ShardSplit
from cropmix.models.weights import load_checkpoint
from cropmix.train import TrainConfig

TINY_NET = ["--model", "fastnet", "--model-kwargs", '{"widths": [8, 8, 16, 16]}']


def make_image_folder(root: Path, train_per_class: int = 12, val_per_class: int = 5) -> Path:
    """train/ and val/ with 2 classes of 40x48 JPEGs (class 1 brighter, so a model can learn them)."""
    rng = np.random.default_rng(0)
    for split, per_class in (("train", train_per_class), ("val", val_per_class)):
        for c, name in enumerate(("dark", "light")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(rng.normal(70 + 110 * c, 30, (40, 48, 3)), 0, 255).astype(np.uint8)
                PIL.Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    """(the ImageFolder, its shards: 24 training images in shards of 5, 10 test images)."""
    root = tmp_path_factory.mktemp("shard_training")
    src = make_image_folder(root / "src")
    assert main(["shards", str(src), str(root / "shards"), "--shard-size", "5", "--no-progress"]) == 0
    return src, root / "shards"


def train_args(dataset: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        dataset,
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY_NET,
        "--image-size",
        "32",
        "--aug",
        "cropmix",
        "--preset",
        "imagenet",
        "--batch-size",
        "5",
        "--lr",
        "0.1",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--no-progress",
        *extra,
    ]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_shards_train_on_the_images_imagefolder_trains_on_and_evaluate(data, tmp_path, capsys) -> None:
    src, shards = data
    for dataset, path in (("imagefolder", src), ("webdataset", shards)):
        assert main(train_args(dataset, path, tmp_path / dataset, "--epochs", "2", "--workers", "1")) == 0
    folder, sharded = metrics(tmp_path / "imagefolder"), metrics(tmp_path / "webdataset")
    # 24 images in batches of 5, the last partial batch dropped: 20 per epoch either way.
    assert [r["train_images"] for r in sharded] == [r["train_images"] for r in folder] == [20, 20]
    config = json.loads((tmp_path / "webdataset" / "config.json").read_text())
    assert config["dataset"] == "webdataset" and config["aug_device"] == "auto" and config["shuffle_buffer"] is None
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "webdataset"), "--fgsm", "--device", "cpu", "--no-progress"]) == 0
    evaluated = json.loads((tmp_path / "webdataset" / "eval.json").read_text())
    assert 0 <= evaluated["top1"] <= 100 and "fgsm_top1" in evaluated
    # The test split is read whole, once: top-1 is a multiple of 1/10 of the 10 test images.
    assert abs(evaluated["top1"] / 10 - round(evaluated["top1"] / 10)) < 1e-6


def test_a_shard_run_stopped_after_an_epoch_resumes_as_an_uninterrupted_one(data, tmp_path) -> None:
    """Shard order, shuffle buffer and device augmentation are seeded per epoch: stopping after epoch 1
    and resuming gives the weights of a run that never stopped."""
    _, shards = data
    extra = ("--epochs", "2", "--workers", "1", "--shuffle-buffer", "4")
    assert main(train_args("webdataset", shards, tmp_path / "whole", *extra)) == 0
    with ctrl_c_at_epoch(2):
        assert main(train_args("webdataset", shards, tmp_path / "stopped", *extra)) == 130  # Ctrl-C's exit status
    assert load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["epoch"] == 1
    assert main([*train_args("webdataset", shards, tmp_path / "stopped", *extra), "--resume"]) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    resumed = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["model"]
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key
    assert [r["epoch"] for r in metrics(tmp_path / "stopped")] == [1, 2]


def test_max_images_keep_the_first_samples_in_shard_order(data, tmp_path) -> None:
    split = ShardSplit([f"s{i}.tar" for i in range(5)], [5, 5, 5, 5, 4])
    head = subset(split, 12)
    assert head.urls == ["s0.tar", "s1.tar", "s2.tar"] and head.counts == [5, 5, 2]
    assert subset(split, 0.5).num_samples == 12 and subset(split, 100) == split and subset(split, None) is split
    _, shards = data
    args = train_args("webdataset", shards, tmp_path / "few", "--epochs", "1", "--workers", "0")
    assert main([*args, "--max-train-images", "11", "--max-test-images", "3"]) == 0
    assert metrics(tmp_path / "few")[0]["train_images"] == 10  # 11 images, batches of 5


def test_the_training_loop_reshuffles_shard_loaders_and_counts_their_skips(data) -> None:
    from cropmix.data import load_source, set_epoch, skipped_files
    from cropmix.data.device_loader import webdataset_loader

    _, shards = data
    source = load_source("webdataset", shards)
    assert source.classes == ["dark", "light"] and source.test.num_samples == 10 and not source.in_memory
    loader = webdataset_loader(
        source.train,
        AugmentSpec("cropmix", 16, "imagenet"),
        Batching(train=True, batch_size=4, workers=0),
        device="cpu",
    )
    orders = []
    for epoch in (0, 1):
        set_epoch(loader, epoch)
        orders.append([labels.tolist() for _, labels in loader])
    assert loader.loader.stream.epoch == 1 and orders[0] != orders[1]
    assert skipped_files(loader) == 0


def test_shard_options_that_conflict_fail_before_any_work(data, tmp_path, capsys) -> None:
    src, shards = data
    cases = [
        ("webdataset", shards, ["--in-memory"], ["--in-memory", "--dataset", "webdataset"]),
        ("webdataset", shards, ["--aug-device", "workers"], ["--aug-device", "workers", "webdataset"]),
        ("imagefolder", src, ["--aug-device", "device"], ["--aug-device", "in memory or as shards", "--in-memory"]),
        ("imagefolder", src, ["--shuffle-buffer", "10"], ["--shuffle-buffer", "--dataset", "webdataset"]),
        ("webdataset", shards, ["--timm-aug", "{}"], ["--timm-aug", "--dataset", "webdataset"]),
        ("webdataset", src, [], ["--data", "index.json"]),  # a folder without an index
        ("webdataset", tmp_path / "nothing.json", [], ["--data", "does not exist"]),
        ("webdataset", shards, ["--shuffle-buffer", "-1"], ["--shuffle-buffer", ">= 0"]),
    ]
    for i, (dataset, path, extra, words) in enumerate(cases):
        out = tmp_path / f"bad{i}"
        assert main([*train_args(dataset, path, out, "--epochs", "1"), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert all(word in err for word in words), (extra, err)
        assert not out.exists()
    config = TrainConfig.from_dict(dict(dataset="webdataset", data=str(shards / "index.json"), aug_device="device"))
    config.validate(cuda_available=False)  # the index file itself, and "device" spelled out, are fine
    assert config.augments_on_device() and not TrainConfig().augments_on_device()


def torchrun(args: list[str], log: Path, **popen) -> subprocess.Popen:
    """`cropmix ARGS` in 2 CPU processes under torchrun, its stderr in `log` (a pipe nobody reads could fill)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    with open(log, "wb") as err:
        return subprocess.Popen(
            [*command, "-m", "cropmix", *args], stdout=subprocess.DEVNULL, stderr=err, env=env, **popen
        )


def finished(process: subprocess.Popen, log: Path) -> None:
    assert process.wait(timeout=240) == 0, log.read_text()[-3000:]


def test_torchrun_on_shards_splits_each_epoch_and_resumes_after_sigkill(tmp_path) -> None:
    """2 CPU processes on shards: each epoch trains on every image once over both ranks (as many as one
    process does with the same global batch), and a run killed with SIGKILL (the whole process group,
    as a lost node would be) resumes under torchrun to the weights of a run that was never stopped."""
    src = make_image_folder(tmp_path / "src", train_per_class=120, val_per_class=4)
    assert main(["shards", str(src), str(tmp_path / "shards"), "--shard-size", "25", "--no-progress"]) == 0
    args = train_args("webdataset", tmp_path / "shards", tmp_path / "killed", "--epochs", "4", "--workers", "1")
    args[args.index("--batch-size") + 1] = "8"  # 240 images / 2 ranks / 8: 15 steps of 16 images
    log = tmp_path / "stderr.txt"
    process = torchrun(args, log, start_new_session=True)
    ckpt = tmp_path / "killed" / "checkpoint.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, log.read_text()[-3000:]
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL
    assert load_checkpoint(ckpt)["epoch"] < 4
    finished(torchrun([*args, "--resume"], log), log)
    rows = metrics(tmp_path / "killed")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and load_checkpoint(ckpt)["epoch"] == 4
    assert json.loads((tmp_path / "killed" / "final.json").read_text())["epochs"] == 4
    one = train_args("imagefolder", src, tmp_path / "one", "--epochs", "1", "--workers", "0")
    one[one.index("--batch-size") + 1] = "16"
    assert main(one) == 0
    assert [r["train_images"] for r in rows] == [metrics(tmp_path / "one")[0]["train_images"]] * 4 == [240] * 4
    out = args.index("--out") + 1
    finished(torchrun([*args[:out], str(tmp_path / "whole"), *args[out + 1 :]], log), log)
    uninterrupted = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    for key, value in load_checkpoint(ckpt)["model"].items():
        assert torch.equal(value, uninterrupted[key]), key
