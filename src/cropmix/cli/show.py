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


def run(args: argparse.Namespace) -> int:
    from cropmix.viz.grid import save_show_grid

    path = save_show_grid(args.images, args.out, preset_name=args.preset, n=args.n, size=args.size, seed=args.seed)
    print(f"wrote {path}")
    return 0
