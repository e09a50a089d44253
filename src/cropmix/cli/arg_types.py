"""argparse types of the subcommands: each names what it accepts, and argparse names the option."""

from __future__ import annotations

import argparse
import json
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


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (pixel units, e.g. 0.0314 for 8/255), got {value}")
    return value


def json_object(text: str) -> dict[str, Any]:
    """argparse type: a JSON object (keyword arguments), e.g. '{"widths": [8, 16]}'."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(
            f"must be a JSON object such as '{{\"widths\": [8, 16]}}', got {text!r} ({error.msg} at character "
            f"{error.pos}; in a shell, quote it with single quotes)"
        ) from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}} of keyword arguments, got {text!r}")
    return value
