"""`cropmix pretrain`: self-supervised pre-training (MoCo v2 or MAE) with standard or CropMix inputs,
followed by kNN and linear-probe evaluation; `--eval-only CHECKPOINT` evaluates a finished run."""

from __future__ import annotations

import argparse
import dataclasses
import json

from . import SUBCOMMANDS
from .arg_types import json_object


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from .recipes import add_recipe_options

    p = subparsers.add_parser("pretrain", help=SUBCOMMANDS["pretrain"])
    p.add_argument("--method", choices=("moco", "mae"), help="required, unless --recipe gives it")
    p.add_argument(
        "--aug",
        default="standard",
        help="moco: standard | cropmix (the query view); mae: standard | mae-mixup | mae-cutmix (cropmix = mae-cutmix)",
    )
    p.add_argument("--dataset", default="npz", help="cifar10 | cifar100 | npz | imagefolder | hf (default: npz)")
    p.add_argument("--data", default="examples/cifar10_subset/cifar10_subset.npz", help="dataset path")
    p.add_argument("--hf-image-key", help="hf: the image column (default: image)")
    p.add_argument("--hf-label-key", help="hf: the label column (default: label)")
    p.add_argument("--out", default="runs/pretrain", help="run folder (default: runs/pretrain)")
    p.add_argument("--subset", type=float, default=1.0, help="fraction of the training split to pre-train on")
    p.add_argument("--backbone", default="resnet18", help="MoCo backbone, a cropmix.models name (default: resnet18)")
    p.add_argument("--backbone-kwargs", type=json_object, default={}, help="JSON keyword arguments of build_model")
    p.add_argument(
        "--mae-kwargs",
        type=json_object,
        default={},
        help='JSON keyword arguments of cropmix.ssl.MAE, e.g. \'{"dim": 128, "depth": 4, "heads": 4}\'',
    )
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (overrides --epochs)")
    p.add_argument("--max-seconds", type=float, default=None, help="stop training after this many seconds")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--queue-size", type=int, default=4096)
    p.add_argument("--temperature", type=float, default=0.2, help="MoCo InfoNCE temperature")
    p.add_argument("--moco-momentum", type=float, default=0.99)
    p.add_argument("--bn-splits", type=int, default=4, help="MoCo split BatchNorm: chunks per process batch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:N (under torchrun: GPU LOCAL_RANK; default: auto)"
    )
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--eval-train", type=int, default=None, help="labelled training images for kNN / probe")
    p.add_argument("--eval-test", type=int, default=None, help="test images for kNN / probe")
    p.add_argument("--knn-k", type=int, default=200)
    p.add_argument("--probe-epochs", type=int, default=30)
    p.add_argument(
        "--eval-only",
        metavar="CHECKPOINT",
        default=None,
        help="only evaluate this checkpoint: its model, method and data come from the checkpoint; "
        "--eval-train, --eval-test, --knn-k, --probe-epochs, --device and --threads apply",
    )
    p.add_argument("--log", choices=("tensorboard",), help="also write TensorBoard events to OUT/tensorboard")
    add_recipe_options(p)
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """The PretrainConfig the arguments describe (every option named like its field)."""
    from cropmix.ssl.pretrain import PretrainConfig

    if args.method is None:
        raise ValueError("method (--method) is required: moco or mae (or a --recipe that sets it)")
    return PretrainConfig(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig) if hasattr(args, f.name)}
    )


def run(args: argparse.Namespace) -> int:
    from cropmix.ssl.pretrain import evaluate_checkpoint, pretrain

    from .run_guard import run_guarded

    if args.eval_only:
        from cropmix.ssl.pretrain import EVALUATION_FIELDS

        overrides = {name: getattr(args, name) for name in EVALUATION_FIELDS if hasattr(args, name)}
        return run_guarded("pretrain", lambda: report(evaluate_checkpoint(args.eval_only, overrides=overrides)))
    config = config_from_args(args)
    if args.print_config:  # out/config.json less what only a run knows (world_size, train_images)
        print(json.dumps(dataclasses.asdict(config), indent=2))
        return 0

    return run_guarded("pretrain", lambda: report(pretrain(config)))


def report(result: dict) -> int:
    """Print a run's results (less its config) as JSON."""
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2, default=str))
    return 0
