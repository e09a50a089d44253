"""Command-line options built from a configuration's declared settings (cropmix.train.settings), so that
each option's name, help and default are stated once, in the field that holds it."""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Collection
from typing import Any

from . import arg_types
from .arg_types import json_object_like


class OnOffSwitch(argparse.BooleanOptionalAction):
    """--x / --no-x whose help is only what it is given: Python 3.10 appends "(default: True)" to
    it, which `_help` says as "on"."""

    def __init__(self, *args: Any, help: str | None = None, **kwargs: Any) -> None:  # noqa: A002 (argparse's name)
        super().__init__(*args, **kwargs)
        self.help = help


def add_config_options(
    parser: argparse.ArgumentParser,
    config_class: type,
    *,
    required: Collection[str] = (),
    no_default: Collection[str] = (),
) -> None:
    """One option per declared setting of `config_class`, in declaration order, its default the value in
    `config_class()`. required: keys the command line must give; no_default: keys left None unless given
    (the command checks them after a recipe had its say)."""
    from cropmix.train.settings import declared, flatten

    defaults = flatten(config_class())
    for entry in declared(config_class):
        kwargs = _argument(entry, None if entry.key in (*required, *no_default) else defaults[entry.key])
        if entry.key in required:
            kwargs["required"] = True
        parser.add_argument(entry.flag, dest=entry.key, **kwargs)


def _argument(entry: Any, default: Any) -> dict[str, Any]:
    """argparse keywords for one setting, from its type and metadata."""
    cli = dict(entry.meta("cli"))
    meaning_doc = cli.pop("meaning_doc", None)
    example = cli.pop("example", None)  # a JSON option's own, for its error
    scalar, many = _shape(entry.hint)
    kwargs: dict[str, Any] = {"default": default, **cli}
    if "action" in kwargs:  # the field names its own (store_false for a --no-x switch)
        pass
    elif scalar is bool:  # a switch for what is off by default, --x / --no-x for the rest
        plain_switch = default is False and entry.meta("meaning") is None
        kwargs["action"] = "store_true" if plain_switch else OnOffSwitch
    elif scalar is dict:
        kwargs["type"] = json_object_like(example)
    else:  # a parser named in the metadata ("positive_int": cropmix.cli.arg_types), else the type itself
        kwargs["type"] = getattr(arg_types, kwargs["type"]) if "type" in kwargs else scalar
        if many:
            kwargs["nargs"] = many
    own_name = entry.flag.lstrip("-").replace("-", "_")
    if own_name != entry.key and "action" not in kwargs and "metavar" not in kwargs:
        kwargs["metavar"] = own_name.upper()  # --num-crops N..., not CROPMIX_NUM_CROPS
    choices = entry.choices()
    if choices is not None:
        kwargs["choices"] = choices
    kwargs["help"] = _help(entry, default, meaning_doc, kwargs)
    return kwargs


def _shape(hint: Any) -> tuple[type, int | str | None]:
    """(the scalar type, nargs) of a field's annotation: `tuple[float, float] | None` is (float, 2)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        tuples = [a for a in args if typing.get_origin(a) is tuple]
        if tuples:
            inner = typing.get_args(tuples[0])
            return inner[0], "+" if inner[-1] is Ellipsis else len(inner)
        return _shape(args[0])
    if typing.get_origin(hint) is tuple:
        inner = typing.get_args(hint)
        return inner[0], "+" if inner[-1] is Ellipsis else len(inner)
    origin = typing.get_origin(hint) or hint
    return (origin if isinstance(origin, type) else str), None


def _help(entry: Any, default: Any, meaning_doc: str | None, kwargs: dict[str, Any]) -> str:
    text = entry.meta("help") or ""
    meaning = entry.meta("meaning")
    if meaning_doc:
        text += f" (default: {meaning_doc})"
    elif kwargs.get("action") is OnOffSwitch and isinstance(default, bool):
        text += f" (default: {'on' if default else 'off'})"
    elif not (default is None or isinstance(default, (bool, dict))):
        text += " (default: %(default)s)"
    elif isinstance(meaning, bool):
        text += f" (default: {'on' if meaning else 'off'})"
    elif default is None and meaning is not None and not callable(meaning):
        text += f" (default: {meaning})"
    return text.replace("%", "%%").replace("%%(default)s", "%(default)s").strip()


def config_values(args: argparse.Namespace, config_class: type) -> dict[str, Any]:
    """The flat keys of `config_class` that `args` holds. A setting that takes one or several values
    (`int | tuple[int, ...]`, as --num-crops) is a plain value when one was given."""
    from cropmix.train.settings import by_key

    values = {}
    for key, entry in by_key(config_class).items():
        if not hasattr(args, key):
            continue
        value = getattr(args, key)
        one_or_many = int in typing.get_args(entry.hint) and _shape(entry.hint)[1] == "+"
        if one_or_many and isinstance(value, list) and len(value) == 1:
            value = value[0]
        values[key] = value
    return values
