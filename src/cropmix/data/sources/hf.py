"""A Hugging Face dataset (extra: cropmix[hf]; see cropmix.integrations.hf), decoded per item like files
or once into memory with `in_memory`."""

from __future__ import annotations

import os

from ..arrays import ArraySplit
from . import DataSource, Source, SourceOptions, register


class HuggingFace(Source):
    name = "hf"
    switches = ("in_memory",)  # items that fail to decode are errors: datasets decodes them

    def check(self, data: str | os.PathLike, options: SourceOptions) -> None:
        from cropmix.integrations.hf import check_hf_data

        check_hf_data(data)

    def open(self, data: str | os.PathLike, options: SourceOptions) -> DataSource:
        from cropmix.integrations.hf import decode_split, load_hf

        train, test = load_hf(data, *options.hf_keys)
        if not options.in_memory:
            return DataSource(train, test, train.classes)
        splits = [ArraySplit(*decode_split(split), split.classes) for split in (train, test)]
        return DataSource(splits[0], splits[1], train.classes)


register(HuggingFace())
