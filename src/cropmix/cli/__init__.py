"""The `cropmix` command. Each subcommand lives in its own module with `add_parser(subparsers)`, imported
only when its command runs; the parser only reads arguments and calls functions the Python API also offers."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# Subcommand modules, in the order `cropmix --help` lists them, with their one-line help. Only the module of
# the command given is imported: `cropmix --help` and each command load what they use, nothing more.
SUBCOMMANDS = {
    "show": "CropMix outputs with their crop boxes, beside RRC outputs",
    "train": "train a classifier (one CPU, a GPU, or many processes under torchrun)",
    "eval": "evaluate a trained run: top-1/5, ECE, RMS, FGSM, corruptions",
    "compare": "compare runs: a table and plots side by side",
    "pretrain": "pre-train with MoCo v2 or MAE, standard or CropMix inputs",
    "shards": "write an ImageFolder as WebDataset tar shards (original bytes)",
    "recipes": "list the paper's experiments as recipes (cropmix train/pretrain --recipe NAME)",
}


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` names: its first word that is not an option (the top level has only -h)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command's parser: the full parser of the subcommand `argv` names, a placeholder for each other one."""
    parser = argparse.ArgumentParser(prog="cropmix", description="CropMix: multi-scale crops mixed into one image.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"cropmix {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    chosen = chosen_command(sys.argv[1:] if argv is None else argv)
    for name, summary in SUBCOMMANDS.items():
        if name == chosen:
            importlib.import_module(f"cropmix.cli.{name}").add_parser(subparsers)
        else:
            subparsers.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    # The library logs (per-epoch metrics, skipped files, what --init loaded); the command shows them,
    # for this call only (main may run several times in one process, e.g. in tests).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cropmix: %(message)s"))
    package_log = logging.getLogger("cropmix")
    package_log.addHandler(handler)
    level = package_log.level
    package_log.setLevel(logging.INFO)
    if args.command in ("train", "pretrain"):
        # Batched CPU augmentation reuses its freed buffers instead of faulting fresh pages in every batch.
        from ..transforms import retain_freed_memory  # here: --help and recipes import no torch

        retain_freed_memory()
    try:
        if getattr(args, "recipe", None):  # train/pretrain --recipe: read again with the recipe as defaults
            from .recipes import apply_recipe

            args = apply_recipe(parser, args, argv)
        code = int(args.run(args) or 0)
        sys.stdout.flush()  # here, so that a reader gone away is seen below and not at exit
        return code
    except KeyboardInterrupt:  # Ctrl-C in eval, compare, shards or show (train and pretrain say what they keep)
        from .run_guard import INTERRUPTED

        print(f"cropmix {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"cropmix {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`cropmix ... | head`): no traceback, nothing more to say
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush must not fail too
        return 1
    except OSError as error:
        from ..data.safe_files import FileError  # here, so `cropmix --help` does not import the data package

        if not isinstance(error, FileError):
            raise
        print(f"cropmix {args.command}: error: {error.strerror}", file=sys.stderr)  # names the file and the cause
        return 2
    finally:
        package_log.removeHandler(handler)
        package_log.setLevel(level)


if __name__ == "__main__":
    sys.exit(main())
