"""Training and run management: TrainConfig, train(), evaluate_run(), evaluate_ood() (options: EvalOptions),
compare_runs().

This package is itself callable as `train(config, resume=False)`. `from cropmix import train` is
documented to give the training function, but once any `cropmix.train.*` module has been imported,
Python binds the name `train` on the `cropmix` package to this subpackage; a callable package keeps
the documented line working either way.
"""

import sys
import types
from pathlib import Path

from .compare import compare_runs, format_table, summarise_runs
from .config import TrainConfig
from .config_parts import AugSettings, DataSettings, ModelSettings, OptimSettings, RunSettings, TrainData, TrainRun
from .eval_options import EvalOptions
from .loop import train
from .report import evaluate_ood, evaluate_run, load_run_model

__all__ = [
    "AugSettings",
    "DataSettings",
    "EvalOptions",
    "ModelSettings",
    "OptimSettings",
    "RunSettings",
    "TrainConfig",
    "TrainData",
    "TrainRun",
    "compare_runs",
    "evaluate_ood",
    "evaluate_run",
    "format_table",
    "load_run_model",
    "summarise_runs",
    "train",
]


class _CallablePackage(types.ModuleType):
    def __call__(self, config: TrainConfig, resume: bool = False) -> Path:
        """`cropmix.train(config, resume)` is `cropmix.train.loop.train(config, resume)`."""
        return train(config, resume=resume)


sys.modules[__name__].__class__ = _CallablePackage
