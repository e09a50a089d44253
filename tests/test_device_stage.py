"""Augmentation on the training device for any data held in memory (`--aug-device device`), as for shards."""

from __future__ import annotations

import json

import torch
from helpers import base_args, ctrl_c_at_epoch, make_npz, small_folder

from cropmix.cli import main
from cropmix.data import AugmentSpec, Batching, make_loader
from cropmix.data.arrays import ArraySplit
from cropmix.data.device_loader import DevicePipeline, DeviceStage
from cropmix.models.weights import load_checkpoint


def test_the_stage_augments_whole_batches_on_the_device():
    images = torch.randint(0, 256, (12, 3, 20, 24), dtype=torch.uint8)
    loader = make_loader(ArraySplit(images, torch.arange(12) % 3, ["a", "b", "c"]), None, Batching(4, workers=0))
    augment = AugmentSpec("cropmix", 16, "cifar").for_device()
    stage = DeviceStage(loader, DevicePipeline(augment, device="cpu", flip=True))
    batches = list(stage)
    assert len(stage) == len(batches) == 3
    out, labels = batches[0]
    assert out.shape == (4, 3, 16, 16) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    assert labels.tolist() == [0, 1, 2, 0]
    assert not torch.equal(batches[0][0], batches[1][0])


def test_npz_trains_with_cropmix_on_the_device_and_resumes_exactly(tmp_path):
    data = make_npz(tmp_path / "d.npz")
    device = ["--aug", "cropmix", "--aug-device", "device", "--epochs", "2"]
    assert main(base_args(data, tmp_path / "whole", *device)) == 0
    assert json.loads((tmp_path / "whole" / "config.json").read_text())["aug_device"] == "device"
    with ctrl_c_at_epoch(2):
        assert main(base_args(data, tmp_path / "stopped", *device)) == 130
    assert main(base_args(data, tmp_path / "stopped", *device, "--resume")) == 0
    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["model"]
    resumed = load_checkpoint(tmp_path / "stopped" / "checkpoint.pt")["model"]
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key


def test_files_read_per_image_need_memory_or_shards(tmp_path, capsys):
    root = small_folder(tmp_path / "data")
    args = base_args(root, tmp_path / "run", "--epochs", "1", "--aug-device", "device")
    args[args.index("npz")] = "imagefolder"
    args[args.index("--batch-size") + 1] = "4"
    assert main(args) == 2
    assert "needs the images in memory or as shards" in capsys.readouterr().err
    assert main([*args, "--in-memory"]) == 0
