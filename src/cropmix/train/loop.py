"""`train(config) -> run folder`: one loop for one CPU, one GPU, or many processes under torchrun."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode

from cropmix.data import base_transform, eval_transform, load_source, make_loader, parse_aug, set_epoch
from cropmix.data.arrays import ArraySplit
from cropmix.data.augment import batch_cropmix, cropmix_kwargs
from cropmix.models import weights

from . import run_files as rf
from .checkpoint import CHECKPOINT, rng_states, save_atomic, set_rng_states
from .config import TrainConfig
from .distributed import DistInfo, all_reduce_sum, barrier, init_distributed, resolve_device, shutdown, uses_cuda
from .mixing import BATCH_MIX_FUNCTIONS, soft_cross_entropy, soft_targets
from .schedule import build_optimizer, build_scheduler

log = logging.getLogger("cropmix.train")

BATCHED_MAX_SIZE = 64  # largest training image side that uses BatchCropMix
# Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = {"progress", "workers", "threads", "device", "eval_batch_size"}


def default_normalisation(config: TrainConfig) -> str:
    return config.normalisation or {"cifar100": "cifar100", "imagefolder": "imagenet"}.get(config.dataset, "cifar10")


def build_model_for(config: TrainConfig, num_classes: int, image_size: int) -> torch.nn.Module:
    """The run's model (from cropmix.models), normalising inside with the dataset's statistics."""
    from cropmix import models

    key = default_normalisation(config).upper()
    mean, std = getattr(models, f"{key}_MEAN"), getattr(models, f"{key}_STD")
    return models.build_model(
        config.model, num_classes, image_size=image_size, mean=mean, std=std, **config.model_kwargs
    )


def subset(split: Any, limit: int | None, seed: int = 0) -> Any:
    """The same `limit` images for every run (a fixed permutation), in memory or file lists."""
    n = len(split.targets)
    if limit is None or limit >= n:
        return split
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:limit].sort().values
    if isinstance(split, ArraySplit):
        return ArraySplit(split.images[keep], split.targets[keep], split.classes)
    from copy import copy

    out = copy(split)
    out.paths = [split.paths[i] for i in keep.tolist()]
    out.targets = [split.targets[i] for i in keep.tolist()]
    return out


def prepare_data(config: TrainConfig, info: DistInfo, pin: bool) -> tuple[Any, Any, Any, int, int]:
    """(train loader, test loader, full test loader for rank 0, num_classes, image size)."""
    source = load_source(
        config.dataset, config.data, download=config.download, skip_bad=config.skip_bad, in_memory=config.in_memory
    )
    train_split = subset(source.train, config.max_train_images)
    test_split = subset(source.test, config.max_test_images)
    in_memory = source.in_memory
    size = config.image_size or (int(train_split.images.shape[-1]) if in_memory else 224)
    base, _ = parse_aug(config.aug)
    kwargs = cropmix_kwargs(config.preset, size, config.cropmix_overrides())
    # BatchCropMix in the loader workers where it is faster than CropMix per image: small in-memory images
    # (about 6x at 32x32 on a CPU, but slower than the loop at 224x224: benchmarks/RESULTS.md). Bilinear only.
    batched = (
        base == "cropmix"
        and in_memory
        and size <= BATCHED_MAX_SIZE
        and kwargs.get("interpolation", InterpolationMode.BILINEAR) == InterpolationMode.BILINEAR
    )
    if batched:
        transform = batch_cropmix(kwargs)
    else:
        transform = base_transform(
            base,
            size,
            in_memory=in_memory,
            preset_name=config.preset,
            cropmix_overrides=config.cropmix_overrides(),
            rrc_scale=config.rrc_scale,
        )
        if in_memory and base == "none":
            transform = None
    common = dict(workers=config.workers, pin_memory=pin, skip_bad=config.skip_bad)
    train_loader = make_loader(
        train_split,
        transform,
        batch_size=config.batch_size,
        train=True,
        seed=config.seed,
        rank=info.rank,
        world=info.world,
        batched_transform=batched,
        **common,
    )
    test_tf = None if in_memory else eval_transform(size, False)
    eval_common = dict(common, workers=0 if in_memory else config.workers)
    test_loader = make_loader(
        test_split,
        test_tf,
        batch_size=config.eval_batch_size,
        train=False,
        rank=info.rank,
        world=info.world,
        **eval_common,
    )
    full_test = make_loader(test_split, test_tf, batch_size=config.eval_batch_size, train=False, **eval_common)
    return train_loader, test_loader, full_test, source.num_classes, size


def to_input(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """uint8 or float batches -> float in [0, 1] on `device`."""
    images = images.to(device, non_blocking=True)
    images = images.float().div_(255) if images.dtype == torch.uint8 else images.float()
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


@torch.no_grad()
def evaluate_loss_top1(model, loader, device, info: DistInfo, channels_last: bool, amp: bool) -> dict[str, float]:
    """Test loss and top-1 over this rank's shard, summed over all ranks."""
    model.eval()
    loss_sum = correct = count = 0.0
    for images, targets in loader:
        targets = targets.to(device)
        with torch.autocast("cuda", enabled=amp):
            logits = model(to_input(images, device, channels_last)).float()
        loss_sum += float(F.cross_entropy(logits, targets, reduction="sum"))
        correct += float((logits.argmax(1) == targets).sum())
        count += len(targets)
    loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], info, device)
    return {"test_loss": loss_sum / max(count, 1), "test_top1": 100.0 * correct / max(count, 1)}


def check_resume(config: TrainConfig, out: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to resume from, after checking that the run folder fits the request."""
    ckpt_path = out / CHECKPOINT
    if not resume:
        if ckpt_path.exists():
            raise ValueError(
                f"run folder {str(out)!r} already holds a checkpoint: pass --resume or choose another --out"
            )
        return None
    if not ckpt_path.exists():
        raise FileNotFoundError(f"--resume: no checkpoint {str(ckpt_path)!r} to resume from")
    saved = TrainConfig.load(out / rf.CONFIG).to_dict()
    changed = sorted(k for k, v in config.to_dict().items() if k not in RESUMABLE_CHANGES and saved.get(k) != v)
    if changed:
        raise ValueError(
            f"--resume with a different configuration: fields {changed} differ from {str(out / rf.CONFIG)!r}"
        )
    return weights.load_checkpoint(ckpt_path)


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train as `config` says; write the run folder (see cropmix.train.run_files) and return its path."""
    config.validate(torch.cuda.is_available())
    out = Path(config.out)
    checkpoint = check_resume(config, out, resume)  # before any work: a bad request fails fast
    if config.threads:
        torch.set_num_threads(config.threads)
    use_cuda = uses_cuda(config.device)
    info = init_distributed(use_cuda)
    try:
        return _train(config, out, checkpoint, info, use_cuda)
    finally:
        shutdown(info)


def _train(config: TrainConfig, out: Path, checkpoint: dict | None, info: DistInfo, use_cuda: bool) -> Path:
    device = resolve_device(config.device, info)
    amp = bool(use_cuda if config.amp is None else config.amp)
    # channels_last is 2-3x faster for small conv nets on CPU too (oneDNN), so it is on by default.
    channels_last = True if config.channels_last is None else config.channels_last
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        config.save(out / rf.CONFIG)
    torch.manual_seed(config.seed)
    train_loader, test_loader, full_test, num_classes, size = prepare_data(config, info, pin=use_cuda)
    model = build_model_for(config, num_classes, size)
    if config.init is not None and checkpoint is None:  # a resumed run's checkpoint already holds these weights
        left = weights.load_pretrained(model, config.init)
        if info.main:
            loaded = len(model.state_dict()) - len(left)
            log.info("init: loaded %d tensors from %s (left as initialised: %s)", loaded, config.init, left)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, config)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={config.batch_size} x {info.world} processes exceeds the training split")
    scheduler = build_scheduler(optimizer, steps_per_epoch, config)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    start_epoch, rows = 0, []
    if checkpoint is not None:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        set_rng_states(checkpoint["rng"])
        start_epoch = checkpoint["epoch"]
        rows = [r for r in rf.read_metrics(out) if r["epoch"] <= start_epoch]
    net = model
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if use_cuda else None)
    _, batch_mix = parse_aug(config.aug)
    soft = batch_mix is not None or config.label_smoothing > 0

    for epoch in range(start_epoch, config.epochs):
        # Seeding per epoch and rank makes a resumed run draw what an uninterrupted one would.
        torch.manual_seed(config.seed * 1_000_003 + epoch * 1009 + info.rank)
        set_epoch(train_loader, epoch)
        net.train()
        loss_sum = correct = count = 0.0
        bar = _progress(config, info, steps_per_epoch, epoch)
        start = time.perf_counter()
        for step, (images, targets) in enumerate(train_loader):
            inputs = to_input(images, device, channels_last)
            targets = targets.to(device, non_blocking=True)
            with torch.autocast("cuda", enabled=amp):
                if soft:
                    goal = soft_targets(targets, num_classes, config.label_smoothing)
                    if batch_mix is not None:
                        inputs, goal = BATCH_MIX_FUNCTIONS[batch_mix](inputs, goal, config.mix_alpha)
                    logits = net(inputs)
                    loss = soft_cross_entropy(logits, goal)
                else:
                    logits = net(inputs)
                    loss = F.cross_entropy(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n = len(targets)
            loss_sum += float(loss.detach()) * n
            correct += float((logits.detach().argmax(1) == targets).sum())
            count += n
            if bar is not None and (step % 10 == 0 or step == steps_per_epoch - 1):
                rate = count * info.world / max(time.perf_counter() - start, 1e-9)
                bar.set_postfix(loss=f"{loss_sum / count:.3f}", acc=f"{100 * correct / count:.1f}", img_s=f"{rate:.0f}")
            if bar is not None:
                bar.update(1)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        loss_sum, correct, count = all_reduce_sum([loss_sum, correct, count], info, device)
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / count,
            "train_top1": 100.0 * correct / count,
            "epoch_seconds": seconds,
            "images_per_second": count / seconds,
        }
        if (epoch + 1) % config.eval_every == 0 or epoch + 1 == config.epochs:
            row.update(evaluate_loss_top1(net, test_loader, device, info, channels_last, amp))
        rows.append(row)
        if info.main:
            rf.write_metrics(out, rows)
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "rng": rng_states(),
                "config": config.to_dict(),
            }
            save_atomic(state, out / CHECKPOINT)
            log.info("epoch %d/%d %s", epoch + 1, config.epochs, row)
        barrier(info)

    if info.main:
        finish_run(model, full_test, device, out, rows, amp)
    barrier(info)
    return out


def finish_run(model, loader, device, out: Path, rows: list[dict[str, Any]], amp: bool) -> dict[str, Any]:
    """final.json (top-1, top-5, ECE, RMS, timing) with a reliability diagram, and the training curves."""
    from cropmix.evaluate import evaluate_classifier
    from cropmix.viz.curves import save_training_curves

    model.eval()
    final = evaluate_classifier(model, loader, device, reliability_png=out / rf.RELIABILITY)
    timed = [r["epoch_seconds"] for r in rows]
    final.update(
        epochs=len(rows),
        seconds_per_epoch=sum(timed) / len(timed),
        images_per_second=sum(r["images_per_second"] for r in rows) / len(rows),
        train_top1=rows[-1]["train_top1"],
    )
    rf.write_json(out / rf.FINAL, final)
    save_training_curves(rows, out / rf.CURVES)
    return final


def _progress(config: TrainConfig, info: DistInfo, total: int, epoch: int):
    if not (config.progress and info.main):
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, desc=f"epoch {epoch + 1}/{config.epochs}", file=sys.stderr, leave=False, dynamic_ncols=True
    )
