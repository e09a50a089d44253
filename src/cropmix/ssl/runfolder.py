"""The run folder of a pre-training run: config.json, metrics.jsonl + metrics.csv, final.json, and an
atomically written checkpoint.pt (written to a temporary file, then renamed, so a crash never leaves
a half-written checkpoint behind)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


def write_json(path: str | os.PathLike, data: dict[str, Any]) -> Path:
    """Write `data` as indented JSON, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
    return path


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """torch.save `state` to `path` atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint written by `save_checkpoint` (on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    return torch.load(path, map_location="cpu", weights_only=False)


class MetricsLog:
    """Append rows to metrics.jsonl and metrics.csv in `folder`; rows after `after_step` are dropped on resume."""

    def __init__(self, folder: str | os.PathLike, after_step: int | None = None) -> None:
        self.folder = Path(folder)
        self.jsonl, self.csv = self.folder / "metrics.jsonl", self.folder / "metrics.csv"
        rows = []
        if after_step is not None and self.jsonl.exists():
            rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line.strip()]
            rows = [r for r in rows if r.get("step", 0) <= after_step]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self.fields: list[str] = list(rows[0]) if rows else []
        self._rewrite_csv(rows)

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        with self.csv.open("w", newline="") as f:
            if self.fields:
                writer = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)

    def append(self, row: dict[str, Any]) -> None:
        with self.jsonl.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if not self.fields:
            self.fields = list(row)
            self._rewrite_csv([])
        with self.csv.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore").writerow(row)
