"""Augmentation on the training device for any data held in memory (`--aug-device device`), as for shards."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import LoggedTensor, base_args, ctrl_c_at_epoch, make_npz, simulate_cuda_streams, small_folder

from cropmix.cli import main
from cropmix.data import AugmentSpec, Batching, make_loader
from cropmix.data.arrays import ArraySplit
from cropmix.data.device_loader import DevicePipeline, DeviceStage
from cropmix.models.weights import load_checkpoint


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_the_stage_gives_every_batch_in_order_as_the_pipeline_makes_it(device):
    images = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8)
    loader = make_loader(ArraySplit(images, torch.arange(10), ["a"]), None, Batching(4, workers=0))
    evaluation = AugmentSpec("none", 8).for_device()  # deterministic: resize and centre crop
    stage = DeviceStage(loader, DevicePipeline(evaluation, device=device, flip=False))
    out = [(x.cpu(), y.cpu()) for x, y in stage]  # on CUDA: copied on the side stream, in order
    assert [len(y) for _, y in out] == [4, 4, 2] and torch.cat([y for _, y in out]).tolist() == list(range(10))
    on_cpu = DevicePipeline(evaluation, device="cpu", flip=False)
    expected = torch.cat([on_cpu.finish(on_cpu.augment(images[k : k + 4])) for k in (0, 4, 8)])
    assert torch.allclose(torch.cat([x for x, _ in out]), expected, atol=1e-4)
    assert out[0][0].dtype == torch.float32 and 0 <= expected.min() and expected.max() <= 1


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


class _Host:
    """Stands in for a pinned host tensor: its copy to the device is logged with the stream it is queued on."""

    def __init__(self, name: str, log: list, active: list) -> None:
        self.name, self.log, self.active = name, log, active

    def to(self, device, non_blocking=False) -> LoggedTensor:
        self.log.append(("copy", self.name, self.active[-1].name, non_blocking))
        return LoggedTensor(self.name, self.log)


class _Pipeline:
    def __init__(self, log: list, active: list) -> None:
        self.device, self.log, self.active = torch.device("cuda", 0), log, active

    def augment(self, images: LoggedTensor) -> LoggedTensor:
        self.log.append(("augment", images.name, self.active[-1].name))
        return images

    def finish(self, images: LoggedTensor) -> LoggedTensor:
        return images


def test_on_cuda_the_next_batch_is_copied_on_a_side_stream_while_this_one_is_worked_on(monkeypatch):
    log: list = []
    active = simulate_cuda_streams(monkeypatch, log)
    batches = [(_Host(f"x{k}", log, active), _Host(f"y{k}", log, active)) for k in range(2)]
    out = [images.name for images, _ in DeviceStage(batches, _Pipeline(log, active))]
    assert out == ["x0", "x1"]
    copy = [("copy", "x0", "side", True), ("copy", "y0", "side", True)]
    take0 = [("wait", "caller", "side"), ("record", "x0", "caller"), ("record", "y0", "caller")]
    copy1 = [("copy", "x1", "side", True), ("copy", "y1", "side", True)]
    take1 = [("wait", "caller", "side"), ("record", "x1", "caller"), ("record", "y1", "caller")]
    assert log == copy + take0 + copy1 + [("augment", "x0", "caller")] + take1 + [("augment", "x1", "caller")]
