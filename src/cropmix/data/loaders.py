"""Datasets by name and DataLoaders that keep the model busy (workers, pinned memory, persistent workers).

Datasets: "cifar10", "cifar100" (torchvision format, downloaded when missing), "npz" (an .npz file,
see cropmix.data.arrays), "imagefolder" (train/ and val/ or test/ under the root), "hf" (a Hugging Face
dataset, see cropmix.integrations.hf; extra cropmix[hf]), "webdataset" (tar shards with an index.json
written by `cropmix shards`, see cropmix.data.shards; read and augmented by
cropmix.data.device_loader, not by make_loader). CIFAR and npz
are held in memory as uint8 and batched by index lists (one call per batch); ImageFolder is read
from files per image, or decoded once into memory with `in_memory`.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler
from torchvision.transforms import v2

from ..transforms import retain_freed_memory
from .arrays import ArraySplit, load_cifar, load_npz
from .device_loader import DeviceBatches
from .folder import FolderDataset, FolderIndex, collate_skip, decode_folder, index_folder, split_dir
from .shard_urls import index_location
from .shards import INDEX_NAME, ShardSplit, read_index

if TYPE_CHECKING:
    from cropmix.integrations.hf import HFSplit

DATASETS = ("cifar10", "cifar100", "npz", "imagefolder", "hf", "webdataset")


@dataclass
class DataSource:
    """Both splits of a dataset: in memory (ArraySplit), as file lists (FolderIndex), a Hugging Face
    dataset (cropmix.integrations.hf.HFSplit, decoded per item like files) or tar shards (ShardSplit)."""

    train: ArraySplit | FolderIndex | HFSplit | ShardSplit
    test: ArraySplit | FolderIndex | HFSplit | ShardSplit
    classes: list[str]

    @property
    def in_memory(self) -> bool:
        return isinstance(self.train, ArraySplit)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def check_data_path(dataset: str, data: str | os.PathLike, *, download: bool = True) -> None:
    """Check, before any work, that `data` is what `dataset` reads: an .npz file for "npz", a folder
    (train/ and val/ or test/) for "imagefolder", a folder (or nothing yet, if `download`) for CIFAR;
    for "hf" a folder or a dataset name, with the `datasets` package installed; for "webdataset" a folder
    holding index.json, the index's .json file, or an http(s) URL (not checked until it is read); a
    `pipe:` command only if this process allowed it (cropmix.data.shard_urls.allow_pipe_url)."""
    if dataset == "hf":
        from cropmix.integrations.hf import check_hf_data

        return check_hf_data(data)
    if dataset == "webdataset":
        return _check_index_path(data)
    path = Path(data)
    wants_file = dataset == "npz"
    what = "an .npz file" if wants_file else "a folder"
    if dataset == "imagefolder":
        what += " with train/ and val/ (or test/) sub-folders"
    if not path.exists():
        if dataset in ("cifar10", "cifar100") and download:
            return
        raise FileNotFoundError(f"data (--data) {str(path)!r} does not exist; dataset {dataset!r} reads {what}")
    if dataset in ("cifar10", "cifar100") and path.is_dir():
        _check_cifar_folder(dataset, path)
    if path.is_file() != wants_file:
        kind = "a file" if path.is_file() else "a folder"
        hint = " (an .npz file is read with --dataset npz)" if path.suffix == ".npz" and not wants_file else ""
        raise ValueError(
            f"data (--data) {str(path)!r} is {kind}, but dataset (--dataset) {dataset!r} reads {what}{hint}"
        )


def _check_cifar_folder(dataset: str, path: Path) -> None:
    """A folder given to the CIFAR loaders that is not theirs (an image folder, a shard folder) is named
    as what it looks like, instead of a download being tried into it."""
    looks_like = None
    if (path / INDEX_NAME).is_file():
        looks_like = ("webdataset", f"a shard folder (it holds {INDEX_NAME})")
    elif (path / "train").is_dir() and any((path / d).is_dir() for d in ("val", "test")):
        looks_like = ("imagefolder", "an image folder (it holds train/ and val/ or test/)")
    if looks_like is not None:
        raise ValueError(
            f"data (--data) {str(path)!r} looks like {looks_like[1]}, but dataset (--dataset) is {dataset!r} "
            f"(the default): pass --dataset {looks_like[0]}"
        )


def _check_index_path(data: str | os.PathLike) -> None:
    kind, text = index_location(os.fspath(data))  # a pipe: command not allowed, or another scheme, is refused
    if kind != "file":  # an http(s) URL or an allowed command, read when loading
        return
    path = Path(text)
    what = f"dataset (--dataset) 'webdataset' reads a folder holding {INDEX_NAME} (written by `cropmix shards`), "
    what += "that .json file, or a URL"
    if path.is_dir() and not (path / INDEX_NAME).is_file():
        raise FileNotFoundError(f"data (--data) {text!r} is a folder without {INDEX_NAME}; {what}")
    if not path.exists():
        raise FileNotFoundError(f"data (--data) {text!r} does not exist; {what}")
    if path.is_file() and path.suffix != ".json":
        raise ValueError(f"data (--data) {text!r} is not a .json file; {what}")


def load_source(
    dataset: str,
    data: str | os.PathLike,
    *,
    download: bool = True,
    skip_bad: bool = False,
    in_memory: bool = False,
    hf_keys: tuple[str, str] = ("image", "label"),
) -> DataSource:
    """Open `dataset` at `data`; errors name the missing path, the empty class folder or the bad file.
    hf_keys: the image and label columns of an "hf" dataset."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {DATASETS}, got {dataset!r}")
    if dataset in ("cifar10", "cifar100"):
        train = load_cifar(dataset, data, train=True, download=download)
        test = load_cifar(dataset, data, train=False, download=download)
        return DataSource(train, test, train.classes)
    if dataset == "npz":
        train, test = load_npz(data, "train"), load_npz(data, "test")
        return DataSource(train, test, train.classes)
    if dataset == "hf":
        return _load_hf(data, hf_keys, in_memory)
    if dataset == "webdataset":
        if in_memory:
            raise ValueError("in_memory (--in-memory) does not apply to dataset (--dataset) 'webdataset': drop one")
        index = read_index(data)
        return DataSource(index.split("train"), index.split("val"), index.classes)
    train_index = index_folder(split_dir(data, "train"))
    test_index = index_folder(split_dir(data, "val"), classes=train_index.classes)
    if not in_memory:
        return DataSource(train_index, test_index, train_index.classes)
    splits = []
    for index in (train_index, test_index):
        images, targets = decode_folder(index, skip_bad=skip_bad)
        splits.append(ArraySplit(images, targets, index.classes))
    return DataSource(splits[0], splits[1], train_index.classes)


def _load_hf(data: str | os.PathLike, keys: tuple[str, str], in_memory: bool) -> DataSource:
    from cropmix.integrations.hf import decode_split, load_hf

    train, test = load_hf(data, *keys)
    if not in_memory:
        return DataSource(train, test, train.classes)
    splits = [ArraySplit(*decode_split(split), split.classes) for split in (train, test)]
    return DataSource(splits[0], splits[1], train.classes)


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
    split: ArraySplit | FolderIndex | HFSplit,
    transform: Callable | None,
    *,
    batch_size: int,
    train: bool,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
    workers: int = 2,
    pin_memory: bool = False,
    skip_bad: bool = False,
    batched_transform: bool = False,
) -> DataLoader:
    """A DataLoader over `split`. Training shuffles with a seeded DistributedSampler (reshuffle with
    `set_epoch(loader, epoch)`) and drops the last partial batch; evaluation shards in order without padding.

    `transform` is per batch if `batched_transform`, else per image. Files are then decoded to uint8
    tensors per image and `transform` takes each batch as a list (sizes may differ).
    """
    length = len(split.targets)
    if train:
        sampler = DistributedSampler(range(length), num_replicas=world, rank=rank, shuffle=True, seed=seed)
    else:
        sampler = ShardSampler(length, rank, world)
    # In-memory workers restart every epoch (cheap, forked) so that they are seeded from the
    # per-epoch RNG state: a resumed run then draws the same augmentations as an uninterrupted one.
    persistent = workers > 0 and not isinstance(split, ArraySplit)
    common = dict(num_workers=workers, pin_memory=pin_memory, persistent_workers=persistent)
    if workers > 0:
        common["prefetch_factor"] = 4
        if batched_transform:  # forked workers inherit it; spawned or forkserver ones do not
            common["worker_init_fn"] = _retain_freed_memory
    if isinstance(split, ArraySplit):
        if transform is not None and not batched_transform:
            from .augment import PerImage

            transform = PerImage(transform)
        batches = BatchSampler(sampler, batch_size, drop_last=train)
        loader = DataLoader(ArrayBatches(split, transform), sampler=batches, batch_size=None, **common)
    else:
        collate = functools.partial(collate_skip, images_of=transform) if batched_transform else collate_skip
        per_image = v2.PILToTensor() if batched_transform else transform
        if isinstance(split, FolderIndex):
            dataset = FolderDataset(split, per_image, skip_bad=skip_bad, slots=workers + 1)
        else:  # a split that serves its own (image, target) items: cropmix.integrations.hf.HFSplit
            dataset = split.torch_dataset(per_image)
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=train, collate_fn=collate, **common
        )
    loader.epoch_sampler = sampler  # type: ignore[attr-defined]
    return loader


def _retain_freed_memory(worker_id: int) -> None:
    retain_freed_memory()


def skipped_files(loader: DataLoader | DeviceBatches) -> int:
    """How many unreadable files a `make_loader(..., skip_bad=True)` loader (or bad shard members a
    `webdataset_loader(..., skip_bad=True)` one) has skipped so far (all epochs, all workers of this
    process). Files of an in-memory split were skipped when decoding."""
    if isinstance(loader, DeviceBatches):
        return len(loader.skipped)
    dataset = loader.dataset
    return dataset.skipped_total() if isinstance(dataset, FolderDataset) else 0


def set_epoch(loader: DataLoader | DeviceBatches, epoch: int) -> None:
    """Reshuffle a training loader for `epoch` (the same order on every rank and after a resume)."""
    if isinstance(loader, DeviceBatches):
        loader.set_epoch(epoch)
        return
    sampler = getattr(loader, "epoch_sampler", None)
    if isinstance(sampler, DistributedSampler):
        sampler.set_epoch(epoch)
