"""`cropmix compare RUN...`: one table (mean ± std over seeds) and plots, side by side."""

from __future__ import annotations

import argparse

from . import SUBCOMMANDS

DESCRIPTION = (
    "Compare run folders: a table of mean ± sd over seeds (runs differing only in --seed are grouped; a folder "
    "given twice counts once), curves.png and bars.png (error bars only where an arm has seeds). Folders of "
    "`cropmix train` are compared on their test metrics, folders of `cropmix pretrain` on knn_acc, probe_acc "
    "and final_loss; the two kinds cannot be mixed. Runs on different datasets are compared with a warning."
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help=SUBCOMMANDS["compare"], description=DESCRIPTION)
    p.add_argument("run_dirs", nargs="+", help="run folders (runs differing only in --seed are grouped)")
    p.add_argument(
        "--out",
        default="runs/compare",
        help="folder for comparison.md/.json, curves.png, bars.png (default: runs/compare)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cropmix.train import compare_runs

    out = compare_runs(args.run_dirs, args.out)
    print((out / "comparison.md").read_text(), end="")
    print(f"wrote {out}/comparison.md, comparison.json, curves.png, bars.png")
    return 0
