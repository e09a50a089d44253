"""Checkpoints written atomically (exclusive temporary file, fsync, os.replace): a crash never leaves a torn
file, and a link planted at the target is replaced, not written through.

Everything saved is a tensor or plain data, so `cropmix.models.weights.load_checkpoint` reads it
with `weights_only=True`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cropmix.data.safe_files import atomic_writer
from cropmix.models.weights import CHECKPOINT as CHECKPOINT  # the train layer reads the name from here
from cropmix.models.weights import CheckpointError


def rng_states() -> dict[str, Any]:
    """The RNG states of torch (CPU and CUDA), numpy and random, as tensors and plain data."""
    name, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` returned."""
    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss_next"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save through `atomic_writer`: a fresh temporary file (never a planted link), fsynced, renamed
    over `path`; removed on failure, and a full disk named as such."""
    path = Path(path)
    with atomic_writer(path, "wb") as handle:
        torch.save(obj, handle)
    return path


def checkpoint_entry(checkpoint: dict[str, Any], key: str, kind: type, path: str | os.PathLike) -> Any:
    """`checkpoint[key]`, checked to be a `kind` (an int is not a bool); CheckpointError naming the file
    and the key otherwise."""
    if key not in checkpoint:
        raise CheckpointError(f"checkpoint {str(path)!r} has no {key!r} entry (keys: {sorted(checkpoint)[:10]})")
    value = checkpoint[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: {key!r} holds a {type(value).__name__}, not a {kind.__name__}"
        )
    return value


def restore_states(checkpoint: dict[str, Any], targets: dict[str, Any], path: str | os.PathLike) -> None:
    """Load `checkpoint[key]` into each `targets[key]` (anything with load_state_dict, e.g. model, optimizer,
    scheduler, scaler), and the "rng" states when asked for; a missing key or a state of the wrong kind
    or shape is a CheckpointError naming the file and the key, not a KeyError or size-mismatch traceback."""
    for key, target in targets.items():
        value = checkpoint_entry(checkpoint, key, dict, path)
        try:
            if key == "rng":
                set_rng_states(value)
            else:
                target.load_state_dict(value)
        except Exception as error:  # noqa: BLE001 - any malformed state becomes one line naming file and key
            detail = " ".join(str(error).split())[:300]
            raise CheckpointError(
                f"checkpoint {str(path)!r}: {key!r} cannot be restored ({type(error).__name__}: {detail})"
            ) from error
