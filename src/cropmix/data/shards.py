"""An ImageFolder as WebDataset tar shards, and the JSON index that says what the shards hold.

Layout written by `write_shards(src, out)` (ImageFolder: src/train/<class>/*, src/val/ or src/test/)::

    out/train-000000.tar ... out/val-000000.tar ...   members <key>.<ext> (the file's own bytes),
                                                      <key>.cls (the class index, ASCII), <key>.path
    out/index.json                                    classes, and per split the shards and their counts

Images are shuffled (seeded) before they are cut into shards, so every shard holds a mix of classes.
The index's shard entries may be paths relative to the index, absolute paths, URLs (anything
webdataset opens: http://, pipe:...) or brace patterns such as "train-{000000..000146}.tar";
`counts` (samples per shard, after brace expansion) is what lets readers split an epoch exactly.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from braceexpand import braceexpand

from .folder import FolderIndex, index_folder, split_dir

INDEX_NAME = "index.json"
INDEX_FORMAT = "cropmix-webdataset"
SHARD_SPLITS = ("train", "val")
# "test" is accepted as another name of the evaluation split, as for ImageFolder trees.
SPLIT_ALIASES = {"test": "val"}
_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


@dataclass
class ShardSplit:
    """One split of a shard set: shard URLs (expanded, in order) and the number of samples in each."""

    urls: list[str]
    counts: list[int]

    @property
    def num_samples(self) -> int:
        return sum(self.counts)


@dataclass
class ShardIndex:
    """What `index.json` says: class names and the splits ("train", "val")."""

    path: str
    classes: list[str]
    splits: dict[str, ShardSplit]

    def split(self, name: str) -> ShardSplit:
        """The split `name` ("train", or "val"/"test"), or an error naming the index and what it has."""
        key = SPLIT_ALIASES.get(name, name)
        if key not in self.splits:
            raise ValueError(f"shard index {self.path!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[key]


def _resolve(entry: str, base: str) -> str:
    """A shard entry as a URL webdataset can open: relative paths are taken from the index's folder."""
    if _URL_SCHEME.match(entry) and not re.match(r"^[a-zA-Z]:[\\/]", entry):
        return entry
    return entry if os.path.isabs(entry) else os.path.join(base, entry)


def _split_from_json(name: str, entry: dict, base: str, where: str) -> ShardSplit:
    patterns = entry.get("shards")
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"shard index {where!r}: splits.{name}.shards must be a non-empty list of strings")
    urls = [_resolve(url, base) for pattern in patterns for url in braceexpand(pattern)]
    counts = entry.get("counts")
    if counts is None and "shard_size" in entry and "num_samples" in entry:
        # Every shard full but the last: the layout write_shards produces.
        size, total = int(entry["shard_size"]), int(entry["num_samples"])
        counts = [min(size, total - i * size) for i in range(len(urls))]
    if (
        not isinstance(counts, list)
        or len(counts) != len(urls)
        or not all(isinstance(c, int) and c >= 0 for c in counts)
    ):
        raise ValueError(
            f"shard index {where!r}: splits.{name}.counts must list the samples of each of the {len(urls)} shards "
            f"(or give shard_size and num_samples), got {counts!r}"
        )
    return ShardSplit(urls, counts)


def read_index(path: str | os.PathLike) -> ShardIndex:
    """Read a shard index: a folder holding index.json, or the JSON file itself (local or a URL)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, INDEX_NAME)
    if _URL_SCHEME.match(path) and not os.path.exists(path):
        import webdataset as wds

        with wds.gopen(path, "rb") as stream:
            data = json.loads(stream.read().decode("utf-8"))
        base = path.rsplit("/", 1)[0]
    else:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"shard index {path!r} does not exist (write one with `cropmix shards SRC OUT`)")
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        base = os.path.dirname(os.path.abspath(path))
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise ValueError(f'{path!r} is not a cropmix shard index (expected "format": {INDEX_FORMAT!r})')
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes:
        raise ValueError(f"shard index {path!r}: classes must be a non-empty list of names")
    splits = {name: _split_from_json(name, entry, base, path) for name, entry in data.get("splits", {}).items()}
    return ShardIndex(path, list(classes), splits)


def _shard_plan(index: FolderIndex, shard_size: int, shuffle_seed: int) -> list[list[int]]:
    """The file positions of each shard: a seeded permutation cut into runs of `shard_size`."""
    generator = torch.Generator().manual_seed(shuffle_seed)
    order = torch.randperm(len(index.paths), generator=generator).tolist()
    return [order[i : i + shard_size] for i in range(0, len(order), shard_size)]


def _write_split(index: FolderIndex, name: str, out: Path, shard_size: int, shuffle_seed: int, bar) -> dict:
    import webdataset as wds

    shards, counts = [], []
    class_counts = [0] * len(index.classes)
    for number, members in enumerate(_shard_plan(index, shard_size, shuffle_seed)):
        shard = f"{name}-{number:06d}.tar"
        partial = out / (shard + ".partial")
        # A fixed integer mtime makes the shards a function of the images and the seed alone (a float one,
        # time.time() by default, costs every member an extra PAX header to write and to read).
        with wds.TarWriter(str(partial), encoder=False, mtime=0) as sink:
            for position in members:
                path, target = index.paths[position], index.targets[position]
                data = path.read_bytes()
                if not data:
                    raise ValueError(f"image file {str(path)!r} is empty")
                extension = path.suffix.lower().lstrip(".")
                relative = path.relative_to(index.root).as_posix().encode("utf-8")
                key = f"{name}_{position:09d}"
                sink.write({"__key__": key, extension: data, "cls": str(target).encode(), "path": relative})
                class_counts[target] += 1
                bar.update(1)
        os.replace(partial, out / shard)
        shards.append(shard)
        counts.append(len(members))
    return {
        "shards": shards,
        "counts": counts,
        "num_samples": sum(counts),
        "shard_size": shard_size,
        "source": str(index.root),
        "class_counts": dict(zip(index.classes, class_counts, strict=True)),
    }


def write_shards(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    shard_size: int = 1000,
    shuffle_seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write the ImageFolder `src` (train/ and val/ or test/) as tar shards with an index; returns the index path.

    The files' bytes are stored as they are (no re-encoding); each shard gets `shard_size` images
    (the last fewer) in a seeded random order.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
    if isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int):
        raise TypeError(f"shuffle_seed must be an int, got {shuffle_seed!r}")
    from tqdm.auto import tqdm

    train = index_folder(split_dir(src, "train"))
    val = index_folder(split_dir(src, "val"), classes=train.classes)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {}
    total = len(train.paths) + len(val.paths)
    with tqdm(total=total, unit="img", desc="shards", disable=not progress) as bar:
        for name, index in (("train", train), ("val", val)):
            splits[name] = _write_split(index, name, out, shard_size, shuffle_seed, bar)
    payload = {"format": INDEX_FORMAT, "version": 1, "classes": train.classes, "splits": splits}
    path = out / INDEX_NAME
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path
