"""Datasets by name (the formats of cropmix.data.sources) and DataLoaders that keep the model busy
(workers, pinned memory, persistent workers).

Splits in memory are batched by index lists (one call per batch); files and Hugging Face items are read
per image in workers; shards are read by cropmix.data.device_loader, not by make_loader.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2

from ..transforms import retain_freed_memory
from .arrays import ArraySplit
from .batching import Batching
from .device_loader import DeviceBatches, DeviceStage
from .folder import FolderDataset, FolderIndex, SkippingLoader, collate_skip
from .processes import check_shared_memory, worker_options
from .sources import DataSource, SourceOptions, source_named


def check_data_path(dataset: str, data: str | os.PathLike, *, download: bool = True, in_memory: bool = False) -> None:
    """Check, before any work, that `data` is what `dataset` reads (see each source's `check`): an error
    naming --data and what the source reads otherwise."""
    source_named(dataset).check(data, SourceOptions(download=download, in_memory=in_memory))


def load_source(
    dataset: str,
    data: str | os.PathLike,
    *,
    download: bool = True,
    skip_bad: bool = False,
    in_memory: bool = False,
    hf_keys: tuple[str, str] = ("image", "label"),
    progress: bool = True,
) -> DataSource:
    """Open `dataset` at `data`; errors name the missing path, the empty class folder or the bad file.
    hf_keys: the image and label columns of an "hf" dataset; progress: bars while opening (a folder's index)."""
    options = SourceOptions(
        download=download, skip_bad=skip_bad, in_memory=in_memory, hf_keys=hf_keys, progress=progress
    )
    return source_named(dataset).open(data, options)


class ArrayBatches(Dataset):
    """Indexed by a list of indices, returns a whole batch: (batch_transform(uint8 images), targets)."""

    def __init__(self, split: ArraySplit, batch_transform: Callable | None = None) -> None:
        self.split = split
        self.batch_transform = batch_transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.int64)
        images = self.split.images[index]
        if self.batch_transform is not None:
            images = self.batch_transform(images)
        return images, self.split.targets[index]


class ShardSampler(torch.utils.data.Sampler):
    """Every `world`-th index from `rank`, in order, without padding: exact evaluation across ranks."""

    def __init__(self, length: int, rank: int = 0, world: int = 1) -> None:
        self.indices = list(range(rank, length, world))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(
    split: Any, transform: Callable | None, batching: Batching, *, batched_transform: bool = False
) -> DataLoader:
    """A DataLoader over `split`, batched as `batching` says. Training shuffles with a seeded
    DistributedSampler (reshuffle with `set_epoch(loader, epoch)`) and drops the last partial batch;
    evaluation shards in order without padding.

    `transform` is per batch if `batched_transform`, else per image. Files are then decoded to uint8
    tensors per image and `transform` takes each batch as a list (sizes may differ).
    """
    batch_size, train, workers, skip_bad = batching.batch_size, batching.train, batching.workers, batching.skip_bad
    seed, rank, world = batching.seed, batching.rank, batching.world
    length = len(split.targets)
    if train:
        sampler = DistributedSampler(range(length), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = ShardSampler(length, rank, world)
    # In-memory workers restart every epoch so that they are seeded from the per-epoch RNG state: a
    # resumed run then draws the same augmentations as an uninterrupted one. Forked, that is cheap; from
    # a fork server (DDP) the arrays move to shared memory once, at the first epoch.
    persistent = workers > 0 and not isinstance(split, ArraySplit)
    common = dict(num_workers=workers, pin_memory=batching.pin_memory, persistent_workers=persistent)
    if workers > 0:
        common["prefetch_factor"] = 4
        # Forked workers inherit retain_freed_memory; spawned or forkserver ones do not.
        common.update(worker_options(_retain_freed_memory if batched_transform else None))
    if isinstance(split, ArraySplit):
        if "multiprocessing_context" in common:  # workers from a fork server get the arrays through /dev/shm
            check_shared_memory(split.images.untyped_storage(), "the in-memory images")
        if transform is not None and not batched_transform:
            from .augment import PerImage

            transform = PerImage(transform)
        batches = BatchSampler(sampler, batch_size, drop_last=train)
        loader = DataLoader(ArrayBatches(split, transform), sampler=batches, batch_size=None, **common)
    else:
        images_of = transform if batched_transform else torch.stack
        collate = functools.partial(collate_skip, images_of=images_of, train=train)
        per_image = v2.PILToTensor() if batched_transform else transform
        if isinstance(split, FolderIndex):
            dataset = FolderDataset(split, per_image, skip_bad=skip_bad, slots=workers + 1)
        else:  # a split that serves its own (image, target) items: cropmix.integrations.hf.HFSplit
            dataset = split.torch_dataset(per_image)
        loader = (DataLoader if train else SkippingLoader)(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=train, collate_fn=collate, **common
        )
    loader.epoch_sampler = sampler  # type: ignore[attr-defined]
    return loader


def _retain_freed_memory(worker_id: int) -> None:
    retain_freed_memory()


def skipped_files(loader: DataLoader | DeviceBatches) -> int:
    """How many unreadable files a `make_loader` loader with `skip_bad` (or bad shard members a
    `webdataset_loader` one) has skipped so far (all epochs, all workers of this
    process). Files of an in-memory split were skipped when decoding."""
    if isinstance(loader, DeviceBatches):
        return len(loader.skipped)
    if isinstance(loader, DeviceStage):
        return skipped_files(loader.loader)
    dataset = loader.dataset
    return dataset.skipped_total() if isinstance(dataset, FolderDataset) else 0


def set_epoch(loader: DataLoader | DeviceBatches, epoch: int) -> None:
    """Reshuffle a training loader for `epoch` (the same order on every rank and after a resume)."""
    if isinstance(loader, DeviceBatches):
        loader.set_epoch(epoch)
        return
    if isinstance(loader, DeviceStage):
        set_epoch(loader.loader, epoch)
        return
    sampler = getattr(loader, "epoch_sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
