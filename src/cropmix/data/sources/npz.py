"""An .npz file in cropmix's format (see cropmix.data.arrays), held in memory as uint8."""

from __future__ import annotations

import os
from pathlib import Path

from ..arrays import load_npz
from . import DataSource, Source, SourceOptions, register
from .paths import check_kind


class Npz(Source):
    name = "npz"
    normalisation = "cifar10"
    in_memory = True

    def check(self, data: str | os.PathLike, options: SourceOptions) -> None:
        check_kind(self.name, Path(data), wants_file=True, what="an .npz file")

    def open(self, data: str | os.PathLike, options: SourceOptions) -> DataSource:
        train, test = load_npz(data, "train"), load_npz(data, "test")
        return DataSource(train, test, train.classes)


register(Npz())
