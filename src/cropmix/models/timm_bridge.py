"""Any timm model as a cropmix backbone (pooled pre-logit features, no classifier, nothing downloaded)."""

from __future__ import annotations

import re
from typing import Any

from torch import Tensor, nn

# Keys that load files or weights, or name a layer class / callable that timm resolves (possibly by import).
REFUSED_KWARGS = frozenset(
    {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "pretrained_strict", "checkpoint_path", "cache_dir"}
)
REFUSED_SUFFIXES = ("_layer", "_fn", "_cls", "_cfg", "_module", "_factory")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")


def check_timm_kwargs(kwargs: dict[str, Any]) -> None:
    """Raise ValueError unless every timm model kwarg is plain JSON data (numbers, strings, bools, None, lists,
    dicts) that names no file, weights, layer class, callable or import path: such kwargs may come from a
    received config, and timm would download, load or import what they name."""
    for key, value in kwargs.items():
        if key in REFUSED_KWARGS or key.endswith(REFUSED_SUFFIXES) or "path" in key:
            raise ValueError(
                f"timm model kwarg {key!r} is refused: it names weights, a file or a layer class/callable; "
                f"accepted are plain size and rate options (num_classes, drop_rate, img_size, depth, ...)"
            )
        _check_plain(key, value)


def _check_plain(key: str, value: Any) -> None:
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, str):
        if ":" in value or "/" in value or _DOTTED.fullmatch(value):
            raise ValueError(f"timm model kwarg {key!r}={value!r} looks like a URL, path or import path: refused")
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_plain(key, item)
        return
    if isinstance(value, dict):
        for sub, item in value.items():
            if not isinstance(sub, str):
                raise ValueError(f"timm model kwarg {key!r} has a non-string key {sub!r}")
            check_timm_kwargs({sub: item})
        return
    raise ValueError(
        f"timm model kwarg {key!r} is a {type(value).__name__}; accepted: numbers, strings, bools, None, lists, dicts"
    )


class TimmBackbone(nn.Module):
    """A timm model created with num_classes=0, so that its forward returns pooled pre-logit features."""

    def __init__(self, name: str, image_size: int = 224, in_channels: int = 3, **kwargs: Any) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as error:  # pragma: no cover - timm is a dev dependency here
            raise ImportError("timm models need the `timm` package: pip install timm") from error
        if not timm.is_model(name):
            raise ValueError(f"unknown timm model {name!r}; see timm.list_models() for the accepted names")
        self.name = name
        check_timm_kwargs(kwargs)
        kwargs = {"pretrained": False, "num_classes": 0, "in_chans": in_channels, **kwargs}
        try:
            self.model = timm.create_model(name, img_size=image_size, **kwargs)
        except TypeError as error:
            # Convolutional nets take any input size and have no img_size argument.
            if "img_size" not in str(error):
                raise
            self.model = timm.create_model(name, **kwargs)
        dim = getattr(self.model, "head_hidden_size", None) or self.model.num_features
        self.feature_dim = int(dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x)
