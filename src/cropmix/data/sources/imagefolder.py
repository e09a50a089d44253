"""A folder of image files, <root>/train/<class>/... and <root>/val/ (or test/): read per image from the
files, or decoded once into memory with `in_memory`."""

from __future__ import annotations

import os
from pathlib import Path

from ..arrays import ArraySplit
from ..folder import decode_folder, index_folder, split_dir
from . import DataSource, Source, SourceOptions, register
from .paths import check_kind


class ImageFolder(Source):
    name = "imagefolder"
    switches = ("skip_bad", "in_memory")

    def check(self, data: str | os.PathLike, options: SourceOptions) -> None:
        check_kind(self.name, Path(data), wants_file=False, what="a folder with train/ and val/ (or test/) sub-folders")

    def open(self, data: str | os.PathLike, options: SourceOptions) -> DataSource:
        train = index_folder(split_dir(data, "train"), progress=options.progress)
        test = index_folder(split_dir(data, "val"), classes=train.classes, progress=options.progress)
        if not options.in_memory:
            return DataSource(train, test, train.classes)
        splits = [
            ArraySplit(*decode_folder(index, skip_bad=options.skip_bad), index.classes) for index in (train, test)
        ]
        return DataSource(splits[0], splits[1], train.classes)


register(ImageFolder())
