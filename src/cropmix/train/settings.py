"""Declared settings: each option of a run stated once, in the field that holds it.

A configuration (TrainConfig, PretrainConfig) is a dataclass of parts (data, aug, model, ...), each a
dataclass of fields declared with `setting()`. A field's metadata says what the command line, the
recipes and config.json need: its flat key (the name in config.json, recipes and argparse, unique in
the configuration), its option (`--num-crops`), its help, what None stands for, its choices, and
the setting it only applies with. The CLI is built from it, the checks read it, and the flat file
format of config.json stays what it always was, so older run folders load unchanged.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OnlyWith:
    """A setting that only applies when the setting `key` passes `applies` (said as `which`), or when
    one of the settings `or_given` is given (not None)."""

    key: str
    applies: Callable[[Any], bool]
    which: str
    or_given: tuple[str, ...] = ()


def setting(
    default: Any = None,
    help: str = "",
    *,
    key: str | None = None,
    flag: str | None = None,
    meaning: Any = None,
    choices: tuple | Callable[[], tuple] | None = None,
    only_with: OnlyWith | None = None,
    cli: dict[str, Any] | None = None,
) -> Any:
    """A dataclass field with its metadata. meaning: what None stands for (a value, or a function of the
    part for defaults that depend on another field, e.g. lr by optimizer, with `meaning_doc` in help).
    cli: extra argparse arguments where the type alone does not say them (action, metavar; type: the name
    of a parser in cropmix.cli.arg_types; meaning_doc: the default as help says it)."""
    metadata = {
        "help": help, "key": key, "flag": flag, "meaning": meaning, "choices": choices, "only_with": only_with,
        "cli": cli or {},
    }  # fmt: skip
    if isinstance(default, (dict, list)):
        value = default
        return dataclasses.field(default_factory=lambda: type(value)(value), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    """One declared field of a configuration: its part, its field, and its metadata resolved."""

    part: str | None  # None: a field of the configuration itself
    field: dataclasses.Field
    hint: Any

    @property
    def key(self) -> str:
        return self.field.metadata.get("key") or self.field.name

    @property
    def flag(self) -> str:
        return self.field.metadata.get("flag") or "--" + self.key.replace("_", "-")

    @property
    def label(self) -> str:
        """The key with its option, as errors name a setting: "cropmix_num_crops (--num-crops)"."""
        return f"{self.key} ({self.flag})"

    def meta(self, name: str) -> Any:
        return self.field.metadata.get(name)

    def choices(self) -> tuple | None:
        choices = self.meta("choices")
        return choices() if callable(choices) else choices


class Part:
    """Base of a configuration part: `setting(name)` is the value in effect."""

    def setting(self, name: str) -> Any:
        """The value of field `name` in effect: its own, or what None stands for."""
        value = getattr(self, name)
        if value is not None:
            return value
        meaning = next(f for f in dataclasses.fields(self) if f.name == name).metadata.get("meaning")
        return meaning(self) if callable(meaning) else meaning


def is_part(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, Part) and dataclasses.is_dataclass(hint)


def declared(cls: type) -> Iterator[Declared]:
    """Every declared field of configuration class `cls`, parts' fields in their place."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if is_part(hints[f.name]):
            part_hints = typing.get_type_hints(hints[f.name])
            for inner in dataclasses.fields(hints[f.name]):
                yield Declared(f.name, inner, part_hints[inner.name])
        else:
            yield Declared(None, f, hints[f.name])


def by_key(cls: type) -> dict[str, Declared]:
    """The declared fields of `cls` by flat key (ValueError if two share one: keys name options)."""
    table: dict[str, Declared] = {}
    for entry in declared(cls):
        if entry.key in table:
            raise ValueError(f"{cls.__name__}: two fields share the key {entry.key!r}")
        table[entry.key] = entry
    return table


def value_of(config: Any, entry: Declared) -> Any:
    holder = config if entry.part is None else getattr(config, entry.part)
    return getattr(holder, entry.field.name)


def flatten(config: Any) -> dict[str, Any]:
    """The configuration as one flat dict of keys (config.json, recipes and argparse use these)."""
    return {entry.key: _plain(value_of(config, entry)) for entry in declared(type(config))}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    return value


def check_values(cls: type, values: Any) -> None:
    """TypeError unless `values` (of `cls.from_dict`) is a dict of flat keys."""
    if not isinstance(values, dict):
        raise TypeError(
            f"{cls.__name__}.from_dict values must be a dict of flat keys (as config.json holds them), got a "
            f"{type(values).__name__}: {values!r:.80}"
        )


def unflatten(cls: type, values: dict[str, Any]) -> Any:
    """An instance of configuration class `cls` from flat keys; absent keys keep their defaults.
    ValueError naming unknown keys and listing the accepted ones."""
    check_values(cls, values)
    table = by_key(cls)
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; accepted: {sorted(table)}")
    default = cls()
    own: dict[str, Any] = {}
    parts: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        entry = table[key]
        if entry.part is None:
            own[entry.field.name] = value
        else:
            parts.setdefault(entry.part, {})[entry.field.name] = value
    for name, fields in parts.items():
        own[name] = dataclasses.replace(getattr(default, name), **fields)
    return dataclasses.replace(default, **own)


def matches(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type `hint` (an int passes for a float, a bool never for a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if hint in (int, float):
        numbers = (int,) if hint is int else (int, float)
        return isinstance(value, numbers) and not isinstance(value, bool)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(matches(v, a) for v, a in zip(value, args, strict=True))
    return isinstance(value, origin or hint)


def normalise_part(part: Any) -> None:
    """Lists (from JSON or argparse) become tuples where the field holds a tuple; then every field's type
    is checked: TypeError naming the first whose value is not of its annotated type (`lr="0.1"`, say)."""
    hints = typing.get_type_hints(type(part))
    for f in dataclasses.fields(part):
        value = getattr(part, f.name)
        if isinstance(value, list) and "tuple" in str(hints[f.name]):
            object.__setattr__(part, f.name, value := tuple(value))
        if not matches(value, hints[f.name]):
            hint = hints[f.name]
            accepted = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            label = Declared(None, f, hint).label
            raise TypeError(f"{label} must be {accepted}, got {value!r} ({type(value).__name__})")


def check_only_with(config: Any) -> None:
    """ValueError naming both settings when one declared `only_with` another is given (not None, and not
    its declared default) without it."""
    table = by_key(type(config))
    for entry in table.values():
        rule: OnlyWith | None = entry.meta("only_with")
        value = value_of(config, entry)
        if rule is None or value is None or value == _default(entry.field):
            continue
        other = value_of(config, table[rule.key])
        if rule.applies(other) or any(value_of(config, table[key]) is not None for key in rule.or_given):
            continue
        alternatives = " or ".join(table[key].label for key in rule.or_given)
        alternative = f" or with {alternatives}" if alternatives else ""
        raise ValueError(
            f"{entry.label} only applies with {table[rule.key].label} {rule.which}{alternative}, got "
            f"{rule.key}={other!r}: drop the one or change the other"
        )


def _default(f: dataclasses.Field) -> Any:
    """The declared default of field `f` (made afresh where it has a factory)."""
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def check_choices(config: Any) -> None:
    """ValueError naming the first setting of `config` whose value is not one of its declared choices (None
    passes where the field allows it)."""
    for entry in declared(type(config)):
        choices, value = entry.choices(), value_of(config, entry)
        if choices is None or value in choices:
            continue
        optional = matches(None, entry.hint)
        if not (optional and value is None):
            accepted = f"None or one of {tuple(choices)}" if optional else f"one of {tuple(choices)}"
            raise ValueError(f"{entry.label} must be {accepted}, got {value!r}")
