"""`train(config) -> run folder`: one loop for one CPU, one GPU, or many processes under torchrun.

The loop is `build_run` (data, model, optimizer, resumed state), then per epoch `train_one_epoch`,
`evaluate` and `save_state`, then `finish_run` (final metrics and curves).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cropmix.data import parse_aug, set_epoch, skipped_files
from cropmix.models import weights

from . import run_files as rf
from .checkpoint import CHECKPOINT, checkpoint_entry, rng_states, save_atomic
from .config import TrainConfig, model_error
from .console import epoch_line, log_tensorboard, open_tensorboard, progress_bar, start_summary
from .data_setup import prepare_data
from .distributed import DistInfo, all_reduce_sum, barrier, init_distributed, resolve_device, shutdown, uses_cuda
from .mixing import BATCH_MIX_FUNCTIONS, soft_cross_entropy, soft_targets
from .resume import check_resume, restore_run
from .run_folder import diverged, interrupted, launch_env, run_folder
from .schedule import build_optimizer, build_scheduler

log = logging.getLogger("cropmix.train")

__all__ = ["build_model_for", "evaluate", "save_state", "train", "train_one_epoch"]


def default_normalisation(config: TrainConfig) -> str:
    from cropmix.data.sources import source_named

    return config.data.normalisation or source_named(config.data.dataset).normalisation


def build_model_for(config: TrainConfig, num_classes: int, image_size: int) -> torch.nn.Module:
    """The run's model (from cropmix.models), normalising inside with the dataset's statistics."""
    from cropmix import models

    key = default_normalisation(config).upper()
    mean, std = getattr(models, f"{key}_MEAN"), getattr(models, f"{key}_STD")
    try:
        return models.build_model(
            config.model.name, num_classes, image_size=image_size, mean=mean, std=std, **config.model.kwargs
        )
    except (TypeError, ValueError) as error:  # e.g. a vit patch size the data's image size does not divide
        raise model_error(config, image_size, error) from error


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 or float batches -> float in [0, 1] on `device`."""
    images = images.to(device, non_blocking=True)
    images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


@torch.no_grad()
def evaluate(model, loader, device, info: DistInfo, channels_last: bool, amp: bool) -> dict[str, float]:
    """Test loss and top-1 over this rank's shard, summed over all ranks (and "test_skipped_files", the
    unreadable test files skipped, when there were any)."""
    model.eval()
    loss_sum = correct = count = 0.0
    skipped_before = skipped_files(loader)
    for images, targets in loader:
        targets = targets.to(device)
        with torch.autocast("cuda", enabled=amp):
            logits = model(to_input(images, device, channels_last)).float()
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += float((logits.argmax(1) == targets).sum())
        count += len(targets)
    skipped = skipped_files(loader) - skipped_before
    loss_sum, correct, count, skipped = all_reduce_sum([loss_sum, correct, count, skipped], info, device)
    row = {"test_loss": loss_sum / max(count, 1), "test_top1": 100.0 * correct / max(count, 1)}
    if skipped:
        row["test_skipped_files"] = int(skipped)
        if info.main:
            log.warning("skipped %d unreadable test files", int(skipped))
    return row


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train as `config` says; write the run folder (see cropmix.train.run_files) and return its path.

    The folder is held for the whole run (see cropmix.train.run_folder). Resuming a finished run does
    nothing (its final.json, with what `cropmix eval` added, stays). Raises DivergedError when the loss
    becomes non-finite and RunInterrupted on Ctrl-C; either way the last checkpoint is kept.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(
            f"config must be a TrainConfig, got a {type(config).__name__}: pass TrainConfig.from_dict(...) "
            "(flat keys, as config.json holds them)"
        )
    config.validate(torch.cuda.is_available())
    rank, world = launch_env()
    with run_folder(config.run.out, resume, main=rank == 0) as out:
        checkpoint = check_resume(config, out, resume, world)  # before any work: a bad request fails fast
        done = checkpoint_entry(checkpoint, "epoch", int, out / CHECKPOINT) if checkpoint is not None else 0
        if done >= config.optim.epochs and (out / rf.FINAL).is_file():
            log.info("%s: the run is finished (%d epochs); nothing to do", out, done)
            return out
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        info = init_distributed(uses_cuda(config.run.device))
        run = None
        try:
            run = build_run(config, out, checkpoint, info)
            run_epochs(run)
        except KeyboardInterrupt:
            saved = run.saved_epoch if run is not None else done
            raise interrupted(out, f"epoch {saved}" if saved else None) from None
        finally:
            shutdown(info)
    return out


def run_epochs(run: Run) -> None:
    """The epochs from the run's start, each saved as it ends, then final.json and the curves."""
    config, info = run.config, run.info
    open_tensorboard(run)
    if info.main:
        log.info("%s", start_summary(run, len(run.train_loader)))
    if info.main and run.start_epoch:  # files a crash left behind the checkpoint, rewritten from it
        write_run_files(run)
    for epoch in range(run.start_epoch, config.optim.epochs):
        row = train_one_epoch(run, epoch)
        if (epoch + 1) % config.run.eval_every == 0 or epoch + 1 == config.optim.epochs:
            row.update(evaluate(run.net, run.test_loader, run.device, info, run.channels_last, run.amp))
        run.rows.append(row)
        if info.main:
            save_state(run, epoch + 1)
            log_tensorboard(run, row, epoch)
            log.info("%s", epoch_line(row, config.optim.epochs))
        barrier(info)
    if info.main:
        finish_run(run.model, run.full_test, run.device, run.out, run.rows, progress=config.run.progress)
    if run.tensorboard is not None:
        run.tensorboard.close()
    barrier(info)


@dataclass
class Run:
    """Everything a training run holds between epochs."""

    config: TrainConfig
    out: Path
    info: DistInfo
    device: torch.device
    amp: bool
    channels_last: bool
    model: torch.nn.Module
    net: torch.nn.Module  # `model`, or its DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    train_loader: Any
    test_loader: Any
    full_test: Any
    num_classes: int
    image_size: int
    train_images: int
    test_images: int
    start_epoch: int
    rows: list[dict[str, Any]]
    tensorboard: Any = None  # a cropmix.integrations.tensorboard.TensorBoardLog on rank 0 with --log tensorboard
    saved_epoch: int = 0  # the epoch of the checkpoint in the run folder
    step_lrs: list[float] = field(default_factory=list)  # the learning rate of each step of the last epoch


def build_run(config: TrainConfig, out: Path, checkpoint: dict | None, info: DistInfo) -> Run:
    """Data, model, optimizer and schedule for `config`, restored from `checkpoint` when resuming."""
    device = resolve_device(config.run.device, info)
    use_cuda = device.type == "cuda"
    amp = bool(use_cuda if config.run.amp is None else config.run.amp)
    # channels_last is 2-3x faster for small conv nets on CPU too (oneDNN), so it is on by default.
    channels_last = config.model.setting("channels_last")
    torch.manual_seed(config.run.seed)
    data = prepare_data(config, info, pin=use_cuda, device=device)
    train_loader, num_classes, size = data.train_loader, data.num_classes, data.image_size
    if config.data.image_size is None:  # recorded as used, in config.json and the checkpoint
        config = config.replace(image_size=size)
    model = build_model_for(config, num_classes, size)
    if config.model.init is not None and checkpoint is None:  # a resumed run's checkpoint holds these weights
        load_init(model, config.model.init, info.main)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config.optim)
    if len(train_loader) == 0:
        raise ValueError(
            f"--batch-size {config.optim.batch_size} x {info.world} process(es) is more than the {data.train_images} "
            "training images: lower --batch-size"
        )
    scheduler = build_scheduler(optimizer, len(train_loader), config.optim)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start_epoch, rows = 0, []
    if checkpoint is not None:
        states = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler, "rng": None}
        start_epoch, rows = restore_run(checkpoint, states, out)
    net = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    return Run(
        config=config,
        out=out,
        info=info,
        device=device,
        amp=amp,
        channels_last=channels_last,
        model=model,
        net=net,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        start_epoch=start_epoch,
        rows=rows,
        saved_epoch=start_epoch,
        **data._asdict(),
    )


def load_init(model: torch.nn.Module, path: str, main: bool) -> None:
    """--init: the pretrained tensors of `path` that fit `model`, logging what was loaded (rank 0)."""
    left = weights.load_pretrained(model, path)
    if main:
        loaded = len(model.state_dict()) - len(left)
        log.info("init: loaded %d tensors from %s (left as initialised: %s)", loaded, path, left)


def train_one_epoch(run: Run, epoch: int) -> dict[str, Any]:
    """One pass over the training split; the epoch's row of metrics (summed over all ranks): "lr" the mean
    rate of its steps, "train_images" the images trained on, "skipped_files" the unreadable files skipped."""
    config, info = run.config, run.info
    seed_epoch(run, epoch)
    run.net.train()
    _, batch_mix = parse_aug(config.aug.name)
    soft = batch_mix is not None or config.optim.label_smoothing > 0
    steps = len(run.train_loader)
    skipped_before = skipped_files(run.train_loader)
    loss_sum = correct = count = 0.0
    run.step_lrs = []
    bar = progress_bar(config, info, steps, epoch)
    start = time.perf_counter()
    for step, (images, targets) in enumerate(run.train_loader):
        if run.tensorboard is not None and epoch == step == 0:
            run.tensorboard.images(images, 0)
        inputs = to_input(images, run.device, run.channels_last)
        targets = targets.to(run.device, non_blocking=True)
        with torch.autocast("cuda", enabled=run.amp):
            if soft:
                goal = soft_targets(targets, run.num_classes, config.optim.label_smoothing)
                if batch_mix is not None:
                    inputs, goal = BATCH_MIX_FUNCTIONS[batch_mix](inputs, goal, config.aug.setting("mix_alpha"))
                logits = run.net(inputs)
                loss = soft_cross_entropy(logits, goal)
            else:
                logits = run.net(inputs)
                loss = F.cross_entropy(logits.float(), targets)
        run.step_lrs.append(run.optimizer.param_groups[0]["lr"])  # this step's rate, before the schedule moves
        _optimise(run, loss)
        loss_sum += finite_loss(run, loss, f"epoch {epoch + 1}, step {step + 1} of {steps}") * len(targets)
        correct += float((logits.detach().argmax(1) == targets).sum())
        count += len(targets)
        if bar is not None:
            if step % 10 == 0 or step == steps - 1:
                rate = count * info.world / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{100 * correct / count:.1f}", img_s=f"{rate:.0f}")
            bar.update(1)
    seconds = time.perf_counter() - start
    if bar is not None:
        bar.close()
    skipped = skipped_files(run.train_loader) - skipped_before
    loss_sum, correct, count, skipped = all_reduce_sum([loss_sum, correct, count, skipped], info, run.device)
    row: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": sum(run.step_lrs) / max(steps, 1),
        "train_loss": loss_sum / count,
        "train_top1": 100.0 * correct / count,
        "train_images": int(count),
        "epoch_seconds": seconds,
        "images_per_second": count / seconds,
    }
    if skipped:
        row["skipped_files"] = int(skipped)
        if info.main:
            log.warning("epoch %d: skipped %d unreadable training files", epoch + 1, int(skipped))
    return row


def finite_loss(run: Run, loss: torch.Tensor, where: str) -> float:
    """The step's loss as a float (one synchronisation per step); DivergedError if it is NaN or
    infinite. The step just taken is never saved, so the last checkpoint stays good."""
    value = float(loss.detach())
    if not math.isfinite(value):
        saved = f"epoch {run.saved_epoch}" if run.saved_epoch else None
        raise diverged(value, where, saved, run.out, run.config.optim.setting("lr"))
    return value


def _optimise(run: Run, loss: torch.Tensor) -> None:
    """One optimiser step on `loss` (through the AMP scaler), then the per-step schedule."""
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()


def seed_epoch(run: Run, epoch: int) -> None:
    """Seed the RNG and reshuffle for `epoch` (per epoch and rank: a resumed run draws as an uninterrupted one)."""
    torch.manual_seed(run.config.run.seed * 1_000_003 + epoch * 1009 + run.info.rank)
    set_epoch(run.train_loader, epoch)


def save_state(run: Run, epochs_done: int) -> None:
    """Write the checkpoint (with the metrics rows so far), then the metrics files and config.json beside
    it: a crash in between leaves files behind the checkpoint, never ahead of it. Main rank only."""
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "scaler": run.scaler.state_dict(),
        "epoch": epochs_done,
        "rng": rng_states(),
        "config": run.config.to_dict(),
        "world_size": run.info.world,
        "data": {"num_classes": run.num_classes, "image_size": run.image_size},  # checked by `cropmix eval`
        "metrics": run.rows,
    }
    save_atomic(state, run.out / CHECKPOINT)
    run.saved_epoch = epochs_done
    write_run_files(run)


def write_run_files(run: Run) -> None:
    """metrics.jsonl, metrics.csv and config.json of the rows and the config so far."""
    rf.write_metrics(run.out, run.rows)
    rf.write_json(run.out / rf.CONFIG, run.config.to_dict())


def finish_run(model, loader, device, out: Path, rows: list[dict[str, Any]], progress: bool = True) -> dict[str, Any]:
    """final.json (top-1, top-5, ECE, RMS, timing) with a reliability diagram, and the training curves."""
    from cropmix.evaluate import ClassifierEval, evaluate_classifier
    from cropmix.integrations import optional_picture
    from cropmix.viz.curves import save_training_curves

    model.eval()
    options = ClassifierEval(progress=progress)
    final = evaluate_classifier(model, loader, device, options, reliability_png=out / rf.RELIABILITY)
    timed = [r["epoch_seconds"] for r in rows]
    final.update(
        epochs=len(rows),
        seconds_per_epoch=sum(timed) / len(timed),
        images_per_second=sum(r["images_per_second"] for r in rows) / len(rows),
        train_top1=rows[-1]["train_top1"],
    )
    rf.write_json(out / rf.FINAL, final)
    optional_picture(save_training_curves, out / rf.CURVES, rows)
    return final
