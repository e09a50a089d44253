"""`cropmix show`: a PNG of CropMix outputs, each beside its crop boxes and a RandomResizedCrop output."""

from __future__ import annotations

import argparse

from . import SUBCOMMANDS
from .arg_types import positive_int, seed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("show", help=SUBCOMMANDS["show"])
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--preset", default="imagenet", help="CropMix preset (default: imagenet)")
    parser.add_argument(
        "-n", type=positive_int, default=8, help="outputs (rows) per image for each method (default: 8)"
    )
    parser.add_argument("--size", type=positive_int, default=None, help="output size (default: the preset's)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the draws (default: 0)")
    parser.add_argument("--out", default="cropmix_show.png", help="PNG to write (default: cropmix_show.png)")
    parser.set_defaults(run=run)


# save_show_grid's arguments and the options that give them, for its errors.
OPTIONS = {"preset": "--preset", "n": "-n", "size": "--size", "out": "--out"}


def run(args: argparse.Namespace) -> int:
    from cropmix.data.safe_files import FileError
    from cropmix.viz.grid import save_show_grid

    try:
        path = save_show_grid(args.images, args.out, preset_name=args.preset, n=args.n, size=args.size, seed=args.seed)
    except (ValueError, FileError) as error:
        if type(error) not in (ValueError, FileError):  # a subclass may carry more than its message
            raise
        raise type(error)(*_said_as_options(error)) from error
    print(f"wrote {path}")
    return 0


def _said_as_options(error: Exception) -> tuple:
    """The error's arguments with its message starting with the option instead of the argument's name."""
    text = str(error.args[-1]) if error.args else ""
    name = text.split(" ", 1)[0]
    if name not in OPTIONS:
        return error.args
    said = OPTIONS[name] + text[len(name) :].replace(f" another {name}", f" another {OPTIONS[name]}")
    return (*error.args[:-1], said)
