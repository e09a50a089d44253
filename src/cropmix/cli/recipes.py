"""`cropmix recipes`: list the paper's experiments kept as recipes, or show one; and the `--recipe` /
`--print-config` options of `cropmix train` and `cropmix pretrain`."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json

from . import SUBCOMMANDS

# The configuration class each recipe command fills, as "module:Class" (imported only when used).
CONFIGS = {"train": "cropmix.train:TrainConfig", "pretrain": "cropmix.ssl.config:PretrainConfig"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recipes",
        help=SUBCOMMANDS["recipes"],
        description="Without NAME: one line per recipe (name, command, what it is, its source). With NAME: "
        "the recipe's settings, note and source as JSON. Use one with `cropmix train --recipe NAME --data ... "
        "--out ...` (or pretrain); explicit options override the recipe, --print-config shows the result.",
    )
    p.add_argument("name", nargs="?", help="show this recipe in full")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from cropmix.recipes import list_recipes, load_recipe

    if args.name is not None:
        print(json.dumps(dataclasses.asdict(load_recipe(args.name)), indent=2))
        return 0
    recipes = list_recipes()
    width = max(len(r.name) for r in recipes)
    for r in recipes:
        print(f"{r.name:<{width}}  {r.command:<8}  {r.description}  [source: {r.source}]")
    return 0


def add_recipe_options(p: argparse.ArgumentParser) -> None:
    """--recipe and --print-config for a command whose parser is `p` (train or pretrain)."""
    p.add_argument(
        "--recipe",
        metavar="NAME",
        help="start from a named recipe (`cropmix recipes` lists them); explicit options override it",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved configuration as JSON and exit (no run)"
    )
    p.set_defaults(command_parser=p)


def apply_recipe(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: list[str] | None):
    """`args` re-read with recipe `args.recipe` as the command's defaults, so explicit options win over it.

    ValueError for an unknown recipe, one for another command, or a setting that is no field of the
    command's configuration."""
    from cropmix.recipes import load_recipe

    recipe = load_recipe(args.recipe, args.command)
    from cropmix.train.settings import by_key

    module, name = CONFIGS[args.command].split(":")
    fields = set(by_key(getattr(importlib.import_module(module), name)))
    unknown = sorted(set(recipe.settings) - fields)
    if unknown:
        raise ValueError(f"recipe {recipe.name!r} sets {unknown}, which are not {name} fields: {sorted(fields)}")
    sub = args.command_parser
    many = {a.dest for a in sub._actions if a.nargs not in (None, "?", 0)}
    defaults = {}
    for key, value in recipe.settings.items():
        defaults[key] = [value] if key in many and not isinstance(value, list) else value
    sub.set_defaults(**defaults)
    return parser.parse_args(argv)
