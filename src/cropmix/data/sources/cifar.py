"""CIFAR-10 and CIFAR-100 in torchvision's format, downloaded when missing, held in memory as uint8."""

from __future__ import annotations

import os
from pathlib import Path

from ..arrays import load_cifar
from ..shards import INDEX_NAME
from . import DataSource, Source, SourceOptions, register
from .paths import check_kind


class Cifar(Source):
    """`data`: the folder holding (or to hold, with download) cifar-10-batches-py / cifar-100-python."""

    in_memory = True

    def __init__(self, name: str) -> None:
        self.name = self.normalisation = name  # the dataset's own mean and std

    def check(self, data: str | os.PathLike, options: SourceOptions) -> None:
        path = Path(data)
        if not path.exists() and options.download:
            return
        if path.is_dir():
            _check_not_another_format(self.name, path)
        check_kind(self.name, path, wants_file=False, what="a folder")

    def open(self, data: str | os.PathLike, options: SourceOptions) -> DataSource:
        train = load_cifar(self.name, data, train=True, download=options.download)
        test = load_cifar(self.name, data, train=False, download=options.download)
        return DataSource(train, test, train.classes)


def _check_not_another_format(name: str, path: Path) -> None:
    """A folder given to CIFAR (the default dataset) that is an image or a shard folder is named as such,
    instead of a download being tried into it."""
    looks_like = None
    if (path / INDEX_NAME).is_file():
        looks_like = ("webdataset", f"a shard folder (it holds {INDEX_NAME})")
    elif (path / "train").is_dir() and any((path / d).is_dir() for d in ("val", "test")):
        looks_like = ("imagefolder", "an image folder (it holds train/ and val/ or test/)")
    if looks_like is not None:
        raise ValueError(
            f"data (--data) {str(path)!r} looks like {looks_like[1]}, but dataset (--dataset) is {name!r} "
            f"(the default): pass --dataset {looks_like[0]}"
        )


register(Cifar("cifar10"))
register(Cifar("cifar100"))
