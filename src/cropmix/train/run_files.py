"""The files of a run folder: config.json, metrics.jsonl / metrics.csv, final.json, checkpoint.pt, curves.png.

Every file is written through `cropmix.data.safe_files` (a fresh temporary file, fsynced and renamed
over the target: a planted link is replaced, never followed, and a full disk is named as such).
Metrics are appended as whole lines only: a write that fails part-way is cut back to the last whole
line, and a torn last line left by a crash elsewhere is dropped on reading, with a warning naming
the file.
"""

from __future__ import annotations

import csv
import errno
import io
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cropmix.data.safe_files import FileError, atomic_writer, read_regular_bytes, write_text_atomic

from .checkpoint import CHECKPOINT

__all__ = [
    "CONFIG",
    "CURVES",
    "FINAL",
    "FINAL_KEYS",
    "METRICS_CSV",
    "METRICS_JSONL",
    "RELIABILITY",
    "RUN_FILES",
    "MetricsLog",
    "append_text",
    "check_out_folder",
    "check_out_path",
    "is_pretrain_run",
    "plain_rows",
    "read_json",
    "read_metrics",
    "write_json",
    "write_metrics",
    "write_text_atomic",
]

log = logging.getLogger("cropmix.train")

CONFIG, METRICS_JSONL, METRICS_CSV, FINAL, CURVES, RELIABILITY = (
    "config.json",
    "metrics.jsonl",
    "metrics.csv",
    "final.json",
    "curves.png",
    "reliability.png",
)
# What a run leaves in its folder: a folder holding any of them has been used by a run.
RUN_FILES = (CHECKPOINT, CONFIG, METRICS_JSONL, METRICS_CSV, FINAL, CURVES, RELIABILITY, "eval.json", "tensorboard")
# The results final.json holds (written by training, then by `cropmix eval`): an earlier final.json is
# merged with new results through these keys only, so a planted file cannot choose what is written.
FINAL_KEYS = (
    "top1", "top5", "ece", "rms", "rms_equal_width", "epochs", "seconds_per_epoch", "images_per_second",
    "train_top1", "fgsm_top1", "corruption_mean", "corruption", "cifar_c_mean", "cifar_c",
    "imagenet_c_mean", "imagenet_c_mce", "imagenet_c",
)  # fmt: skip
MAX_JSON_BYTES = 16 << 20  # a config.json or final.json is kilobytes; anything this large is not one
# metrics.jsonl: a row per epoch (train) or per log_every steps (pretrain), each well under a kilobyte.
# A million rows of up to 64 KiB, 256 MiB in all, is far above any run, and bounds what a planted
# file can make `compare` and `--resume` hold.
MAX_METRICS_BYTES, MAX_METRICS_ROWS, MAX_ROW_CHARS = 256 << 20, 1 << 20, 64 << 10
# Distinct names over all rows: metrics.csv has a column per name and every row a cell in each, so rows
# of names all their own would write rows x names cells. A run logs a few dozen.
MAX_METRICS_COLUMNS = 256


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl in `run_dir` (empty if there is none yet).

    A torn last line (a crash while it was appended) is dropped with a warning naming the file; a
    line that is not a JSON object anywhere else is a ValueError naming the file and the line.
    """
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        return []
    text = read_regular_bytes(path, MAX_METRICS_BYTES).decode("utf-8", errors="replace")
    if text.count("\n") > MAX_METRICS_ROWS:
        raise ValueError(f"{path} holds more than {MAX_METRICS_ROWS} lines (MAX_METRICS_ROWS); no run writes as many")
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        last = number == len(lines)  # no newline after it: cut off while being written
        row = _metrics_row(line) if len(line) <= MAX_ROW_CHARS else None
        if isinstance(row, dict):  # a prefix of a JSON object is never one itself: whole
            rows.append(row)
        elif last:
            log.warning("%s: dropped its torn last line %d (%d characters)", path, number, len(line))
        else:
            raise ValueError(f"{path} line {number} is not a JSON object: {line[:80]!r}; delete that line or the file")
    _check_columns(rows, path)
    return rows


def _check_columns(rows: list[dict[str, Any]], source: str | os.PathLike) -> None:
    """Refuse rows naming more than MAX_METRICS_COLUMNS metrics in all (`source` names where they came from)."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
        if len(names) > MAX_METRICS_COLUMNS:
            raise ValueError(
                f"{source}: its metrics rows name more than {MAX_METRICS_COLUMNS} distinct metrics "
                "(MAX_METRICS_COLUMNS); no run logs as many"
            )


def _metrics_row(line: str) -> Any:
    """The JSON value of one metrics line, or None if it is not valid JSON (or nested too deep to parse)."""
    try:
        return json.loads(line)
    except (ValueError, RecursionError):  # ValueError: not JSON, or an integer of over 4300 digits
        return None


def plain_rows(rows: Any, source: str | os.PathLike) -> list[dict[str, Any]]:
    """`rows` (read from `source`, e.g. a checkpoint) checked to be metrics rows: a list of dicts of names to
    numbers, strings, booleans or None, within what read_metrics reads from metrics.jsonl (rows, characters
    per row and in all, metrics named). Sizes are measured without writing anything: rows that share one
    object cost nothing to unpickle but their whole size to write. ValueError naming `source` otherwise."""
    if not isinstance(rows, list):
        raise ValueError(f"{source}: its metrics rows are not a list of dicts of numbers and strings")
    if len(rows) > MAX_METRICS_ROWS:
        raise ValueError(
            f"{source}: it holds {len(rows)} metrics rows, more than {MAX_METRICS_ROWS} (MAX_METRICS_ROWS)"
        )
    total = 0
    for number, row in enumerate(rows, 1):
        chars = _plain_row_chars(row)
        if chars is None:
            raise ValueError(f"{source}: its metrics rows are not a list of dicts of numbers and strings")
        total += chars
        if chars > MAX_ROW_CHARS:
            raise ValueError(f"{source}: its metrics row {number} is over {MAX_ROW_CHARS} characters (MAX_ROW_CHARS)")
        if total > MAX_METRICS_BYTES:
            raise ValueError(
                f"{source}: its metrics rows 1..{number} are over {MAX_METRICS_BYTES} characters in all "
                "(MAX_METRICS_BYTES); no run logs as much"
            )
    _check_columns(rows, source)
    return rows


def _plain_row_chars(row: Any) -> int | None:
    """The characters of `row` as a JSON line, counted only until they pass MAX_ROW_CHARS; None if it is not a
    dict of names to numbers, strings, booleans or None."""
    if not isinstance(row, dict):
        return None
    chars = 1
    for key, value in row.items():
        if not isinstance(key, str) or not isinstance(value, (int, float, str, bool, type(None))):
            return None
        if isinstance(value, int) and value.bit_length() > 64:  # no metric; over 4300 digits json cannot write it
            return None
        for item in (key, value):
            chars += 2 + (len(item) if isinstance(item, str) and len(item) > MAX_ROW_CHARS else len(json.dumps(item)))
        if chars > MAX_ROW_CHARS:
            break
    return chars


def write_metrics(run_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from `rows` (atomically, so a crash keeps the old ones)."""
    run_dir = Path(run_dir)
    write_text_atomic(run_dir / METRICS_JSONL, "".join(json.dumps(row) + "\n" for row in rows))
    with atomic_writer(run_dir / METRICS_CSV, "w", newline="") as handle:
        handle.write(_csv_text(rows, _fields(rows), header=True))


def _fields(rows: Iterable[dict[str, Any]]) -> list[str]:
    """The columns of `rows`: every key, in the order first seen."""
    fields: dict[str, None] = {}
    for row in rows:
        fields.update(dict.fromkeys(row))
    return list(fields)


def _csv_text(rows: list[dict[str, Any]], fields: list[str], header: bool) -> str:
    """`rows` as CSV lines under `fields` (keys outside them are left out); no rows and no fields: ""."""
    if not fields:
        return ""
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append `text` (whole lines) to `path`, flushed to disk. A write that fails part-way (a full disk)
    is cut back, so the file never ends in half a line; the error names the file. A link at `path` is
    refused, not followed."""
    path = Path(path)
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        raise FileError(error.errno, f"appending to {path} failed: {error.strerror}") from error
    try:
        size = os.fstat(fd).st_size
        data = memoryview(text.encode("utf-8"))
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError as error:
            os.ftruncate(fd, size)
            if error.errno == errno.ENOSPC:
                raise FileError(error.errno, f"no space left on device writing {path}") from error
            raise FileError(error.errno, f"writing {path} failed: {error.strerror}") from error
    finally:
        os.close(fd)


class MetricsLog:
    """Append rows to metrics.jsonl and metrics.csv in `folder` as they come (for per-step logs, where
    rewriting the files each time would cost more and more).

    after_step None: a new run (nothing is written until the first rows come). Otherwise the run is
    resumed from a checkpoint at step `after_step`: the rows past it are dropped, and `tail` (the rows
    the checkpoint holds, logged since the one before it) fills in any the files lack, so a crash
    between saving a checkpoint and appending its rows loses none.
    """

    def __init__(
        self, folder: str | os.PathLike, after_step: int | None = None, tail: list[dict[str, Any]] = ()
    ) -> None:
        self.folder = Path(folder)
        self.jsonl, self.csv = self.folder / METRICS_JSONL, self.folder / METRICS_CSV
        rows: list[dict[str, Any]] = []
        if after_step is not None:
            rows = [r for r in read_metrics(folder) if r.get("step", 0) <= after_step]
            last = rows[-1].get("step", 0) if rows else 0
            rows += [r for r in tail if last < r.get("step", 0) <= after_step]
            write_metrics(folder, rows)
        self.fields = _fields(rows)

    def append(self, row: dict[str, Any]) -> None:
        """Append one row."""
        self.extend([row])

    def extend(self, rows: list[dict[str, Any]]) -> None:
        """Append `rows`, each file in one write of whole lines."""
        if not rows:
            return
        append_text(self.jsonl, "".join(json.dumps(row) + "\n" for row in rows))
        header = not self.fields
        if header:
            self.fields = list(rows[0])
        append_text(self.csv, _csv_text(rows, self.fields, header))


def write_json(path: str | os.PathLike, values: dict[str, Any]) -> None:
    """`values` as indented JSON, written atomically."""
    write_text_atomic(path, json.dumps(values, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON object in `path` (a regular file of at most 16 MiB); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    try:
        values = json.loads(read_regular_bytes(path, MAX_JSON_BYTES))
    except ValueError as error:  # not JSON, not UTF-8, or an integer of over 4300 digits
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    except RecursionError as error:
        raise ValueError(f"{path} is not a config or results file: its JSON is nested too deep to read") from error
    if not isinstance(values, dict):
        raise ValueError(f"{path} holds a JSON {type(values).__name__}, not an object")
    return values


# The `cropmix pretrain` methods (ssl.config.METHODS): a config.json naming one is a pre-training run's.
PRETRAIN_METHODS = ("moco", "mae")


def is_pretrain_run(config: dict[str, Any]) -> bool:
    """Whether a run folder's config.json is that of a `cropmix pretrain` run (it names a method)."""
    return config.get("method") in PRETRAIN_METHODS


def check_out_folder(out: Path) -> None:
    """Refuse an --out that exists and is not a folder (a file, or a link to nothing), naming what it is."""
    if os.path.lexists(out) and not out.is_dir():
        what = "a link to nothing" if out.is_symlink() and not out.exists() else "a file"
        raise FileError(errno.ENOTDIR, f"--out {out} is {what}, not a folder: choose another --out")


def check_out_path(out: str | os.PathLike, data: str | os.PathLike, dataset: str) -> None:
    """Refuse an empty --out (it would be the working folder) and, for an image folder, one inside a folder
    its reader lists (a split folder, or where one of its class folders links to): the run's files, its
    PNG plots among them, would be read as images of the data. Other formats read only their own files."""
    if os.fspath(out) == "":
        raise ValueError("--out '' is empty: give the run folder's path")
    if dataset != "imagefolder":
        return
    target = Path(out).resolve()
    for folder in _listed_folders(Path(data)):
        if target.is_relative_to(folder):
            raise ValueError(
                f"--out {str(out)!r} is inside {str(folder)!r}, which reading --data {str(data)!r} lists: the run's "
                "files (curves.png, reliability.png) would be read as images of the data; choose another --out"
            )


def _listed_folders(root: Path) -> list[Path]:
    """The folders an image folder's reader lists, resolved: its split folders and their class folders."""
    from cropmix.data.folder import SPLIT_NAMES

    splits = [root / name for name in SPLIT_NAMES if (root / name).is_dir()]
    classes = [entry.path for split in splits for entry in os.scandir(split) if entry.is_dir()]
    return [Path(folder).resolve() for folder in (*splits, *classes)]


def check_run_folder(run_dir: Path, finished: bool = False) -> None:
    """A path that is not a run folder is said to be what it is: missing, a file, or a folder without
    config.json; `finished`: also one without final.json (a run that stopped before its end)."""
    what = "a folder written by `cropmix train` or `cropmix pretrain` (config.json, checkpoint.pt)"
    if run_dir.is_dir():
        if not (run_dir / CONFIG).exists():
            raise FileNotFoundError(f"{str(run_dir)!r} is not a run folder (no {CONFIG}); give {what}")
        if finished and not (run_dir / FINAL).exists():
            raise FileNotFoundError(
                f"run {str(run_dir)!r} has not finished (no {FINAL}): resume it (the same command with --resume)"
            )
    elif run_dir.exists():
        raise ValueError(f"{str(run_dir)!r} is a file, not a run folder; give {what}")
    else:
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist")
