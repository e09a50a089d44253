"""Reading checkpoints safely and loading a pre-trained backbone into a `build_model` model.

Every checkpoint is read with `torch.load(..., weights_only=True)`: a file can hold tensors and
plain data (dicts, lists, tuples, numbers, strings) but no other objects, so opening a crafted
.pt (given to `--init`, `cropmix eval` or `pretrain --eval-only`) cannot run code.
"""

from __future__ import annotations

import errno
import os
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cropmix.data.safe_files import FileError, open_regular

# Bounds checked on the zip directory before torch.load inflates anything.
MAX_CHECKPOINT_BYTES = 8 * 1024**3  # all entries together, uncompressed
MAX_ENTRY_BYTES = 4 * 1024**3  # one entry (one tensor storage), uncompressed
MAX_COMPRESSION_RATIO = 20  # uncompressed / compressed size of a deflated entry (torch stores entries uncompressed)


CHECKPOINT = "checkpoint.pt"  # the name of a run folder's checkpoint


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or restored, with a one-line message naming the file and the key."""


def check_archive(path: str | os.PathLike, handle: Any) -> None:
    """Refuse a checkpoint whose zip entries would inflate past MAX_ENTRY_BYTES each, MAX_CHECKPOINT_BYTES in
    all, or by more than MAX_COMPRESSION_RATIO, before anything is inflated. torch.save writes zip
    archives (legacy non-zip files are refused too: they are not what cropmix writes)."""
    try:
        with zipfile.ZipFile(handle) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"checkpoint {str(path)!r} is not a torch zip archive ({error})") from error
    if not any(e.filename.count("/") == 1 and e.filename.endswith("/data.pkl") for e in entries):
        shown = [e.filename for e in entries[:3]] + (["..."] if len(entries) > 3 else [])
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a zip archive but not a torch checkpoint (torch.save writes a "
            f"<name>/data.pkl entry; this one holds {shown}): give a checkpoint.pt that cropmix wrote"
        )
    total = 0
    for entry in entries:
        total += entry.file_size
        ratio = entry.file_size / max(1, entry.compress_size)
        bomb = entry.compress_type != zipfile.ZIP_STORED and ratio > MAX_COMPRESSION_RATIO
        if entry.file_size > MAX_ENTRY_BYTES or bomb:
            raise CheckpointError(
                f"checkpoint {str(path)!r}: entry {entry.filename!r} would inflate from {entry.compress_size} to "
                f"{entry.file_size} bytes (limits: {MAX_ENTRY_BYTES} bytes, ratio {MAX_COMPRESSION_RATIO})"
            )
        if total > MAX_CHECKPOINT_BYTES:
            raise CheckpointError(
                f"checkpoint {str(path)!r} would inflate to more than {MAX_CHECKPOINT_BYTES} bytes "
                "(MAX_CHECKPOINT_BYTES)"
            )
    handle.seek(0)


def check_checkpoint_path(path: str | os.PathLike, what: str = "checkpoint") -> None:
    """Refuse a `path` that is not there, or a folder (a run folder given for its checkpoint.pt), naming it
    as `what` ("--init checkpoint", say) and, for a folder holding one, the file to pass."""
    path = Path(path)
    if path.is_dir():
        inside = path / CHECKPOINT
        hint = f": pass {str(inside)!r}" if inside.is_file() else f" (cropmix writes {CHECKPOINT} in a run folder)"
        raise FileError(errno.EISDIR, f"{what} {str(path)!r} is a folder, not a checkpoint file{hint}")
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at `path` (a regular file of tensors and plain data only, its zip entries bounded by
    `check_archive`), with errors naming the file."""
    path = Path(path)
    check_checkpoint_path(path)
    try:
        with open_regular(path) as handle:
            check_archive(path, handle)
            state = torch.load(handle, map_location=map_location, weights_only=True)
    except (CheckpointError, FileError):
        raise
    except Exception as error:  # noqa: BLE001 - re-raised naming the file
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read safely (only tensors and plain data are accepted, "
            f"as cropmix writes them): {' '.join(str(error).split())[:300]}"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} holds a {type(state).__name__}, not a dict of states")
    return state


def backbone_state_dict(checkpoint: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The pre-trained network to fine-tune, as the state dict of a `cropmix.models.build_model` model:
    MoCo's query backbone (`build_model(config.backbone, ...)`) or MAE's encoder (`build_model("vit_tiny",
    patch_size=..., dim=..., depth=..., num_heads=..., learn_pos=False)`). The classifier was not trained:
    re-initialise it (or load with it) as fine-tuning needs."""
    state = load_checkpoint(checkpoint)
    model = state.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"checkpoint {str(checkpoint)!r} holds no 'model' state dict")
    for prefix in ("encoder_q.", "encoder."):
        if any(key.startswith(prefix) for key in model):
            return {key[len(prefix) :]: value for key, value in model.items() if key.startswith(prefix)}
    raise ValueError(f"checkpoint {str(checkpoint)!r} holds neither a MoCo (encoder_q.) nor an MAE (encoder.) model")


def load_pretrained(model: nn.Module, checkpoint: str | os.PathLike) -> list[str]:
    """Load a pre-training checkpoint's backbone into a `build_model` model for fine-tuning (`--init`).

    The pre-trained classifier was never trained, so `classifier.*` is left as initialised. Any other
    key that is missing or unexpected, or of another shape, is an error naming it. Returns the keys
    left as initialised.
    """
    state = {k: v for k, v in backbone_state_dict(checkpoint).items() if not k.startswith("classifier.")}
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise ValueError(f"checkpoint {str(checkpoint)!r} does not fit the model: shapes differ for {wrong[:5]}")
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.startswith("classifier.")]
    if missing or result.unexpected_keys:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} does not fit the model: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]} (pre-train with the same --backbone and sizes)"
        )
    return list(result.missing_keys)
