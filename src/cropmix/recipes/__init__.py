"""The paper's experiments as named recipes: one TOML file per experiment in this folder.

A recipe holds the settings of one run (the field names of `cropmix.train.TrainConfig` or
`cropmix.ssl.PretrainConfig`) without data paths, and says which command it is for, what
it is and where its settings come from. `cropmix train --recipe NAME` / `cropmix pretrain --recipe
NAME` take them as defaults that explicit options override; in Python:
`TrainConfig.from_dict({**load_recipe(NAME, "train").settings, "data": ..., "out": ...})`.

TOML because recipes are read by people (comments, no quoting of keys) and the standard library
reads it from Python 3.11 (`tomli`, the same parser, before that).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

COMMANDS = ("train", "pretrain")
# Run-specific fields: the user passes them (--data, --out, --init, --resume), a recipe never does.
RUN_FIELDS = ("data", "out", "init", "resume")
_KEYS = {"command", "description", "source", "note", "settings"}


@dataclass(frozen=True)
class Recipe:
    """One recipe: `settings` are config field values; `note` says what was chosen where the source is silent."""

    name: str
    command: str
    description: str
    source: str
    settings: dict[str, Any] = field(default_factory=dict)
    note: str = ""


def recipe_names() -> list[str]:
    """The names of the recipes shipped with the package, sorted."""
    folder = resources.files(__name__)
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_recipe(name: str, command: str | None = None) -> Recipe:
    """Recipe `name`; with `command`, an error unless the recipe is for that command.

    ValueError for an unknown name (listing the known ones), a recipe for another command (naming
    both), or a malformed file (naming the file and the bad key).
    """
    if not isinstance(name, str):
        raise TypeError(f"recipe name must be a str, got {name!r}")
    known = recipe_names()
    if name not in known:
        raise ValueError(f"unknown recipe {name!r}; known recipes: {', '.join(known)}")
    recipe = _parse(name, resources.files(__name__).joinpath(f"{name}.toml").read_text(encoding="utf-8"))
    if command is not None and recipe.command != command:
        raise ValueError(
            f"recipe {name!r} is for `cropmix {recipe.command}`, not `cropmix {command}`: "
            f"use `cropmix {recipe.command} --recipe {name}`"
        )
    return recipe


def list_recipes() -> list[Recipe]:
    """Every shipped recipe, sorted by name."""
    return [load_recipe(name) for name in recipe_names()]


def _parse(name: str, text: str) -> Recipe:
    where = f"recipe file {name}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"{where} is not valid TOML: {error}") from error
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(f"{where} has unknown keys {unknown}; accepted: {sorted(_KEYS)}")
    for key in ("command", "description", "source"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            raise ValueError(f"{where} needs a non-empty string {key!r}, got {data.get(key)!r}")
    if data["command"] not in COMMANDS:
        raise ValueError(f"{where}: command must be one of {COMMANDS}, got {data['command']!r}")
    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise ValueError(f"{where}: [settings] must be a table, got {settings!r}")
    own = sorted(set(settings) & set(RUN_FIELDS))
    if own:
        raise ValueError(f"{where} sets {own}: these belong to one run (pass them as options), not to a recipe")
    return Recipe(name, data["command"], data["description"], data["source"], settings, data.get("note", ""))


__all__ = ["COMMANDS", "RUN_FIELDS", "Recipe", "list_recipes", "load_recipe", "recipe_names"]
