"""Evaluating a pre-training checkpoint on its own (`cropmix pretrain --eval-only`): the config it records,
checked, and the kNN and linear-probe accuracies of its backbone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn

from cropmix.models.weights import CheckpointError, load_checkpoint
from cropmix.train.checkpoint import checkpoint_entry, restore_states
from cropmix.train.distributed import resolve_device
from cropmix.train.settings import by_key

from .config import EVALUATION_FIELDS, PretrainConfig
from .pretrain import build_ssl_model
from .representation import evaluate_split


def evaluate_checkpoint(
    checkpoint: str | os.PathLike,
    config: PretrainConfig | None = None,
    model: nn.Module | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """kNN and linear-probe accuracies of a pre-training checkpoint.

    The model is rebuilt from the checkpoint's own config (or `model` is loaded); the data and the
    evaluation settings come from `config` when given, else from the checkpoint's config with the
    `overrides` of its EVALUATION_FIELDS (what `cropmix pretrain --eval-only` takes from its options).
    """
    state = load_checkpoint(checkpoint)
    saved = saved_config(state, checkpoint)
    unknown = sorted(set(overrides or {}) - set(EVALUATION_FIELDS))
    if unknown:
        raise ValueError(f"overrides may set {EVALUATION_FIELDS} only, got {unknown}")
    config = config or saved.replace(**(overrides or {}))
    # Evaluation never downloads: a received checkpoint's config must not make cropmix fetch data anywhere.
    if model is None:
        model = build_ssl_model(saved, saved.source(download=False).num_classes)
    restore_states(state, {"model": model}, checkpoint)
    source = config.source(download=False)
    device = resolve_device(config.run.device)
    step = checkpoint_entry(state, "step", int, checkpoint)
    return {"step": step, **evaluate_split(model.to(device), source, config, device)}


def saved_config(state: dict[str, Any], path: str | os.PathLike) -> PretrainConfig:
    """The PretrainConfig a checkpoint records, checked (fields, types, values); one-line errors naming
    the file."""
    values = checkpoint_entry(state, "config", dict, path)
    _refuse_train_checkpoint(values, path)
    try:
        config = PretrainConfig.from_dict(values)  # validated as it is made; unknown keys are an error
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {str(path)!r}: its config is not valid ({error})") from error
    return config


def _refuse_train_checkpoint(values: dict[str, Any], path: str | os.PathLike) -> None:
    """A `cropmix train` checkpoint (a classifier, its config TrainConfig's fields) is said to be one, with
    the command that evaluates it, instead of a list of fields PretrainConfig does not know."""
    from cropmix.train.config import TrainConfig

    unknown = set(values) - set(by_key(PretrainConfig))
    if unknown and unknown <= set(by_key(TrainConfig)):
        folder = Path(path).parent
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a `cropmix train` checkpoint, not a `cropmix pretrain` one: evaluate it "
            f"with `cropmix eval {folder}` (its run folder)"
        )
