"""`cropmix compare RUN...`: one table (mean ± std over seeds) and plots, side by side."""

from __future__ import annotations

import argparse

from . import SUBCOMMANDS


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("compare", help=SUBCOMMANDS["compare"])
    p.add_argument("run_dirs", nargs="+", help="run folders (runs differing only in --seed are grouped)")
    p.add_argument("--out", default="runs/compare", help="folder for comparison.md/.json, curves.png, bars.png")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cropmix.train import compare_runs

    out = compare_runs(args.run_dirs, args.out)
    print((out / "comparison.md").read_text(), end="")
    print(f"wrote {out}/comparison.md, comparison.json, curves.png, bars.png")
    return 0
