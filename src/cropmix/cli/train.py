"""`cropmix train`: train a classifier with an augmentation (baseline, rrc, cropmix, +mixup/+cutmix)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from . import SUBCOMMANDS
from .arg_types import json_object

BOOL_FIELDS = ("nesterov", "amp", "channels_last", "download")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cropmix.train.config import TrainConfig

    from .recipes import add_recipe_options

    d = TrainConfig()
    p = subparsers.add_parser(
        "train",
        help=SUBCOMMANDS["train"],
        description="Train a classifier; writes config.json, metrics.jsonl/.csv, checkpoint.pt, final.json and "
        "curves.png to --out. Under torchrun every process joins one DDP run. Options that only apply with "
        "another setting (--num-crops with --aug cropmix, --nesterov with --optimizer sgd, ...) are errors "
        "without it.",
    )
    _data_and_model(p, d)
    _augmentation(p, d)
    _optimisation(p, d)
    _running(p, d)
    add_recipe_options(p)
    p.set_defaults(run=run)


def _data_and_model(p: argparse.ArgumentParser, d) -> None:
    from cropmix.data.sources import SOURCES

    p.add_argument(
        "--dataset",
        default=d.dataset,
        help=" | ".join(SOURCES) + " (default: %(default)s)",
    )
    p.add_argument(
        "--data",
        required=True,
        help="dataset folder (CIFAR: torchvision format; ImageFolder: train/ and val/ or test/) or .npz file; "
        "hf: a Hugging Face dataset name (in the local cache) or folder; webdataset: the folder `cropmix shards` "
        "wrote, its index.json, or a URL",
    )
    p.add_argument(
        "--allow-pipe-urls",
        action="store_true",
        help="webdataset: let a pipe:CMD --data run CMD (its output is the index); never taken from a file",
    )
    p.add_argument("--hf-image-key", help="hf: the image column (default: image)")
    p.add_argument("--hf-label-key", help="hf: the label column (default: label)")
    p.add_argument("--out", required=True, help="run folder")
    p.add_argument(
        "--model", default=d.model, help="resnet18 | preact_resnet18 | wrn28_10 | fastnet | vit_tiny | timm:<name>"
    )
    p.add_argument(
        "--model-kwargs",
        type=json_object,
        default={},
        help="backbone arguments as JSON, e.g. '{\"widths\": [8, 16, 32, 64]}' with --model fastnet",
    )
    p.add_argument(
        "--init", metavar="PATH", help="start from the backbone of a cropmix pretrain checkpoint (MoCo or MAE)"
    )
    p.add_argument("--image-size", type=int, help="training image side (default: the data's; 224 for files, shards)")
    p.add_argument(
        "--normalisation", choices=("cifar10", "cifar100", "imagenet"), help="mean/std (default: by dataset)"
    )
    p.add_argument("--max-train-images", type=int, help="use a fixed random subset of the training split")
    p.add_argument("--max-test-images", type=int)
    p.add_argument("--skip-bad", action="store_true", help="count, log and skip unreadable image files")
    p.add_argument("--in-memory", action="store_true", help="ImageFolder: decode all images into memory once")
    p.add_argument(
        "--aug-device",
        choices=("auto", "workers", "device"),
        default=d.aug_device,
        help="where augmentation runs: DataLoader workers, or the training device (shards, or data in memory: "
        "cifar, npz, --in-memory); auto: the device for webdataset, workers otherwise (default: %(default)s)",
    )
    p.add_argument(
        "--shuffle-buffer", type=int, help="webdataset: samples each shard reader shuffles among (default: 1000)"
    )


def _augmentation(p: argparse.ArgumentParser, d) -> None:
    p.add_argument(
        "--aug",
        default=d.aug,
        help="none | baseline | rrc | cropmix, optionally +mixup or +cutmix (default: %(default)s)",
    )
    p.add_argument("--preset", default=d.preset, help="CropMix preset, also rrc's scale (default: %(default)s)")
    cropmix = "(--aug cropmix only)"
    p.add_argument(
        "--scale", type=float, nargs=2, dest="cropmix_scale", metavar=("LOW", "HIGH"), help=f"CropMix scale {cropmix}"
    )
    p.add_argument(
        "--num-crops", type=int, nargs="+", dest="cropmix_num_crops", help=f"CropMix N, several: per image {cropmix}"
    )
    p.add_argument("--mix", dest="cropmix_mix", choices=("mixup", "cutmix"), help=f"CropMix mixing {cropmix}")
    p.add_argument("--alpha", type=float, dest="cropmix_alpha", help=f"CropMix Mixup strength {cropmix}")
    p.add_argument(
        "--no-channel-permute", dest="cropmix_channel_permute", action="store_false", default=None, help=cropmix
    )
    p.add_argument(
        "--rrc-scale", type=float, nargs=2, metavar=("LOW", "HIGH"), help="rrc scale (default: the preset's range)"
    )
    p.add_argument(
        "--timm-aug",
        type=json_object,
        metavar="JSON",
        help="timm's training transform with CropMix as its crop (--aug cropmix only); JSON of "
        'timm.data.create_transform arguments, e.g. \'{"auto_augment": "rand-m9-mstd0.5"}\' (cropmix[timm])',
    )
    p.add_argument("--mix-alpha", type=float, help="batch Mixup/CutMix Beta alpha (+mixup/+cutmix only; default: 1)")


def _optimisation(p: argparse.ArgumentParser, d) -> None:
    from cropmix.train.config import DEFAULT_LR, OPTIMIZERS, SCHEDULES

    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process (default: %(default)s)")
    p.add_argument("--eval-batch-size", type=int, default=d.eval_batch_size)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    lrs = ", ".join(f"{name} {lr:g}" for name, lr in DEFAULT_LR.items())
    p.add_argument("--lr", type=float, help=f"learning rate (default by optimizer: {lrs})")
    p.add_argument("--momentum", type=float, help="SGD momentum (sgd only; default: 0.9)")
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--schedule", choices=SCHEDULES, default=d.schedule)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument(
        "--milestones", type=int, nargs="+", help="step schedule epochs (step only; default: 50%% and 75%% of them)"
    )
    p.add_argument("--gamma", type=float, help="step schedule factor (step only; default: 0.1)")
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    helps = {"nesterov": "Nesterov momentum (sgd only; default: on)", "amp": "mixed precision (default: on CUDA)"}
    for name in BOOL_FIELDS:
        flag = f"--{name.replace('_', '-')}"
        p.add_argument(flag, action=argparse.BooleanOptionalAction, default=getattr(d, name), help=helps.get(name))


def _running(p: argparse.ArgumentParser, d) -> None:
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--device", default=d.device, help="auto | cpu | cuda | cuda:N (default: %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers per process")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--eval-every", type=int, default=d.eval_every)
    p.add_argument("--name", help="label in comparisons (default: the augmentation)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--log", choices=("tensorboard",), help="also write TensorBoard events to OUT/tensorboard")


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the arguments describe."""
    from cropmix.train import TrainConfig

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig) if hasattr(args, f.name)}
    crops = values.get("cropmix_num_crops")
    if crops is not None:
        values["cropmix_num_crops"] = crops[0] if len(crops) == 1 else tuple(crops)
    return TrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    from cropmix.train import train
    from cropmix.train.run_files import FINAL, read_json

    from .run_guard import run_guarded

    if args.allow_pipe_urls and args.data.startswith("pipe:"):
        from cropmix.data.shard_urls import allow_pipe_url

        allow_pipe_url(args.data)
    config = config_from_args(args)
    if args.print_config:  # what out/config.json would hold, checked as a run would check it
        import torch

        config.validate(torch.cuda.is_available())
        print(json.dumps(config.to_dict(), indent=2))
        return 0

    def train_and_report() -> int:
        out = train(config, resume=args.resume)
        final = out / FINAL
        if final.is_file() and os.environ.get("RANK", "0") == "0":  # under torchrun: printed once, by rank 0
            print(json.dumps({"run": str(out), **read_json(final)}))
        return 0

    return run_guarded("train", train_and_report)
