"""CropMix in the tools people already run, each behind an optional extra (the core install stays light).

timm.py         `create_transform`: timm's training transform with CropMix in place of its random-resized crop
tensorboard.py  `TensorBoardLog`: per-epoch (or per-row) metrics, the learning rate per step, a grid of inputs
hf.py           Hugging Face `datasets` as a training source (`--dataset hf`)

Nothing here is imported by `import cropmix`; each module imports its third-party package on use and
says which extra to install when it is missing (`require`; `optional_picture` for the plots).
Layer 1: imports only `cropmix.transforms`.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("cropmix")


class MissingExtra(ImportError, ValueError):
    """An optional package is not installed. Also a ValueError, so that the CLI reports it as a bad option."""


def require(module: str, extra: str, what: str) -> None:
    """Raise MissingExtra (naming `pip install cropmix[extra]`) if `module` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise MissingExtra(
            f"{what} needs the {module!r} package, which is not installed: pip install cropmix[{extra}]"
        ) from error


def optional_picture(save: Callable[..., Any], path: str | os.PathLike, *args: Any, **kwargs: Any) -> Any:
    """`save(*args, path, **kwargs)`, a PNG writer that needs matplotlib (extra: cropmix[plots]). Without
    matplotlib the picture is left out with a one-line warning naming the extra, and None is returned:
    a run's results never depend on its pictures. An earlier picture at `path` is removed then: beside
    the new results it would look like theirs."""
    try:
        return save(*args, path, **kwargs)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] != "matplotlib":
            raise
        stale = Path(path)
        removed = stale.is_symlink() or stale.is_file()
        if removed:
            stale.unlink()
        said = " (the earlier one there is removed)" if removed else ""
        log.warning("%s not drawn%s: pictures need matplotlib (pip install cropmix[plots])", path, said)
        return None
