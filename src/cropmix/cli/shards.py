"""`cropmix shards SRC OUT`: an ImageFolder (train/ and val/ or test/) as WebDataset tar shards with an index."""

from __future__ import annotations

import argparse

from . import SUBCOMMANDS
from .arg_types import positive_int, seed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("shards", help=SUBCOMMANDS["shards"])
    p.add_argument("src", help="ImageFolder root with train/ and val/ (or test/) class folders")
    p.add_argument("out", help="local folder for the shards and index.json (empty or new, unless --overwrite)")
    p.add_argument("--shard-size", type=positive_int, default=1000, help="images per shard (default: 1000)")
    p.add_argument("--shuffle-seed", type=seed, default=0, help="seed of the image order across shards (default: 0)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty OUT, replacing its old index and shards once the new ones are written",
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out files whose header is not a usable image (by default they are written, with a warning)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cropmix.data.shards import read_index, write_shards

    path = write_shards(
        args.src,
        args.out,
        shard_size=args.shard_size,
        shuffle_seed=args.shuffle_seed,
        progress=args.progress,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
    )
    index = read_index(path)
    for name, split in sorted(index.splits.items()):
        print(f"{name}: {split.num_samples} images in {len(split.urls)} shards")
    bad = sum(len(files) for files in index.bad_files.values())
    if bad:
        done = "left out" if args.skip_bad else "written anyway; training on them needs --skip-bad"
        print(f"{bad} bad image files ({done}): see the warnings above and bad_files in {path.name}")
    print(f"wrote {path}")
    return 0
