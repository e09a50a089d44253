"""`cropmix train`: train a classifier with an augmentation (baseline, rrc, cropmix, +mixup/+cutmix)."""

from __future__ import annotations

import argparse
import json
import os

from . import SUBCOMMANDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cropmix.train.config import TrainConfig

    from .config_options import add_config_options
    from .recipes import add_recipe_options

    p = subparsers.add_parser(
        "train",
        help=SUBCOMMANDS["train"],
        description="Train a classifier; writes config.json, metrics.jsonl/.csv, checkpoint.pt, final.json, "
        "curves.png and reliability.png to --out. Under torchrun every process joins one DDP run. Options that "
        "only apply with another setting (--num-crops with --aug cropmix, --nesterov with --optimizer sgd, ...) "
        "are errors without it.",
    )
    add_config_options(p, TrainConfig, required=("data", "out"))
    p.add_argument(
        "--allow-pipe-urls",
        action="store_true",
        help="webdataset: let a pipe:CMD --data run CMD (its output is the index); never taken from a file",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    add_recipe_options(p)
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the arguments describe."""
    from cropmix.train import TrainConfig

    from .config_options import config_values

    return TrainConfig.from_dict(config_values(args, TrainConfig))


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
