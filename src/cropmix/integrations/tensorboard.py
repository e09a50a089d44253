"""TensorBoard event files for a run (extra: cropmix[tensorboard]), beside its JSONL/CSV metrics.

Every value is indexed by the optimiser step, so that one `purge_step` on resume drops whatever a
stopped run wrote past its checkpoint: per-epoch rows sit at the step that ended their epoch, the
learning rate of step k (1-based) at k. The caller writes from rank 0 only.
"""

from __future__ import annotations

import errno
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from cropmix.data.safe_files import FileError

from . import require

FOLDER = "tensorboard"  # under the run folder
LOG_CHOICES = ("tensorboard",)  # the values of --log
STEP_LR = "lr_per_step"  # the per-step learning-rate tag (a row's "lr" is its own scalar)
INPUTS = "train_inputs"  # the image tag of the grid of training inputs


def check_log(log: str | None) -> None:
    """ValueError for an unknown --log value; MissingExtra (pip install cropmix[tensorboard]) when it cannot run."""
    if log is None:
        return
    if log not in LOG_CHOICES:
        raise ValueError(f"log (--log) must be None or one of {LOG_CHOICES}, got {log!r}")
    require("tensorboard", "tensorboard", "--log tensorboard")


def open_run_log(
    log: str | None, run_dir: str | os.PathLike, steps_done: int, main: bool = True
) -> TensorBoardLog | None:
    """The run's TensorBoardLog when `log` is "tensorboard" and this is the main process (else None); a run
    resumed after `steps_done` optimiser steps drops what the stopped one wrote past them."""
    check_log(log)
    if log is None or not main:
        return None
    return TensorBoardLog(run_dir, purge_step=steps_done + 1 if steps_done else None)


class TensorBoardLog:
    """A SummaryWriter on `run_dir`/tensorboard. `purge_step`: the first step a resumed run writes again
    (events at or after it from the stopped run are dropped when read). A link at `run_dir`/tensorboard
    (a resumed run folder may come from someone else) is refused, never written through."""

    def __init__(self, run_dir: str | os.PathLike, purge_step: int | None = None) -> None:
        check_log("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(run_dir) / FOLDER
        if self.folder.is_symlink():
            raise FileError(
                errno.ELOOP, f"{self.folder} is a link, not the run's own folder: remove it to log to TensorBoard"
            )
        self.writer = SummaryWriter(log_dir=str(self.folder), purge_step=purge_step)

    def scalars(self, row: Mapping[str, Any], step: int, skip: Sequence[str] = ("epoch", "step")) -> None:
        """Each finite number of `row` (bools and the keys in `skip` left out) as a scalar at `step`."""
        for name, value in row.items():
            if name in skip or isinstance(value, bool) or not isinstance(value, numbers.Real):
                continue
            if math.isfinite(float(value)):
                self.writer.add_scalar(name, float(value), step)

    def learning_rates(self, lrs: Sequence[float], first_step: int) -> None:
        """The learning rate of each step, `lrs[i]` at step `first_step + i`."""
        for i, lr in enumerate(lrs):
            self.writer.add_scalar(STEP_LR, float(lr), first_step + i)

    def images(self, images: torch.Tensor, step: int, tag: str = INPUTS, max_images: int = 64) -> None:
        """A grid of the first `max_images` of a (B, C, H, W) batch (uint8, or float in [0, 1])."""
        from torchvision.utils import make_grid

        batch = images[:max_images].detach().cpu()
        batch = batch.float().div(255) if batch.dtype == torch.uint8 else batch.float().clamp(0, 1)
        grid = make_grid(batch, nrow=min(8, len(batch)), padding=2, pad_value=1.0)
        self.writer.add_image(tag, grid, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

    def __enter__(self) -> TensorBoardLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
