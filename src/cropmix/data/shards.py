"""An ImageFolder as WebDataset tar shards, and the JSON index that says what the shards hold.

Layout written by `write_shards(src, out)` (ImageFolder: src/train/<class>/*, src/val/ or src/test/)::

    out/train-000000.tar ... out/val-000000.tar ...   members <key>.<ext> (the file's own bytes),
                                                      <key>.cls (the class index, ASCII), <key>.path
                                                      (the file it was, e.g. "train/cat/1.jpg": readers
                                                      name it in their errors)
    out/index.json                                    classes, and per split the shards and their counts

Each file's header is checked while writing (cropmix.data.image_files.image_size: an image Pillow can
identify, within the pixel limits): a bad one is logged in one line naming it, and written all the same
or, with `skip_bad`, left out; the index lists them per split under "bad_files".

Images are shuffled (seeded) before they are cut into shards, so every shard holds a mix of classes.
The index's shard entries may be paths relative to the index, absolute paths, http(s) URLs or brace
patterns such as "train-{000000..000146}.tar"; never a command (cropmix.data.shard_urls).
`counts` (samples per shard, after brace expansion) is what lets readers split an epoch exactly.
"""

from __future__ import annotations

import errno
import io
import json
import logging
import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .folder import FolderIndex, index_folder, split_dir
from .image_files import BadFileError, image_size
from .safe_files import FileError, atomic_writer, exclusive_folder, read_regular_bytes, sync_folder, write_text_atomic
from .shard_tar import MAX_MEMBER_BYTES
from .shard_urls import MAX_SHARD_NAMES, expand_braces, index_location, name_count, read_location, resolve_entry

log = logging.getLogger("cropmix.data")

INDEX_NAME = "index.json"
INDEX_FORMAT = "cropmix-webdataset"
# "test" is accepted as another name of the evaluation split, as for ImageFolder trees.
SPLIT_ALIASES = {"test": "val"}
MAX_INDEX_BYTES = 64 * 2**20
# What an index may declare: more than any tar shard holds, and than any image data set has in a split.
MAX_SAMPLES_PER_SHARD = 10_000_000
MAX_SPLIT_SAMPLES = 10**10
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
STAGING = ".shards.partial"  # the folder in `out` where new shards are written until all are
# What write_shards leaves in a folder: the shards and the temporary files of a run that was killed.
_OWN_FILE = re.compile(
    r"^\.?(train|val)-\d{6}\.tar(\.partial|\..+\.tmp)?$|^\.index\.json\..+\.tmp$|^index\.json\.partial$"
)


@dataclass
class ShardSplit:
    """One split of a shard set: shard URLs (expanded, in order) and the number of samples in each."""

    urls: list[str]
    counts: list[int]

    @property
    def num_samples(self) -> int:
        return sum(self.counts)

    def __len__(self) -> int:
        return self.num_samples

    def head(self, count: int) -> ShardSplit:
        """The first `count` samples in index order: whole shards, then the head of one."""
        urls, counts, left = [], [], count
        for url, n in zip(self.urls, self.counts, strict=True):
            if left == 0:
                break
            urls.append(url)
            counts.append(min(n, left))
            left -= counts[-1]
        return ShardSplit(urls, counts)


@dataclass
class ShardIndex:
    """What `index.json` says: class names and the splits ("train", "val")."""

    path: str
    classes: list[str]
    splits: dict[str, ShardSplit]
    bad_files: dict[str, list[str]] = field(default_factory=dict)  # per split: files written with a bad header

    def split(self, name: str) -> ShardSplit:
        """The split `name` ("train", or "val"/"test"), or an error naming the index and what it has."""
        key = SPLIT_ALIASES.get(name, name)
        if key not in self.splits:
            raise ValueError(f"shard index {self.path!r} has no split {name!r}; it has {sorted(self.splits)}")
        return self.splits[key]


def _split_from_json(name: str, entry: dict, base: str | None, where: str) -> ShardSplit:
    patterns = entry.get("shards") if isinstance(entry, dict) else None
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ValueError(f"shard index {where!r}: splits.{name}.shards must be a non-empty list of strings")
    urls = [resolve_entry(url, base, where) for pattern in patterns for url in expand_braces(pattern)]
    counts = entry.get("counts")
    if counts is None and "shard_size" in entry and "num_samples" in entry:
        # Every shard full but the last: the layout write_shards produces.
        size, total = entry["shard_size"], entry["num_samples"]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (size, total)):
            raise ValueError(
                f"shard index {where!r}: splits.{name}.shard_size and num_samples must be ints >= 0, "
                f"got {str(size)[:50]!r} and {str(total)[:50]!r}"
            )
        counts = [min(size, total - i * size) for i in range(len(urls))]
    if (
        not isinstance(counts, list)
        or len(counts) != len(urls)
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= MAX_SAMPLES_PER_SHARD for c in counts)
    ):
        shown = repr(counts)
        shown = shown if len(shown) <= 200 else shown[:200] + "..."
        raise ValueError(
            f"shard index {where!r}: splits.{name}.counts must list the samples of each of the {len(urls)} shards, "
            f"each in [0, {MAX_SAMPLES_PER_SHARD}] (or give shard_size and num_samples), got {shown}"
        )
    if sum(counts) > MAX_SPLIT_SAMPLES:
        raise ValueError(
            f"shard index {where!r}: splits.{name}.counts add up to {sum(counts)} samples, more than the limit "
            f"of {MAX_SPLIT_SAMPLES}"
        )
    return ShardSplit(urls, counts)


def _check_shard_names(splits: dict, where: str) -> None:
    """Refuse an index whose shard patterns name more than MAX_SHARD_NAMES shards in all its splits together,
    counted before any name is made: each pattern alone is bounded, but a small index can repeat one."""
    total = 0
    for entry in splits.values():
        patterns = entry.get("shards") if isinstance(entry, dict) else None
        for pattern in patterns if isinstance(patterns, list) else ():
            try:
                total += name_count(pattern) if isinstance(pattern, str) else 0
            except ValueError as error:
                raise ValueError(f"shard index {where!r}: {error}") from error
            if total > MAX_SHARD_NAMES:
                raise ValueError(
                    f"shard index {where!r}: its shard entries name more than the limit of {MAX_SHARD_NAMES} "
                    "shards in all"
                )


def read_index(path: str | os.PathLike) -> ShardIndex:
    """Read a shard index: a folder holding index.json, the JSON file itself, an http(s) URL, or a `pipe:`
    command this process allowed (cropmix.data.shard_urls). Its shard entries are local paths or http(s) URLs."""
    path = os.fspath(path)
    if os.path.isdir(path):
        path = os.path.join(path, INDEX_NAME)
    kind, location = index_location(path)
    if kind == "file" and not os.path.isfile(location):
        raise FileNotFoundError(f"shard index {path!r} does not exist (write one with `cropmix shards SRC OUT`)")
    try:
        data = json.loads(read_location(kind, location, MAX_INDEX_BYTES).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"shard index {path!r} is not JSON: {error}") from error
    except RecursionError as error:  # arrays or objects nested deeper than the parser's stack
        raise ValueError(f"shard index {path!r} is not JSON this reader takes: it is nested too deeply") from error
    if kind == "file":
        base: str | None = os.path.dirname(os.path.abspath(location))
    else:
        base = location.rsplit("/", 1)[0] + "/" if kind == "http" else None
    if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT:
        raise ValueError(f'{path!r} is not a cropmix shard index (expected "format": {INDEX_FORMAT!r})')
    classes = data.get("classes")
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        raise ValueError(f"shard index {path!r}: classes must be a non-empty list of names")
    splits = data.get("splits", {})
    if not isinstance(splits, dict):
        raise ValueError(f"shard index {path!r}: splits must be an object of split names")
    _check_shard_names(splits, path)
    parsed = {name: _split_from_json(name, entry, base, path) for name, entry in splits.items()}
    bad = {name: entry.get("bad_files", []) for name, entry in splits.items()}
    if not all(isinstance(files, list) and all(isinstance(f, str) for f in files) for files in bad.values()):
        raise ValueError(f"shard index {path!r}: splits.<name>.bad_files must be lists of file names")
    return ShardIndex(path, list(classes), parsed, {name: files for name, files in bad.items() if files})


def _shard_plan(index: FolderIndex, shard_size: int, shuffle_seed: int) -> list[list[int]]:
    """The file positions of each shard: a seeded permutation cut into runs of `shard_size`."""
    generator = torch.Generator().manual_seed(shuffle_seed)
    order = torch.randperm(len(index.paths), generator=generator).tolist()
    return [order[i : i + shard_size] for i in range(0, len(order), shard_size)]


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    # A fixed integer mtime makes the shards a function of the images and the seed alone.
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    return info, io.BytesIO(data)


def _header_problem(path: Path, data: bytes) -> str | None:
    """Why the file `path` (its bytes `data`) is not a usable image by its header, or None when it is."""
    if not data:
        return "the file is empty"
    try:
        image_size(path)
    except BadFileError as error:
        return error.reason or str(error)
    return None


def _write_split(
    index: FolderIndex, name: str, out: Path, shard_size: int, shuffle_seed: int, skip_bad: bool, bar
) -> dict:
    shards, counts, bad = [], [], []
    class_counts = [0] * len(index.classes)
    for number, members in enumerate(_shard_plan(index, shard_size, shuffle_seed)):
        shard, count = f"{name}-{number:06d}.tar", 0
        with atomic_writer(out / shard, "wb") as handle, tarfile.open(fileobj=handle, mode="w|") as tar:
            for position in members:
                path, target = index.paths[position], index.targets[position]
                data = read_regular_bytes(path, MAX_MEMBER_BYTES)
                bar.update(1)
                relative = f"{index.root.name}/{path.relative_to(index.root).as_posix()}"
                problem = _header_problem(path, data)
                if problem is not None:
                    bad.append(relative)
                    action = "left out" if skip_bad else "written anyway (pass --skip-bad to leave such files out)"
                    log.warning("bad image file %s: %s; %s", path, problem, action)
                    if skip_bad:
                        continue
                extension = path.suffix.lower().lstrip(".")
                key = f"{name}_{position:09d}"
                for field, value in ((extension, data), ("cls", str(target).encode()), ("path", relative.encode())):
                    tar.addfile(*_member(f"{key}.{field}", value))
                class_counts[target] += 1
                count += 1
        shards.append(shard)
        counts.append(count)
    return {
        "shards": shards,
        "counts": counts,
        "num_samples": sum(counts),
        "shard_size": shard_size,
        "source": str(index.root),
        "class_counts": dict(zip(index.classes, class_counts, strict=True)),
        "bad_files": bad,
    }


def _out_folder(out: str | os.PathLike) -> Path:
    """The local folder `out`, made if missing."""
    text = os.fspath(out)
    if text.startswith("pipe:") or _URL.match(text):
        raise ValueError(f"out {text!r} is a URL or a command; shards are written to a local folder only")
    folder = Path(text)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"out {text!r} is a file; shards are written to a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _prepare_out(folder: Path, overwrite: bool) -> None:
    """`folder` may be written: an empty one, or a non-empty one with `overwrite`. Its old index and shards
    stay until the new ones are all written (`_replace_shards`); what a killed run left in STAGING is removed."""
    text = os.fspath(folder)
    # A killed run's STAGING folder is not content: it is cleared below (refused if it holds other files).
    names = sorted(p.name for p in folder.iterdir() if not (p.name == STAGING and p.is_dir() and not p.is_symlink()))
    if names and not overwrite:
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise ValueError(
            f"out {text!r} is not empty (it holds {shown}): pass overwrite=True (--overwrite) to replace its shards"
        )
    _remove_staging(folder / STAGING)


def _remove_staging(staging: Path) -> None:
    """The folder of shards being written, with the shards in it (a link or file there is only unlinked);
    a FileError, and nothing removed, if it holds files write_shards does not write."""
    if staging.is_symlink() or staging.is_file():
        staging.unlink()
    elif staging.is_dir():
        foreign = sorted(p.name for p in staging.iterdir() if not _OWN_FILE.match(p.name))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise FileError(
                errno.ENOTEMPTY,
                f"{staging}, where shards are written, holds files that are not shards ({shown}): remove them",
            )
        for path in staging.iterdir():
            path.unlink()
        staging.rmdir()


def _replace_shards(folder: Path, staging: Path, payload: dict) -> None:
    """Move the shards written in `staging` into `folder` over its old ones, then write the index. The old
    index goes first: a run killed from then on leaves shards without an index, never an old index over a
    mix of old and new shards."""
    (folder / INDEX_NAME).unlink(missing_ok=True)
    sync_folder(folder)
    for path in folder.iterdir():
        if path.is_file() and _OWN_FILE.match(path.name):
            path.unlink()
    for path in sorted(staging.iterdir()):
        os.replace(path, folder / path.name)
    staging.rmdir()
    write_text_atomic(folder / INDEX_NAME, json.dumps(payload, indent=1) + "\n")


def write_shards(
    src: str | os.PathLike,
    out: str | os.PathLike,
    *,
    shard_size: int = 1000,
    shuffle_seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    skip_bad: bool = False,
) -> Path:
    """Write the ImageFolder `src` (train/ and val/ or test/) as tar shards with an index; returns the index path.

    The files' bytes are stored as they are (no re-encoding); each shard gets `shard_size` images
    (the last fewer) in a seeded random order. `out` is a local folder: a non-empty one needs `overwrite`,
    which replaces its old index and shards. A file whose header is bad (see the module doc) is logged and
    written, or left out with `skip_bad`. The shards are written in out/STAGING, then moved in over the old
    ones and the index written last: a failure or a kill while they are written leaves the old ones as they
    were (the disk needs room for both), and a failure there leaves no new shard or temporary file.
    """
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be an int >= 1, got {shard_size!r}")
    if isinstance(shuffle_seed, bool) or not isinstance(shuffle_seed, int):
        raise TypeError(f"shuffle_seed must be an int, got {shuffle_seed!r}")
    train = index_folder(split_dir(src, "train"), progress=progress)
    val = index_folder(split_dir(src, "val"), classes=train.classes, progress=progress)
    folder = _out_folder(out)
    # A second writer would take this one's STAGING folder for a killed run's and clear it.
    with exclusive_folder(
        folder, f"another process is writing shards to {folder}: let it finish, or choose another out"
    ):
        _prepare_out(folder, overwrite)
        _write_all(folder, train, val, shard_size, shuffle_seed, skip_bad, progress)
    return folder / INDEX_NAME


def _write_all(
    folder: Path,
    train: FolderIndex,
    val: FolderIndex,
    shard_size: int,
    shuffle_seed: int,
    skip_bad: bool,
    progress: bool,
) -> None:
    """Both splits' shards written in folder/STAGING, then moved in over the old ones, and the index."""
    from tqdm.auto import tqdm

    staging = folder / STAGING
    try:
        staging.mkdir()
    except OSError as error:
        raise FileError(
            error.errno, f"cannot write shards in {folder} ({error.strerror}): choose another out"
        ) from error
    splits, total = {}, len(train.paths) + len(val.paths)
    try:
        with tqdm(total=total, unit="img", desc="shards", disable=not progress) as bar:
            for name, index in (("train", train), ("val", val)):
                splits[name] = _write_split(index, name, staging, shard_size, shuffle_seed, skip_bad, bar)
    except BaseException:
        _remove_staging(staging)
        raise
    _replace_shards(folder, staging, {"format": INDEX_FORMAT, "version": 1, "classes": train.classes, "splits": splits})
