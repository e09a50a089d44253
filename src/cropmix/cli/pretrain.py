"""`cropmix pretrain`: self-supervised pre-training (MoCo v2 or MAE) with standard or CropMix inputs,
followed by kNN and linear-probe evaluation; `--eval-only CHECKPOINT` evaluates a finished run."""

from __future__ import annotations

import argparse
import json

from . import SUBCOMMANDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from cropmix.ssl.config import PretrainConfig

    from .config_options import add_config_options
    from .recipes import add_recipe_options

    p = subparsers.add_parser("pretrain", help=SUBCOMMANDS["pretrain"])
    add_config_options(p, PretrainConfig, no_default=("method",))
    p.add_argument(
        "--eval-only",
        metavar="CHECKPOINT",
        default=None,
        help="only evaluate this checkpoint: its model, method and data come from the checkpoint; "
        "--eval-train, --eval-test, --knn-k, --knn-temperature, --probe-epochs, --device, --threads and "
        "--no-progress apply",
    )
    add_recipe_options(p)
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):
    """The PretrainConfig the arguments describe."""
    from cropmix.ssl.config import PretrainConfig

    from .config_options import config_values

    if args.method is None:
        raise ValueError("method (--method) is required: moco or mae (or a --recipe that sets it)")
    return PretrainConfig.from_dict(config_values(args, PretrainConfig))


def run(args: argparse.Namespace) -> int:
    from cropmix.ssl import evaluate_checkpoint, pretrain

    from .run_guard import run_guarded

    if args.eval_only:
        from cropmix.ssl.config import EVALUATION_FIELDS

        _check_eval_only(args)
        overrides = {name: getattr(args, name) for name in EVALUATION_FIELDS if hasattr(args, name)}
        return run_guarded("pretrain", lambda: report(evaluate_checkpoint(args.eval_only, overrides=overrides)))
    config = config_from_args(args)
    if args.print_config:  # out/config.json less what only a run knows (world_size, train_images)
        print(json.dumps(config.to_dict(), indent=2))
        return 0

    return run_guarded("pretrain", lambda: report(pretrain(config)))


def _check_eval_only(args: argparse.Namespace) -> None:
    """--eval-only takes its model, method and data from the checkpoint: a training option given with it
    (--epochs, --out, --steps, --method, ...) could not apply, so it is refused by name, not ignored."""
    from cropmix.ssl.config import EVALUATION_FIELDS, PretrainConfig
    from cropmix.train.settings import by_key, flatten

    from .config_options import config_values

    defaults, table = flatten(PretrainConfig()), by_key(PretrainConfig)

    def plain(value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    given = [
        table[key].flag
        for key, value in config_values(args, PretrainConfig).items()
        if key not in EVALUATION_FIELDS and value is not None and plain(value) != plain(defaults[key])
    ]
    given += [flag for flag, value in (("--recipe", args.recipe), ("--print-config", args.print_config)) if value]
    if given:
        raise ValueError(
            f"--eval-only takes the model, method and data from its checkpoint; {', '.join(given)} cannot apply "
            f"to it (it takes {', '.join(table[key].flag for key in EVALUATION_FIELDS)}): drop them"
        )


def report(result: dict) -> int:
    """Print a run's results (less its config) as JSON."""
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2, default=str))
    return 0
