"""`build_model`: every cropmix model by name, as a `Classifier` taking images in [0, 1]."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from .classifier import Classifier
from .fastnet import LOGIT_SCALE, FastNet
from .normalize import CIFAR10_MEAN, CIFAR10_STD
from .resnet import preact_resnet18, resnet18, wide_resnet
from .size import check_parameter_count
from .timm_bridge import TimmBackbone
from .vit import vit_tiny

TIMM_PREFIX = "timm:"
MAX_REMEMBERED_CHECKS = 256
_PASSED_CHECKS: set[tuple[Any, ...]] = set()

# name -> (backbone factory(image_size, in_channels, **kwargs), logit scale)
_BACKBONES: dict[str, tuple[Callable[..., nn.Module], float]] = {
    "resnet18": (lambda image_size, in_channels, **kw: resnet18(in_channels, **kw), 1.0),
    "preact_resnet18": (lambda image_size, in_channels, **kw: preact_resnet18(in_channels, **kw), 1.0),
    "wrn28_10": (lambda image_size, in_channels, **kw: wide_resnet(28, 10, in_channels, **kw), 1.0),
    "fastnet": (lambda image_size, in_channels, **kw: FastNet(in_channels=in_channels, **kw), LOGIT_SCALE),
    "vit_tiny": (lambda image_size, in_channels, **kw: vit_tiny(image_size, in_channels, **kw), 1.0),
}

MODEL_NAMES: tuple[str, ...] = (*_BACKBONES, TIMM_PREFIX + "<name>")


def checked_build(
    build: Callable[[], nn.Module], what: str, extra: Callable[[nn.Module], int] = lambda m: 0
) -> nn.Module:
    """`build()` after building it once on the meta device (no memory) to count its parameters and buffers (plus
    `extra(probe)`, e.g. a head added later): a config asking for more than MAX_PARAMETERS is refused
    before anything is allocated. `what` names the model."""
    with torch.device("meta"):
        probe = build()
    count = sum(t.numel() for t in (*probe.parameters(), *probe.buffers())) + extra(probe)
    del probe
    check_parameter_count(count, what)
    return build()


def _backbone_factory(name: str) -> tuple[Callable[..., nn.Module], float]:
    """(the backbone factory(image_size, in_channels, **kwargs) of model `name`, its logit scale)."""
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {MODEL_NAMES}, got {name!r}")
    if name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX):
        timm_name = name[len(TIMM_PREFIX) :]
        return (lambda image_size, in_channels, **kw: TimmBackbone(timm_name, image_size, in_channels, **kw)), 1.0
    if name in _BACKBONES:
        return _BACKBONES[name]
    raise ValueError(f"unknown model name {name!r}; accepted: {', '.join(MODEL_NAMES)}")


def check_model(name: str, image_size: int = 32, in_channels: int = 3, **kwargs: Any) -> None:
    """Build model `name`'s backbone on the meta device (no memory): a keyword it does not take, or a size
    it cannot have, raises here as building it would, before any data is read. A request that passed is
    remembered (configs are checked whenever one is made or changed, and a ResNet-18 takes ~80 ms)."""
    factory, _ = _backbone_factory(name)
    try:
        key = (name, image_size, in_channels, json.dumps(kwargs, sort_keys=True))
    except (TypeError, ValueError):  # keywords that are not plain data (the Python API): checked every time
        key = None
    if key is not None and key in _PASSED_CHECKS:
        return
    with torch.device("meta"):
        factory(image_size, in_channels, **kwargs)
    if key is not None:
        if len(_PASSED_CHECKS) >= MAX_REMEMBERED_CHECKS:
            _PASSED_CHECKS.clear()
        _PASSED_CHECKS.add(key)


def build_model(
    name: str,
    num_classes: int,
    image_size: int = 32,
    in_channels: int = 3,
    mean: Sequence[float] = CIFAR10_MEAN,
    std: Sequence[float] = CIFAR10_STD,
    **kwargs: Any,
) -> Classifier:
    """Build model `name` (one of MODEL_NAMES, or "timm:<any timm name>") for images in [0, 1].

    The model normalises with mean/std inside and exposes `features(x)`, `classifier` and
    `feature_dim`. Extra keyword arguments go to the backbone (e.g. `widths` for fastnet,
    `depth` for vit_tiny, `drop_rate` for timm models).
    """
    factory, scale = _backbone_factory(name)

    def head(backbone: nn.Module) -> int:
        return (int(backbone.feature_dim) + 1) * int(num_classes)

    backbone = checked_build(lambda: factory(image_size, in_channels, **kwargs), f"model {name!r} {kwargs}", head)
    return Classifier(backbone, num_classes, mean, std, in_channels=in_channels, logit_scale=scale)
