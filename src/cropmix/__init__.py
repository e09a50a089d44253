"""cropmix: CropMix (Han et al., 2022) for PyTorch, a drop-in replacement for RandomResizedCrop.

The transforms import only torch, torchvision, numpy and PIL. The recipes (training,
evaluation, self-supervised pre-training) are exported here too but imported on first
use, so `from cropmix import CropMix` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from .transforms import (
    BatchCropMix,
    Crop,
    CropMix,
    CropMixCollate,
    CropMixParams,
    MixStep,
    preset,
    render_batch,
    retain_freed_memory,
)

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": "cropmix.train",
    "train": "cropmix.train",
    "evaluate_run": "cropmix.train",
    "evaluate_ood": "cropmix.train",
    "compare_runs": "cropmix.train",
    "PretrainConfig": "cropmix.ssl",
    "pretrain": "cropmix.ssl",
    "evaluate_checkpoint": "cropmix.ssl",
    "build_model": "cropmix.models",
    "evaluate_classifier": "cropmix.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'cropmix' has no attribute {name!r}")


__all__ = [
    "BatchCropMix",
    "Crop",
    "CropMix",
    "CropMixCollate",
    "CropMixParams",
    "MixStep",
    "__version__",
    "preset",
    "render_batch",
    "retain_freed_memory",
    *_LAZY,
]
