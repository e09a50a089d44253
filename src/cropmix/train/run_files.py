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
    fields: list[str] = []
    for row in rows:
        fields.extend(k for k in row if k not in fields)
    tmp = run_dir / (METRICS_CSV + ".tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, run_dir / METRICS_CSV)


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
