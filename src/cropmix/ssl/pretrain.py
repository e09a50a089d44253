"""Self-supervised pre-training (MoCo v2 or MAE) with standard or CropMix inputs, and its evaluation.

`pretrain(config)` runs in a run folder (config.json, metrics.jsonl, metrics.csv, final.json,
checkpoint.pt written atomically every `checkpoint_every` steps and at the end) and resumes from
its checkpoint with `resume=True`. Under torchrun (WORLD_SIZE > 1) each process joins the group and
takes its GPU (LOCAL_RANK) through `cropmix.train.distributed`, as training does, and its shard of
every batch through the data package's DistributedSampler; the model is wrapped in
DistributedDataParallel and MoCo gathers keys from all processes before they enter the queue.
Datasets come from `cropmix.data.load_source` (held in memory as uint8), backbones from
`cropmix.models.build_model`; the learning-rate schedule and weight-decay groups from
`cropmix.train.schedule`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from cropmix.integrations.tensorboard import TensorBoardLog, open_run_log
from cropmix.models.weights import CheckpointError, load_checkpoint
from cropmix.train.checkpoint import CHECKPOINT, restore_states, save_atomic
from cropmix.train.distributed import (
    DistInfo,
    barrier,
    init_distributed,
    resolve_device,
    shutdown,
    uses_cuda,
)
from cropmix.train.run_files import MetricsLog, check_out_path, plain_rows, read_json, write_json
from cropmix.train.run_folder import (
    RunInterrupted,
    changed_config_error,
    changed_fields,
    check_world_size,
    diverged,
    interrupted,
    launch_env,
    run_folder,
)
from cropmix.train.schedule import decay_groups, warmup_cosine
from cropmix.train.settings import by_key

from .config import RESUMABLE_CHANGES, PretrainConfig
from .mae import MAE
from .moco import MoCo
from .representation import SUBSET_SEED, evaluate_split
from .views import MAEView, TwoViews

FINAL_LOSS_STEPS = 20  # final_loss: the mean loss of the last steps


def build_ssl_model(config: PretrainConfig, num_classes: int = 10) -> nn.Module:
    """MoCo around `build_model(config.backbone)`, or an MAE of `config.mae_kwargs`."""
    from .config import model_error

    try:
        if config.method == "mae":
            return MAE(image_size=config.data.image_size, num_classes=num_classes, **config.mae_kwargs)
        from cropmix.models import build_model

        size = config.data.image_size
        backbone = build_model(config.backbone, num_classes, image_size=size, **config.backbone_kwargs)
    except (TypeError, ValueError) as error:
        raise model_error(config, error) from error
    return MoCo(
        backbone,
        dim=config.moco_dim,
        queue_size=config.queue_size,
        momentum=config.moco_momentum,
        temperature=config.temperature,
        bn_splits=config.bn_splits,
    )


def build_ssl_optimizer(config: PretrainConfig, model: nn.Module, world: int) -> torch.optim.Optimizer:
    """MoCo v2: SGD, weight decay on every parameter (as the MoCo CIFAR demo); MAE: AdamW (0.9, 0.95),
    no decay on norms and biases (train's groups). Default learning rates scale with the global batch."""
    scale = config.batch_size * world / 256
    if config.method == "moco":
        lr = config.lr if config.lr is not None else 0.06 * scale
        wd = config.weight_decay if config.weight_decay is not None else 5e-4
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)
    lr = config.lr if config.lr is not None else 1e-3 * scale
    wd = config.weight_decay if config.weight_decay is not None else 0.05
    return torch.optim.AdamW(decay_groups(model, wd), lr=lr, betas=(0.9, 0.95))


def setup_process(config: PretrainConfig) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group (if any) and take this process's device, as training does."""
    info = init_distributed(uses_cuda(config.run.device))
    try:
        return info, resolve_device(config.run.device, info)
    except ValueError:
        shutdown(info)  # e.g. "cuda:1" under torchrun: leave no process group behind
        raise


def wrap_ddp(model: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """DistributedDataParallel on this process's GPU (or the CPU) under torchrun; `model` otherwise."""
    if not info.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def pretrain(config: PretrainConfig, model: nn.Module | None = None) -> dict[str, Any]:
    """Pre-train as `config` says; returns (and writes to out/final.json) losses, timings and accuracies.

    The run folder is held as training holds it (cropmix.train.run_folder): a used folder needs
    `resume`, a resume needs a checkpoint of the same configuration and number of processes, and
    resuming a finished run returns its final.json untouched. Raises DivergedError on a non-finite
    loss and RunInterrupted on Ctrl-C, the last checkpoint kept. `model` overrides
    `build_ssl_model(config)` (tests use tiny backbones).
    """
    from cropmix.data import check_data_path

    check_data_path(config.data.dataset, config.data.path, in_memory=True)  # before the run folder is made
    check_out_path(config.run.out, config.data.path, config.data.dataset)
    rank, world = launch_env()
    with run_folder(config.run.out, config.resume, main=rank == 0, command="pretrain") as out:
        state = _checked_resume(config, out, world)
        if config.run.threads:
            torch.set_num_threads(config.run.threads)
        info, device = setup_process(config)
        try:
            return _pretrain(config, model, info, device, state)
        except KeyboardInterrupt as error:
            if isinstance(error, RunInterrupted):
                raise
            raise interrupted(out, f"step {state['step']}" if state else None) from None
        finally:
            shutdown(info)


@dataclass
class _Run:
    """What the training steps of one run share."""

    config: PretrainConfig
    model: nn.Module
    net: nn.Module  # `model`, or its DDP wrapper
    optimizer: torch.optim.Optimizer
    base_lrs: list[float]  # before the schedule (a resumed optimizer holds the scheduled ones)
    view: Any
    loader: Any
    device: torch.device
    info: DistInfo
    out: Path
    total: int
    log: MetricsLog | None
    train_images: int = 0
    saved_step: int = 0  # the step of the checkpoint in the run folder
    pending: list[dict[str, Any]] = field(default_factory=list)  # metrics rows the next checkpoint covers
    losses: list[float] = field(default_factory=list)  # the last FINAL_LOSS_STEPS (final_loss), checkpointed
    tensorboard: TensorBoardLog | None = None


def _checked_resume(config: PretrainConfig, out: Path, world: int) -> dict[str, Any] | None:
    """The checkpoint to resume from (None for a new run), checked to be of this configuration (paths
    resolved, `out` left out) and this number of processes."""
    if not config.resume:
        return None
    path = out / CHECKPOINT
    state = load_checkpoint(path)
    if not isinstance(state.get("config"), dict) or not isinstance(state.get("step"), int):
        raise ValueError(f"checkpoint {str(path)!r} holds no pre-training 'config' and 'step'")
    saved = {**PretrainConfig().to_dict(), **state["config"]}
    requested = config.to_dict()
    changed = changed_fields(requested, saved, RESUMABLE_CHANGES, paths={"data"})
    if changed:
        raise changed_config_error(changed, requested, saved, path, by_key(PretrainConfig))
    check_world_size(state.get("world_size"), world, path)
    return state


def _pretrain(
    config: PretrainConfig, model: nn.Module | None, info: DistInfo, device: torch.device, state: dict | None
) -> dict:
    from cropmix.data import subset

    out = Path(config.run.out)
    source = config.source()
    train = subset(source.train, config.subset if config.subset < 1.0 else None, SUBSET_SEED)
    torch.manual_seed(config.run.seed)
    model = (model if model is not None else build_ssl_model(config, source.num_classes)).to(device)
    optimizer = build_ssl_optimizer(config, model, info.world)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    step = 0
    if state is not None:
        restore_states(state, {"model": model, "optimizer": optimizer}, out / CHECKPOINT)
        step = state["step"]
    loader = _loader(config, train, info)
    total = config.steps if config.steps is not None else config.epochs * len(loader)
    if step >= total and (out / "final.json").is_file():  # finished: what eval may have added stays
        return {k: v for k, v in read_json(out / "final.json").items() if k != "config"}
    size = config.data.image_size
    view = TwoViews(config.aug, size) if config.method == "moco" else MAEView(config.aug, size)
    tail = plain_rows(state.get("metrics_tail", []), out / CHECKPOINT) if state is not None else []
    log = MetricsLog(out, after_step=step if state is not None else None, tail=tail) if info.main else None
    net = wrap_ddp(model, info, device)
    run = _Run(config, model, net, optimizer, base_lrs, view, loader, device, info, out, total, log, len(train), step)
    run.losses = _saved_losses(state, out / CHECKPOINT) if state is not None else []
    if info.main and state is not None:  # config.json, should a crash have left the checkpoint without it
        _write_config(run)
    run.tensorboard = open_run_log(config.run.log, out, step, info.main)
    try:
        result = _train_steps(run, step)
    except KeyboardInterrupt:
        raise interrupted(out, f"step {run.saved_step}" if run.saved_step else None) from None
    if info.main:
        result.update(evaluate_split(model, source, config, device))
        if run.tensorboard is not None:  # the kNN and probe accuracies at the last step
            run.tensorboard.scalars(result, result["steps"])
            run.tensorboard.close()
        write_json(out / "final.json", {**result, "config": config.to_dict()})
    barrier(info)
    return result


def _saved_losses(state: dict[str, Any], path: Path) -> list[float]:
    """The last losses a checkpoint holds, so a resumed run's final_loss is an uninterrupted one's (none in a
    checkpoint from before they were kept); CheckpointError naming the file if they are not floats."""
    losses = state.get("recent_losses", [])
    if not isinstance(losses, list) or len(losses) > FINAL_LOSS_STEPS or not all(type(v) is float for v in losses):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: 'recent_losses' is not a list of at most {FINAL_LOSS_STEPS} floats"
        )
    return losses


def _loader(config: PretrainConfig, train: Any, info: DistInfo) -> Any:
    """This process's shuffled batches of the training images."""
    from cropmix.data import Batching, make_loader

    loader = make_loader(
        train,
        None,
        Batching(
            config.batch_size,
            train=True,
            seed=config.run.seed,
            rank=info.rank,
            world=info.world,
            workers=config.run.workers,
        ),
    )
    if len(loader) == 0:
        raise ValueError(
            f"--batch-size {config.batch_size} is more than the {len(train)} training images per process: lower "
            "--batch-size (or raise --subset)"
        )
    return loader


def _write_config(run: _Run) -> None:
    """out/config.json: the config, the number of processes and the training images."""
    config = run.config.to_dict()
    write_json(run.out / "config.json", {**config, "world_size": run.info.world, "train_images": run.train_images})


def _train_steps(run: _Run, step: int) -> dict[str, Any]:
    """Optimiser steps from `step` to `run.total` (or until max_seconds); losses and timings."""
    from cropmix.data import set_epoch

    config, per_epoch = run.config, len(run.loader)
    progress = _progress(config, run.info, run.total, step)
    run.model.train()
    start, aug_time, stopped = time.time(), 0.0, False
    while step < run.total and not stopped:
        epoch, skip = divmod(step, per_epoch)
        set_epoch(run.loader, epoch)
        for i, (images, _) in enumerate(run.loader):
            if i < skip:
                continue
            if step >= run.total or stopped:
                break
            for group, base in zip(run.optimizer.param_groups, run.base_lrs, strict=True):
                group["lr"] = base * warmup_cosine(step, run.total, config.warmup_steps)
            loss, info, seconds = _one_step(run, images, step)
            step, aug_time = step + 1, aug_time + seconds
            run.losses = [*run.losses, loss][-FINAL_LOSS_STEPS:]
            if progress is not None:
                progress.update(1)
                progress.set_postfix(loss=f"{loss:.3f}")
            stopped = config.max_seconds is not None and time.time() - start > config.max_seconds
            _record(run, step, loss, info, time.time() - start, stopped)
    if progress is not None:
        progress.close()
    result: dict[str, Any] = {"steps": step, "train_seconds": time.time() - start, "augment_seconds": aug_time}
    result["stopped_early"] = stopped
    result["final_loss"] = sum(run.losses) / len(run.losses) if run.losses else None
    return result


def _one_step(run: _Run, images: torch.Tensor, step: int) -> tuple[float, dict[str, float], float]:
    """One optimiser step on a batch of uint8 images; (loss, the model's extra metrics, seconds in the views)."""
    torch.manual_seed(run.config.run.seed * 1_000_003 + step * 101 + run.info.rank)
    t0 = time.time()
    inputs = run.view(images)
    seconds = time.time() - t0
    if step == 0 and run.tensorboard is not None:
        run.tensorboard.images(inputs[0] if run.config.method == "moco" else inputs, 0)
    if run.config.method == "moco":
        loss, info = run.net(inputs[0].to(run.device), inputs[1].to(run.device))
    else:
        loss, info = run.net(inputs.to(run.device))
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    value = float(loss.detach())
    if not math.isfinite(value):  # the step just taken is never saved: the last checkpoint stays good
        saved = f"step {run.saved_step}" if run.saved_step else None
        lr = run.base_lrs[0]
        raise diverged(value, f"step {step + 1} of {run.total}", saved, run.out, lr)
    return value, info, seconds


def _record(run: _Run, step: int, loss: float, info: dict[str, float], elapsed: float, stopped: bool) -> None:
    """The metrics row every `log_every` steps and the checkpoint every `checkpoint_every` (rank 0 only).
    Rows are appended to the metrics files only once a checkpoint covering them is saved."""
    config = run.config
    last = step == run.total or stopped
    if run.log is not None and (step % config.log_every == 0 or step == run.total):
        row = {"step": step, "epoch": step / len(run.loader), "loss": loss, "lr": run.optimizer.param_groups[0]["lr"]}
        run.pending.append({**row, **info, "time": elapsed})
        if run.tensorboard is not None:
            run.tensorboard.scalars({**row, **info}, step)
    if run.tensorboard is not None:
        run.tensorboard.learning_rates([run.optimizer.param_groups[0]["lr"]], step)
    if run.info.main and (step % config.checkpoint_every == 0 or last):
        _save_checkpoint(run, step)


def _save_checkpoint(run: _Run, step: int) -> None:
    """The checkpoint at `step` (holding the rows logged since the last one), then those rows appended."""
    state = {"model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(), "step": step}
    extra = {"world_size": run.info.world, "metrics_tail": run.pending, "recent_losses": run.losses}
    save_atomic({**state, **extra, "config": run.config.to_dict()}, run.out / CHECKPOINT)
    if not run.saved_step:
        _write_config(run)
    run.saved_step = step
    if run.log is not None:
        run.log.extend(run.pending)
    run.pending = []


def _progress(config: PretrainConfig, info: DistInfo, total: int, step: int):
    if not (config.run.progress and info.main):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=step, desc=f"{config.method}/{config.aug}", mininterval=5.0)
