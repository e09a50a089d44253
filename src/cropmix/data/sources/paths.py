"""The path checks the file-based sources share: exists, and is a file or a folder as the source reads."""

from __future__ import annotations

from pathlib import Path


def check_kind(name: str, path: Path, wants_file: bool, what: str) -> None:
    """`path` exists and is a file (`wants_file`) or a folder; errors name --data, the source `name` and
    `what` it reads."""
    if not path.exists():
        raise FileNotFoundError(f"data (--data) {str(path)!r} does not exist; dataset {name!r} reads {what}")
    if path.is_file() != wants_file:
        kind = "a file" if path.is_file() else "a folder"
        hint = " (an .npz file is read with --dataset npz)" if path.suffix == ".npz" and not wants_file else ""
        raise ValueError(f"data (--data) {str(path)!r} is {kind}, but dataset (--dataset) {name!r} reads {what}{hint}")
