"""The data of a training run: its source (by config), its image size and its loaders.

Where the augmentation runs follows the data (TrainConfig.aug_device): image files and in-memory
arrays go through DataLoader workers (`cropmix.data.make_loader`); WebDataset shards are read as
bytes by the workers and decoded and augmented on the training device
(`cropmix.data.device_loader.webdataset_loader`). Either way the loaders yield (images, targets)
with images as uint8 or as floats in [0, 1]: the models normalise inside.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import torch

from cropmix.data import (
    AugmentSpec,
    Batching,
    DataSource,
    FolderIndex,
    eval_transform,
    largest_file_size,
    load_source,
    make_loader,
    subset,
)
from cropmix.data.shards import ShardSplit

from .config import TrainConfig
from .config_parts import TrainData
from .distributed import DistInfo

DEFAULT_FILE_SIZE = 224  # the training side of images read from files or shards, unless image_size says


def source_of(data: TrainData, *, progress: bool = True) -> DataSource:
    """The dataset `data` names, opened as its run reads it (`progress`: bars while opening it)."""
    return load_source(
        data.dataset, data.path, download=data.download, skip_bad=data.skip_bad, in_memory=data.in_memory,
        hf_keys=data.hf_keys(), progress=progress,
    )  # fmt: skip


def image_size_of(data: TrainData, source: DataSource) -> int:
    """The run's image side: image_size, else the side of in-memory images, else for a folder of
    files the shorter side of the largest of a few (at most 224: small files train at their own
    size, not upsampled), else 224."""
    if data.image_size:
        return data.image_size
    if source.in_memory:
        return int(source.train.images.shape[-1])
    if isinstance(source.train, FolderIndex):
        largest = largest_file_size(source.train)
        if largest is not None:
            return min(DEFAULT_FILE_SIZE, *largest)
    return DEFAULT_FILE_SIZE


class RunData(NamedTuple):
    """The data of a run: its loaders, what they hold and the image side they give."""

    train_loader: Any
    test_loader: Any  # this process's share of the test split
    full_test: Any  # all of it, for rank 0's final evaluation
    num_classes: int
    image_size: int
    train_images: int
    test_images: int


def prepare_data(
    config: TrainConfig, info: DistInfo, pin: bool = False, device: torch.device | str | None = None
) -> RunData:
    """The loaders of `config`'s data (see `RunData`).

    device: where shards are decoded and augmented (dataset "webdataset"; default the CPU); pin: pinned
    host memory for the batches, for asynchronous copies to a GPU.
    """
    data = config.data
    source = source_of(data, progress=config.run.progress)
    train_split = subset(source.train, data.max_train_images)
    test_split = subset(source.test, data.max_test_images)
    size = image_size_of(data, source)
    if isinstance(train_split, ShardSplit):
        device = torch.device("cpu" if device is None else device)
        loaders = shard_loaders(config, train_split, test_split, source.num_classes, size, info, device)
        return RunData(*loaders, source.num_classes, size, len(train_split), len(test_split))
    in_memory = source.in_memory
    on_device = config.augments_on_device()  # in memory (checked): workers only gather, the device augments
    transform, batched = (None, False) if on_device else worker_transform(config, train_split, size, in_memory)
    train_loader = make_loader(train_split, transform, run_batching(config, info, True, pin), batched_transform=batched)
    if on_device:
        train_loader = device_stage(config, train_loader, size, torch.device("cpu" if device is None else device))
    test_tf = None if in_memory else eval_transform(size, False)
    evaluation = run_batching(config, info, False, pin, workers=0 if in_memory else config.run.workers)
    test_loader = make_loader(test_split, test_tf, evaluation)
    full_test = make_loader(test_split, test_tf, dataclasses.replace(evaluation, rank=0, world=1))
    return RunData(train_loader, test_loader, full_test, source.num_classes, size, len(train_split), len(test_split))


def worker_transform(config: TrainConfig, split: Any, size: int, in_memory: bool) -> tuple[Any, bool]:
    """(the training transform workers run, whether it takes whole batches) for `config`'s augmentation."""
    spec = config.augment_spec(size)
    if config.aug.timm_aug is not None:  # timm's transform around this run's CropMix (aug "cropmix", checked)
        from cropmix.integrations.timm import train_transform as timm_transform

        return timm_transform(size, in_memory, spec.preset, spec.cropmix_overrides, **config.aug.timm_aug), False
    return spec.for_workers(in_memory, largest_file_size(split) if isinstance(split, FolderIndex) else None)


def device_stage(config: TrainConfig, loader: Any, size: int, device: torch.device) -> Any:
    """`loader` (un-augmented uint8 batches) wrapped so that `config`'s augmentation and the flip run on
    `device`, batched, as they do for shards."""
    from cropmix.data.device_loader import DevicePipeline, DeviceStage

    spec = config.augment_spec(size)
    return DeviceStage(loader, DevicePipeline(spec.for_device(), device=device, flip=spec.base != "none"))


def run_batching(config: TrainConfig, info: DistInfo, train: bool, pin: bool, workers: int | None = None) -> Batching:
    """How this process batches the training (`train`) or test split of `config`'s run."""
    batch_size = config.optim.batch_size if train else config.run.eval_batch_size
    workers = config.run.workers if workers is None else workers
    return Batching(
        batch_size, train=train, seed=config.run.seed, rank=info.rank, world=info.world, workers=workers,
        pin_memory=pin, skip_bad=config.data.skip_bad,
    )  # fmt: skip


def shard_loaders(
    config: TrainConfig,
    train: ShardSplit,
    test: ShardSplit,
    num_classes: int,
    size: int,
    info: DistInfo,
    device: torch.device,
) -> tuple[Any, Any, Any]:
    """Training, test (this rank's share) and full test batches of tar shards, decoded and augmented on
    `device`: each training image once per epoch over all ranks (the same number of batches on each)."""
    from cropmix.data.device_loader import webdataset_loader

    spec = config.augment_spec(size)
    pin, shuffle_buffer = device.type == "cuda", config.data.setting("shuffle_buffer")
    training = run_batching(config, info, True, pin)
    train_loader = webdataset_loader(
        train, spec, training, device=device, num_classes=num_classes, shuffle_buffer=shuffle_buffer
    )
    evaluation = run_batching(config, info, False, pin)
    test_loader = webdataset_loader(test, spec, evaluation, device=device, num_classes=num_classes)
    everything = dataclasses.replace(evaluation, rank=0, world=1)
    full_test = webdataset_loader(test, spec, everything, device=device, num_classes=num_classes)
    return train_loader, test_loader, full_test


def eval_loader(
    data: TrainData, source: DataSource, split: Any, batch_size: int, device: torch.device, workers: int
) -> Any:
    """Batches of `split` (all of it, in order) for evaluating a run on `data`, the way its test loader
    reads them: uint8 in-memory batches, files resized and centre-cropped in `workers` workers, or shards
    read by `workers` workers and decoded on `device`."""
    size = image_size_of(data, source)
    on_cuda = device.type == "cuda"
    if isinstance(split, ShardSplit):
        from cropmix.data.device_loader import webdataset_loader

        batching = Batching(batch_size, workers=workers, pin_memory=on_cuda, skip_bad=data.skip_bad)
        return webdataset_loader(
            split, AugmentSpec("none", size), batching, device=device, num_classes=source.num_classes
        )
    transform = None if source.in_memory else eval_transform(size, False)
    in_workers = 0 if source.in_memory else workers
    return make_loader(
        split, transform, Batching(batch_size, workers=in_workers, pin_memory=on_cuda, skip_bad=data.skip_bad)
    )
