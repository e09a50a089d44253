"""The files of a run folder: config.json, metrics.jsonl / metrics.csv, final.json, checkpoint.pt, curves.png."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

CONFIG, METRICS_JSONL, METRICS_CSV, FINAL, CURVES, RELIABILITY = (
    "config.json",
    "metrics.jsonl",
    "metrics.csv",
    "final.json",
    "curves.png",
    "reliability.png",
)


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The per-epoch rows of a run (empty if none yet)."""
    path = Path(run_dir) / METRICS_JSONL
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_metrics(run_dir: str | os.PathLike, rows: list[dict[str, Any]]) -> None:
    """Rewrite metrics.jsonl and metrics.csv from `rows` (atomically, so a crash keeps the old ones)."""
    run_dir = Path(run_dir)
    write_text_atomic(run_dir / METRICS_JSONL, "".join(json.dumps(row) + "\n" for row in rows))
    fields = _fields(rows)
    tmp = run_dir / (METRICS_CSV + ".tmp")
    with open(tmp, "w", newline="") as handle:
        if fields:  # no rows: an empty file, not a blank header line
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    os.replace(tmp, run_dir / METRICS_CSV)


def _fields(rows: list[dict[str, Any]]) -> list[str]:
    """The columns of `rows`: every key, in the order first seen."""
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    return fields


class MetricsLog:
    """Append rows to metrics.jsonl and metrics.csv in `folder` as they come (for per-step logs, where
    rewriting the files each time would cost more and more). On opening, the rows whose "step" is past
    `after_step` are dropped (all rows when it is None): a resumed run carries on from its checkpoint."""

    def __init__(self, folder: str | os.PathLike, after_step: int | None = None) -> None:
        self.folder = Path(folder)
        self.jsonl, self.csv = self.folder / METRICS_JSONL, self.folder / METRICS_CSV
        rows = [] if after_step is None else [r for r in read_metrics(folder) if r.get("step", 0) <= after_step]
        write_metrics(folder, rows)
        self.fields = _fields(rows)

    def append(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        if not self.fields:
            self.fields = list(row)
            with self.csv.open("w", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.fields).writeheader()
        with self.csv.open("a", newline="") as handle:
            csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore").writerow(row)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, values: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(values, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist")
    return json.loads(path.read_text())
