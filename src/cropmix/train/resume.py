"""Resuming a training run: the checkpoint is checked against the request before anything is restored.

The request is compared with the config stored in the checkpoint itself (config.json is only written
beside it), paths resolved and the run folder's own path left out, and the number of processes with
the stored one; then the model, optimizer, schedule and RNG states and the metrics rows are restored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cropmix.models import weights

from . import run_files as rf
from .checkpoint import CHECKPOINT, checkpoint_entry, restore_states
from .config import TrainConfig
from .run_folder import changed_config_error, changed_fields, check_world_size
from .settings import by_key

# Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = {"progress", "workers", "threads", "device", "eval_batch_size", "log"}


def check_resume(config: TrainConfig, out: Path, resume: bool, world: int = 1) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run), after checking that it fits the request: the
    request is compared with the config stored in the checkpoint itself (config.json is only written
    beside it), paths resolved and `out` left out, and the number of processes with the stored one."""
    if not resume:
        return None
    ckpt_path = out / CHECKPOINT
    checkpoint = weights.load_checkpoint(ckpt_path)
    saved = TrainConfig.from_saved(checkpoint_entry(checkpoint, "config", dict, ckpt_path), ckpt_path).to_dict()
    automatic = {"image_size"} if config.data.image_size is None else set()  # resolved from the data, then recorded
    requested = config.to_dict()
    changed = changed_fields(requested, saved, RESUMABLE_CHANGES | automatic, paths={"data", "init"})
    if changed:
        hint = ""
        if "epochs" in changed:  # the most common wish: train a finished run for longer
            hint = (
                "; --epochs cannot change on --resume, as the learning-rate schedule spans all epochs: to train "
                f"further, start a new run with --init {ckpt_path}"
            )
        raise changed_config_error(changed, requested, saved, ckpt_path, by_key(TrainConfig), hint)
    check_world_size(checkpoint.get("world_size"), world, ckpt_path)
    return checkpoint


def restore_run(checkpoint: dict[str, Any], states: dict[str, Any], out: Path) -> tuple[int, list[dict[str, Any]]]:
    """Load `checkpoint` into `states` (see `restore_states`); the epochs done and their metrics rows."""
    path = out / CHECKPOINT
    restore_states(checkpoint, states, path)
    start_epoch = checkpoint_entry(checkpoint, "epoch", int, path)
    return start_epoch, resumed_rows(checkpoint, out, start_epoch)


def resumed_rows(checkpoint: dict[str, Any], out: Path, epochs_done: int) -> list[dict[str, Any]]:
    """The metrics rows up to the checkpoint: those it holds (from metrics.jsonl for a checkpoint
    written before it held them)."""
    if "metrics" in checkpoint:
        return rf.plain_rows(checkpoint["metrics"], out / CHECKPOINT)
    return [r for r in rf.read_metrics(out) if r.get("epoch", 0) <= epochs_done]
