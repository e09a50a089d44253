"""CropMix's settings: `CropMixConfig`, their validation (`make_config`) and the paper's presets as plain data."""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torchvision.transforms.v2 import InterpolationMode

from .mixops import MIX_OPS, mix_op

# torchvision's interpolation modes that work on tensors, with torch's name for each.
INTERPOLATION_MODES = {
    InterpolationMode.NEAREST: "nearest",
    InterpolationMode.NEAREST_EXACT: "nearest-exact",
    InterpolationMode.BILINEAR: "bilinear",
    InterpolationMode.BICUBIC: "bicubic",
}
# PIL's resampling constants, which torchvision's transforms also accept for `interpolation`.
PIL_INTERPOLATION = {
    0: InterpolationMode.NEAREST,
    1: InterpolationMode.LANCZOS,
    2: InterpolationMode.BILINEAR,
    3: InterpolationMode.BICUBIC,
    4: InterpolationMode.BOX,
    5: InterpolationMode.HAMMING,
}


def is_int(value: object) -> bool:
    """Whether `value` is an integer (a Python or numpy one), never a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether `value` is a real number (a Python or numpy one), never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def interpolation_mode(value: Any) -> InterpolationMode:
    """`value` as an InterpolationMode, accepted as torchvision accepts it: the mode, its name or value
    ("bilinear", "BILINEAR") or PIL's constant (2); ValueError naming interpolation and the modes
    CropMix runs with (those that work on tensors) otherwise."""
    mode = value
    if is_int(value):
        mode = PIL_INTERPOLATION.get(int(value))
    elif isinstance(value, str) and not isinstance(value, InterpolationMode):
        mode = next((m for m in InterpolationMode if value.lower() in (m.value, m.name.lower())), None)
    if mode not in INTERPOLATION_MODES:
        accepted = [m.name for m in INTERPOLATION_MODES]
        raise ValueError(
            f"interpolation must be one of {accepted} (an InterpolationMode, its name, or PIL's constant: "
            f"0 nearest, 2 bilinear, 3 bicubic), got {value!r}"
        )
    return mode


@dataclass(frozen=True)
class CropMixConfig:
    """Validated settings of CropMix (see `make_config` for the meaning of each)."""

    size: tuple[int, int]
    scale: tuple[float, float]
    ratio: tuple[float, float]
    num_crops: tuple[int, ...]
    mix: tuple[str, ...]
    alpha: float
    channel_permute: bool
    p: float
    interpolation: InterpolationMode = InterpolationMode.BILINEAR
    antialias: bool = True


CONFIG_FIELDS = tuple(CropMixConfig.__dataclass_fields__)


class ReadOnlyConfig:
    """Mixin: `config` and each of its fields are read-only attributes; assigning one says to build a new transform."""

    config: CropMixConfig

    def __setattr__(self, name: str, value: Any) -> None:
        if name in CONFIG_FIELDS or (name in ("config", "generator") and name in self.__dict__):
            raise AttributeError(
                f"{type(self).__name__}.{name} is read-only: the settings are fixed at construction; "
                f"build a new {type(self).__name__}(..., {name}=...) instead"
            )
        super().__setattr__(name, value)


def _config_field(name: str) -> property:
    return property(lambda self: getattr(self.config, name), doc=f"`config.{name}` (read-only).")


for _name in CONFIG_FIELDS:
    setattr(ReadOnlyConfig, _name, _config_field(_name))


def _pair(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high) of numbers, got {value!r}")
    low, high = value
    for v in (low, high):
        if not is_number(v) or not math.isfinite(v):
            raise TypeError(f"{name} must hold finite numbers, got {value!r}")
    return float(low), float(high)


def _size(value: object) -> tuple[int, int]:
    if is_int(value):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(is_int(v) for v in value)
    ):
        raise TypeError(f"size must be an int or a (height, width) pair of ints, got {value!r}")
    if min(value) < 1:
        raise ValueError(f"size must be >= 1 on both sides, got {tuple(value)!r}")
    return int(value[0]), int(value[1])


def _num_crops(num_crops: object) -> tuple[int, ...]:
    crops = (num_crops,) if is_int(num_crops) else num_crops
    if not isinstance(crops, Sequence) or len(crops) == 0 or not all(is_int(n) for n in crops):
        raise TypeError(f"num_crops must be an int or a non-empty sequence of ints, got {num_crops!r}")
    if min(crops) < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops!r}")
    return tuple(int(n) for n in crops)


def _mix(mix: object) -> tuple[str, ...]:
    mixes = (mix,) if isinstance(mix, str) else mix
    if not isinstance(mixes, Sequence) or len(mixes) == 0:
        raise TypeError(f"mix must be one of {tuple(MIX_OPS)} or a non-empty sequence of them, got {mix!r}")
    for m in mixes:
        try:
            mix_op(m)
        except ValueError:
            raise ValueError(f"mix must be one of {tuple(MIX_OPS)} or a sequence of them, got {mix!r}") from None
    return tuple(mixes)


def _number(name: str, value: object, accepted: str) -> float:
    if not is_number(value):
        raise TypeError(f"{name} must be {accepted}, got {value!r}")
    return float(value)


def make_config(
    size: int | Sequence[int],
    scale: Sequence[float] = (0.01, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    num_crops: int | Sequence[int] = (2, 3, 4),
    mix: str | Sequence[str] = "mixup",
    alpha: float = 0.4,
    channel_permute: bool = True,
    p: float = 1.0,
    interpolation: InterpolationMode | str | int = InterpolationMode.BILINEAR,
    antialias: bool = True,
) -> CropMixConfig:
    """Check CropMix's arguments and return them normalised.

    Raises ValueError or TypeError naming the argument, the bad value and what
    is accepted.
    """
    scale_pair = _pair("scale", scale)
    if not (0.0 < scale_pair[0] <= scale_pair[1] <= 1.0):
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)!r}")
    ratio_pair = _pair("ratio", ratio)
    if not (0.0 < ratio_pair[0] <= ratio_pair[1]):
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {tuple(ratio)!r}")
    alpha_value = _number("alpha", alpha, "a number > 0")
    if not (alpha_value > 0 and math.isfinite(alpha_value)):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if not isinstance(channel_permute, bool):
        raise TypeError(f"channel_permute must be a bool, got {channel_permute!r}")
    p_value = _number("p", p, "a number in [0, 1]")
    if not (0.0 <= p_value <= 1.0):
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    interpolation = interpolation_mode(interpolation)
    if not isinstance(antialias, bool):
        raise TypeError(f"antialias must be a bool, got {antialias!r}")
    return CropMixConfig(
        size=_size(size),
        scale=scale_pair,
        ratio=ratio_pair,
        num_crops=_num_crops(num_crops),
        mix=_mix(mix),
        alpha=alpha_value,
        channel_permute=channel_permute,
        p=p_value,
        interpolation=interpolation,
        antialias=antialias,
    )


PRESETS: dict[str, dict[str, Any]] = {
    # CIFAR-10/100 classification: scale [0.5, 1], N = 2, Mixup, alpha 0.4, channel permutation.
    "cifar": dict(size=32, scale=(0.5, 1.0), num_crops=2, mix="mixup", alpha=0.4, channel_permute=True),
    # ImageNet classification: scale [0.01, 1], N drawn from {2, 3, 4} per image.
    "imagenet": dict(size=224, scale=(0.01, 1.0), num_crops=(2, 3, 4), mix="mixup", alpha=0.4, channel_permute=True),
    # MAE pre-training inputs, bicubic, no channel permutation.
    "mae-mixup": dict(
        size=224,
        scale=(0.2, 1.0),
        num_crops=(2, 3, 4),
        mix="mixup",
        alpha=0.4,
        channel_permute=False,
        interpolation=InterpolationMode.BICUBIC,
    ),
    "mae-cutmix": dict(
        size=224,
        scale=(0.2, 1.0),
        num_crops=2,
        mix="cutmix",
        channel_permute=False,
        interpolation=InterpolationMode.BICUBIC,
    ),
}


def preset_kwargs(name: str, size: int | tuple[int, int] | None = None, **overrides: Any) -> dict[str, Any]:
    """The keyword arguments of preset `name` (docs/method.md, "The paper's settings"); `size` and `overrides`
    replace its values."""
    if name not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {name!r}")
    kwargs = dict(PRESETS[name])
    if size is not None:
        kwargs["size"] = size
    kwargs.update(overrides)
    return kwargs


def preset_for(target: Callable[..., Any], name: str, size: Any = None, **overrides: Any) -> Any:
    """`target(**preset_kwargs(name, size, **overrides))`; a keyword `target` does not take is a TypeError
    naming it and the accepted ones (Python's own names neither the preset nor the alternatives)."""
    accepted = [p for p in inspect.signature(target).parameters if p != "self"]
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise TypeError(
            f"preset {name!r}: {getattr(target, '__name__', target)} takes no keyword {', '.join(unknown)}; "
            f"accepted: {', '.join(accepted)}"
        )
    return target(**preset_kwargs(name, size, **overrides))
