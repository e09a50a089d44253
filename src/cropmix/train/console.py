"""What `cropmix train` shows: a start-up summary, one readable line per epoch, progress bars, and the
TensorBoard log of a run (`run` below is a `cropmix.train.loop.Run`)."""

from __future__ import annotations

import sys
from typing import Any

from .config import TrainConfig
from .distributed import DistInfo


def start_summary(run: Any, steps: int) -> str:
    """One line saying what the run (a `cropmix.train.loop.Run`) is about to do: data, model, device,
    `steps` per epoch and where it writes."""
    config = run.config
    where = f"{run.device}" + (f" x {run.info.world} processes" if run.info.world > 1 else "")
    text = (
        f"training {run.train_images:,} images ({run.test_images:,} test) of {run.num_classes} classes at "
        f"{run.image_size} px, aug {config.aug.name}, model {config.model.name} on {where}: "
        f"{config.optim.epochs} epochs of {steps} steps (batch {config.optim.batch_size}); run folder {run.out}"
    )
    return text + (f"; resuming after epoch {run.start_epoch}" if run.start_epoch else "")


def epoch_line(row: dict[str, Any], epochs: int) -> str:
    """An epoch's metrics row as one readable line (metrics.jsonl keeps every digit)."""
    parts = [f"epoch {row['epoch']}/{epochs}", f"train loss {row['train_loss']:.4f} top-1 {row['train_top1']:.2f}%"]
    if "test_top1" in row:
        parts.append(f"test loss {row['test_loss']:.4f} top-1 {row['test_top1']:.2f}%")
    parts.append(f"lr {row['lr']:.4g}, {row['images_per_second']:,.0f} img/s, {row['epoch_seconds']:.1f} s")
    if row.get("skipped_files"):
        parts.append(f"{row['skipped_files']} files skipped")
    return " | ".join(parts)


def progress_bar(config: TrainConfig, info: DistInfo, total: int, epoch: int) -> Any:
    """A tqdm bar over an epoch's `total` steps on rank 0 with progress on; None otherwise."""
    if not (config.run.progress and info.main):
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, desc=f"epoch {epoch + 1}/{config.optim.epochs}", file=sys.stderr, leave=False, dynamic_ncols=True
    )


def open_tensorboard(run: Any) -> None:
    """--log tensorboard, rank 0: event files in out/tensorboard, indexed by optimiser step; a resumed run
    drops what the stopped one wrote past its checkpoint. The first training batch is logged as a grid
    (`train_one_epoch`): a separate look at the loader would advance persistent workers' RNG."""
    from cropmix.integrations.tensorboard import open_run_log

    run.tensorboard = open_run_log(run.config.run.log, run.out, run.start_epoch * len(run.train_loader), run.info.main)


def log_tensorboard(run: Any, row: dict[str, Any], epoch: int) -> None:
    """The epoch's row at the step that ended it, and the learning rate of each of its steps."""
    if run.tensorboard is None:
        return
    steps = len(run.train_loader)
    run.tensorboard.learning_rates(run.step_lrs, epoch * steps + 1)
    run.tensorboard.scalars(row, (epoch + 1) * steps)
    run.tensorboard.flush()
