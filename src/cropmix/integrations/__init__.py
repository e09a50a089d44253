"""CropMix in the tools people already run, each behind an optional extra (the core install stays light).

timm.py         `create_transform`: timm's training transform with CropMix in place of its random-resized crop
tensorboard.py  `TensorBoardLog`: per-epoch (or per-row) metrics, the learning rate per step, a grid of inputs
hf.py           Hugging Face `datasets` as a training source (`--dataset hf`)

Nothing here is imported by `import cropmix`; each module imports its third-party package on use and
says which extra to install when it is missing. Layer 1: imports only `cropmix.transforms`.
"""

from __future__ import annotations

import importlib


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
