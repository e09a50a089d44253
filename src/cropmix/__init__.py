"""cropmix: CropMix (Han et al., 2022) for PyTorch, a drop-in replacement for RandomResizedCrop.

The transforms import only torch, torchvision, numpy and PIL. Everything exported here is imported
on first use, so `from cropmix import CropMix` loads the transforms and nothing of the recipes
(training, evaluation, self-supervised pre-training).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names below, for type checkers and the API docs; at run time they load on first use
    from .evaluate import ClassifierEval, CorruptionOptions, evaluate_classifier
    from .models import build_model
    from .ssl import PretrainConfig, evaluate_checkpoint, pretrain
    from .train import EvalOptions, TrainConfig, compare_runs, evaluate_ood, evaluate_run, train
    from .transforms import (
        BatchCropMix,
        BatchParams,
        Crop,
        CropMix,
        CropMixCollate,
        CropMixParams,
        MixStep,
        preset,
        render_batch,
        retain_freed_memory,
        sample_batch,
    )

__version__ = "0.1.0"

# Every public name, with the module it comes from, imported on first use: `import cropmix` (and the
# `cropmix` command's --help) loads nothing, `from cropmix import CropMix` loads the transforms only.
_LAZY = {
    **dict.fromkeys(
        (
            "BatchCropMix",
            "BatchParams",
            "Crop",
            "CropMix",
            "CropMixCollate",
            "CropMixParams",
            "MixStep",
            "preset",
            "render_batch",
            "retain_freed_memory",
            "sample_batch",
        ),
        "cropmix.transforms",
    ),  # fmt: skip
    "TrainConfig": "cropmix.train",
    "EvalOptions": "cropmix.train",
    "train": "cropmix.train",
    "evaluate_run": "cropmix.train",
    "evaluate_ood": "cropmix.train",
    "compare_runs": "cropmix.train",
    "PretrainConfig": "cropmix.ssl",
    "pretrain": "cropmix.ssl",
    "evaluate_checkpoint": "cropmix.ssl",
    "build_model": "cropmix.models",
    "evaluate_classifier": "cropmix.evaluate",
    "ClassifierEval": "cropmix.evaluate",
    "CorruptionOptions": "cropmix.evaluate",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module 'cropmix' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [  # every name of _LAZY, and the version
    "BatchCropMix",
    "BatchParams",
    "ClassifierEval",
    "CorruptionOptions",
    "Crop",
    "CropMix",
    "CropMixCollate",
    "CropMixParams",
    "EvalOptions",
    "MixStep",
    "PretrainConfig",
    "TrainConfig",
    "__version__",
    "build_model",
    "compare_runs",
    "evaluate_checkpoint",
    "evaluate_classifier",
    "evaluate_ood",
    "evaluate_run",
    "preset",
    "pretrain",
    "render_batch",
    "retain_freed_memory",
    "sample_batch",
    "train",
]
