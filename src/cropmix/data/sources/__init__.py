"""Dataset formats as a registry: one module per format, each a `Source`, found by name in `SOURCES`.

A source says how to check a path before any work (`check`), how to open both splits (`open`, giving a
`DataSource`), the normalisation models trained on it default to, and whether it streams (tar shards,
decoded and augmented on the training device by default). Splits are cut to fixed subsets by
`cropmix.data.subset` through their own `select` (or, for a stream, their head).

A new format is one module defining a Source subclass plus one `register(...)` line; `cropmix train
--dataset NAME` and the Python API then accept it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["SOURCES", "DataSource", "Source", "SourceOptions", "register", "source_named"]


@dataclass
class DataSource:
    """Both splits of a dataset and its class names. A split is an ArraySplit (uint8 images in memory),
    a FolderIndex (image files), an HFSplit (a Hugging Face dataset, decoded per item like files) or a
    ShardSplit (tar shards): each has len() and targets, and all but shards `select(indices)`."""

    train: Any
    test: Any
    classes: list[str]

    @property
    def in_memory(self) -> bool:
        return hasattr(self.train, "images")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class SourceOptions:
    """How to open a source: download when missing (CIFAR), skip unreadable files, decode into memory,
    the image and label columns (Hugging Face), progress bars (indexing a folder)."""

    download: bool = True
    skip_bad: bool = False
    in_memory: bool = False
    hf_keys: tuple[str, str] = ("image", "label")
    progress: bool = True


class Source:
    """One dataset format. Subclasses set `name` and `normalisation` and implement `check` and `open`."""

    name: str
    normalisation = "imagenet"  # the mean/std of models trained on it, unless one is given
    streams = False  # read as shards: augmented on the training device by default
    in_memory = False  # always held in memory as uint8 (the others only with SourceOptions.in_memory)
    # The SourceOptions switches that mean something for this format ("skip_bad", "in_memory"): a run that
    # turns on another is refused naming it, not run as if it had been honoured.
    switches: tuple[str, ...] = ()

    def check(self, data: str | os.PathLike, options: SourceOptions) -> None:
        """Raise FileNotFoundError/ValueError naming `data` (--data) if it is not what this source reads."""
        raise NotImplementedError

    def open(self, data: str | os.PathLike, options: SourceOptions) -> DataSource:
        """Both splits of the dataset at `data`."""
        raise NotImplementedError


SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    """Add `source` to SOURCES under its name (a new name only: formats are not silently replaced)."""
    if source.name in SOURCES:
        raise ValueError(f"a source named {source.name!r} is already registered")
    SOURCES[source.name] = source
    return source


def source_named(name: str) -> Source:
    """The registered source `name`; ValueError naming dataset (--dataset) and the accepted names."""
    if name not in SOURCES:
        raise ValueError(f"dataset (--dataset) must be one of {tuple(SOURCES)}, got {name!r}")
    return SOURCES[name]


from . import cifar, hf, imagefolder, npz, webdataset  # noqa: E402, F401 - each registers its source
