"""Tar shards written by `cropmix shards` (an index.json beside them, see cropmix.data.shards), read as
bytes and decoded and augmented on the training device (cropmix.data.device_loader)."""

from __future__ import annotations

import os
from pathlib import Path

from ..shard_urls import index_location
from ..shards import INDEX_NAME, read_index
from . import DataSource, Source, SourceOptions, register


class Shards(Source):
    name = "webdataset"
    switches = ("skip_bad",)
    streams = True

    def check(self, data: str | os.PathLike, options: SourceOptions) -> None:
        """A folder holding index.json, that .json file, an http(s) URL (read when loading), or a `pipe:`
        command only if this process allowed it (cropmix.data.shard_urls.allow_pipe_url)."""
        if options.in_memory:
            raise ValueError("in_memory (--in-memory) does not apply to dataset (--dataset) 'webdataset': drop one")
        kind, text = index_location(os.fspath(data))  # a pipe: command not allowed, or another scheme, is refused
        if kind != "file":
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

    def open(self, data: str | os.PathLike, options: SourceOptions) -> DataSource:
        if options.in_memory:
            raise ValueError("in_memory (--in-memory) does not apply to dataset (--dataset) 'webdataset': drop one")
        index = read_index(data)
        return DataSource(index.split("train"), index.split("val"), index.classes)


register(Shards())
