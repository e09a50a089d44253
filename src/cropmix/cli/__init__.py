"""The `cropmix` command. Each subcommand lives in its own module with `add_parser(subparsers)`;
the parser only reads arguments and calls functions that the Python API also offers."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from ..transforms import retain_freed_memory

# Subcommand modules, in the order `cropmix --help` lists them.
SUBCOMMANDS = ("show", "train", "eval", "compare", "pretrain", "shards", "recipes")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cropmix", description="CropMix: multi-scale crops mixed into one image.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        importlib.import_module(f"cropmix.cli.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The library logs (per-epoch metrics, skipped files, what --init loaded); the command shows them,
    # for this call only (main may run several times in one process, e.g. in tests).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cropmix: %(message)s"))
    package_log = logging.getLogger("cropmix")
    package_log.addHandler(handler)
    level = package_log.level
    package_log.setLevel(logging.INFO)
    # Batched CPU augmentation reuses its freed buffers instead of faulting fresh pages in every batch.
    retain_freed_memory()
    try:
        if getattr(args, "recipe", None):  # train/pretrain --recipe: read again with the recipe as defaults
            from .recipes import apply_recipe

            args = apply_recipe(parser, args, argv)
        return int(args.run(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as error:
        print(f"cropmix {args.command}: error: {error}", file=sys.stderr)
        return 2
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
