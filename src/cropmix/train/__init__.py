"""Training and run management: TrainConfig, train(), evaluate_run(), compare_runs()."""

from .config import TrainConfig
from .loop import train
from .report import compare_runs, evaluate_run, format_table, load_run_model, summarise_runs

__all__ = ["TrainConfig", "compare_runs", "evaluate_run", "format_table", "load_run_model", "summarise_runs", "train"]
