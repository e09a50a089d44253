"""argparse types of the subcommands: each names what it accepts, and argparse names the option."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def seed(text: str) -> int:
    """argparse type: a seed, an int in the range training takes (cropmix.train.config_parts.SEED_LIMIT)."""
    from cropmix.train.config_parts import SEED_LIMIT, SEEDS

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {SEEDS}, got {text!r}") from None
    if abs(value) >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"must be {SEEDS}, got {value}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (pixel units, e.g. 0.0314 for 8/255), got {value}")
    return value


def json_object(text: str, example: str | None = None) -> dict[str, Any]:
    """argparse type: a JSON object (keyword arguments); `example`, the option's own, is shown when it is not one."""
    such_as = f" such as '{example}'" if example else " {...} of keyword arguments"
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"must be a JSON object{such_as}, got {text!r} ({error.msg} at character "
            f"{error.pos}; in a shell, quote it with single quotes)"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object{such_as}, got {text!r}")
    return value


def json_object_like(example: str | None) -> Callable[[str], dict[str, Any]]:
    """The argparse type `json_object` with the option's own example in its errors."""

    def parse(text: str) -> dict[str, Any]:
        return json_object(text, example)

    parse.__name__ = "json_object"  # argparse names the type by it
    return parse
