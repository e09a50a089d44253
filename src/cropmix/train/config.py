"""TrainConfig: everything a run needs, in parts, checked before any work starts, saved as config.json.

The parts (data, aug, model, optim, run) and each option's default, help, option name and the setting
it only applies with are declared once in cropmix.train.config_parts; config.json and recipes hold
the flat keys those declare (`cropmix_num_crops`, `lr`, ...), as they always have.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cropmix.data.safe_files import write_text_atomic

from .config_parts import (
    SEED_LIMIT,
    SEEDS,
    AugSettings,
    ModelSettings,
    OptimSettings,
    TrainData,
    TrainRun,
)
from .distributed import check_device_name
from .run_files import check_out_path, read_json
from .settings import by_key, check_choices, check_only_with, check_values, declared, flatten, unflatten

# Fields earlier versions wrote that no longer exist, with the value they always held: an old config.json
# holding that value still loads.
RETIRED_FIELDS = {"extra": {}}


def option(key: str) -> str:
    """A setting with its command-line option, for error messages: "cropmix_num_crops (--num-crops)"."""
    return by_key(TrainConfig)[key].label


@dataclass
class TrainConfig:
    """A training run. `run.out` is the run folder; every setting is recorded in out/config.json.

    Build one from flat keys with `TrainConfig.from_dict({"dataset": "npz", "data": ..., "aug": "cropmix"})`
    (the keys of config.json, recipes and the command line), or from its parts. aug: "none" | "baseline" |
    "rrc" | "cropmix", optionally "+mixup" / "+cutmix"; preset and the cropmix_* keys set CropMix (None =
    the preset's value). init: a `cropmix pretrain` checkpoint (MoCo or MAE) whose backbone the model
    starts from (not re-applied on resume). timm_aug: keyword arguments of timm's create_transform with aug
    "cropmix" (cropmix.integrations.timm.train_transform). dataset "webdataset": `data` is a shard folder
    from `cropmix shards` (or its index.json, or a URL); max_train_images/max_test_images then keep the
    first images in shard order (a fixed random subset: the shards were written shuffled). aug_device:
    "workers" (DataLoader workers) or "device" (the training device, whole batches: shards decoded there,
    or images held in memory); "auto" picks "device" for shards and "workers" otherwise.
    """

    data: TrainData = field(default_factory=TrainData)
    aug: AugSettings = field(default_factory=AugSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    run: TrainRun = field(default_factory=TrainRun)

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            if not isinstance(getattr(self, f.name), hints[f.name]):
                raise TypeError(
                    f"TrainConfig.{f.name} must be a {hints[f.name].__name__}, got "
                    f"{type(getattr(self, f.name)).__name__}: build a config from flat keys with TrainConfig.from_dict"
                )

    def augments_on_device(self) -> bool:
        """Whether augmentation runs on the training device ("device", or "auto" with WebDataset shards)."""
        from cropmix.data.sources import SOURCES

        streams = self.data.dataset in SOURCES and SOURCES[self.data.dataset].streams
        return self.aug.device == "device" or (self.aug.device == "auto" and streams)

    def to_dict(self) -> dict[str, Any]:
        """The flat keys and values, as config.json holds them."""
        return flatten(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from flat keys (config.json, a recipe, the command line); absent keys take defaults."""
        check_values(cls, values)
        values = {k: v for k, v in values.items() if not (k in RETIRED_FIELDS and v == RETIRED_FIELDS[k])}
        return unflatten(cls, values)

    def replace(self, **values: Any) -> TrainConfig:
        """A copy with the flat keys `values` changed."""
        return TrainConfig.from_dict({**self.to_dict(), **values})

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON (atomically; a link at `path` is replaced, not followed)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """The config in a JSON file (`run_files.read_json`: a bounded regular file), errors naming it."""
        return cls.from_saved(read_json(path), path)

    @classmethod
    def from_saved(cls, values: Any, path: str | os.PathLike) -> TrainConfig:
        """`from_dict` of values a file holds (config.json, a checkpoint's config): errors name the file, which
        may be someone else's or written by another version."""
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{path}: {error}") from error

    def augment_spec(self, size: int) -> Any:
        """This run's training augmentation at image side `size`, stated once (a cropmix.data.AugmentSpec)."""
        from cropmix.data import AugmentSpec, parse_aug

        base, _ = parse_aug(self.aug.name)
        return AugmentSpec(base, size, self.aug.preset, self.aug.cropmix_overrides(), self.aug.rrc_scale)

    def validate(self, cuda_available: bool) -> None:
        """Raise ValueError/TypeError naming the setting (and its option), the bad value and what is accepted."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).__post_init__()  # fields assigned since construction are checked again
        check_finite(self)
        _check_choices(self, cuda_available)
        _check_augmentation(self)
        _check_numbers(self)
        check_only_with(self)
        _check_data_pipeline(self)
        _check_timm_aug(self)
        _check_model(self)
        _check_paths(self)


def model_error(config: TrainConfig, image_size: int | None, error: Exception) -> Exception:
    """`error` from building `config`'s model, said in the options' words (the same type, to re-raise)."""
    at = f" at image size {image_size}" if image_size else ""
    kwargs = config.model.kwargs
    with_kwargs = f" with {option('model_kwargs')} {json.dumps(kwargs)}" if kwargs else ""
    return type(error)(f"{option('model')} {config.model.name!r}{with_kwargs}{at}: {error}")


def _check_model(config: TrainConfig) -> None:
    """Build the model once on the meta device (no memory, no data), so that a keyword it does not take or
    a size it cannot have fails before any data is read. timm models are checked when built."""
    if config.model.name.startswith("timm:"):
        return
    from cropmix.models.registry import check_model

    size = config.data.image_size or 32  # the data's own size is known only once it is read
    try:
        check_model(config.model.name, image_size=size, **config.model.kwargs)
    except (TypeError, ValueError) as error:
        raise model_error(config, config.data.image_size, error) from error


def check_finite(config: Any) -> None:
    """ValueError naming the first setting of the configuration `config` holding a NaN or an infinity (as a
    number, or in a tuple or list of them): `--lr inf` would "train" on NaN losses."""
    table = by_key(type(config))
    for key, value in flatten(config).items():
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{table[key].label} must be a finite number, got {value!r}")


def _need(config: TrainConfig, cond: bool, key: str, accepted: str) -> None:
    if not cond:
        raise ValueError(f"{option(key)} must be {accepted}, got {config.to_dict()[key]!r}")


def _said_with_option(key: str, check: Callable[[Any], Any], value: Any) -> Any:
    """`check(value)`; a ValueError it raises about `key` ("aug must be ...") is said with the option."""
    try:
        return check(value)
    except ValueError as error:
        text = str(error)
        if not text.startswith(f"{key} "):
            raise
        raise ValueError(option(key) + text[len(key) :]) from None


def _need_if_set(config: TrainConfig, key: str, test: Callable[[Any], bool], accepted: str) -> None:
    """`_need` for a setting that may be left unset (None: its default), said so in the command line's words."""
    value = config.to_dict()[key]
    if value is not None and not test(value):
        entry = by_key(TrainConfig)[key]
        default = entry.meta("cli").get("meaning_doc") or entry.meta("meaning")
        unset = "or unset" + (f" ({default})" if isinstance(default, (str, int, float)) else "")
        raise ValueError(f"{entry.label} must be {accepted}, {unset}, got {value!r}")


def _check_choices(config: TrainConfig, cuda_available: bool) -> None:
    from cropmix.integrations import require
    from cropmix.integrations.tensorboard import check_log
    from cropmix.models import MODEL_NAMES

    data, model, device = config.data, config.model.name, config.run.device
    check_choices(config)  # dataset, optimizer, schedule, aug_device, normalisation, mix, log
    _need_if_set(config, "name", lambda name: name.strip() != "", "a label that is not blank")
    _said_with_option("device", check_device_name, device)
    check_log(config.run.log)  # --log tensorboard without the package fails here, before any work
    timm_hint = f" (a timm model as 'timm:{model}')" if isinstance(model, str) and model.isidentifier() else ""
    _need(config, model in MODEL_NAMES or model.startswith("timm:"), "model", f"one of {MODEL_NAMES}{timm_hint}")
    if model.startswith("timm:"):  # before any data is read
        require("timm", "timm", f"{option('model')} {model!r}")
    if data.dataset == "hf":
        require("datasets", "hf", f"{option('dataset')} 'hf'")
    if device.startswith("cuda") and not cuda_available:
        raise ValueError(f"device {device!r} was asked for but CUDA is not available; use cpu or auto")
    on_cuda = device.startswith("cuda") or (device == "auto" and cuda_available)
    if config.run.amp and not on_cuda:
        raise ValueError("amp=True needs a CUDA device (mixed precision is for GPUs here); drop --amp on CPU")


def _check_numbers(config: TrainConfig) -> None:
    v = config.to_dict()
    for key in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
        _need(config, v[key] > 0, key, "an int > 0")
    _need(config, v["workers"] >= 0, "workers", "an int >= 0")
    _need(config, abs(v["seed"]) < SEED_LIMIT, "seed", SEEDS)
    _need_if_set(config, "lr", lambda lr: lr > 0, "> 0")
    _need(config, v["weight_decay"] >= 0, "weight_decay", ">= 0")
    _need_if_set(config, "momentum", lambda momentum: 0 <= momentum < 1, "in [0, 1)")
    _need_if_set(config, "mix_alpha", lambda alpha: alpha > 0, "> 0")
    _need(config, 0 <= v["label_smoothing"] < 1, "label_smoothing", "in [0, 1)")
    epochs = v["epochs"]
    _need(config, 0 <= v["warmup_epochs"] < epochs, "warmup_epochs", f"in [0, epochs={epochs})")
    _need_if_set(config, "gamma", lambda gamma: 0 < gamma <= 1, "in (0, 1]")
    if v["milestones"] is not None:
        increasing = list(v["milestones"]) == sorted(set(v["milestones"]))
        ok = increasing and all(0 < m < epochs for m in v["milestones"])
        _need(config, ok, "milestones", f"increasing epochs in (0, epochs={epochs})")
    _need_if_set(config, "threads", lambda threads: threads >= 1, "an int >= 1")
    _need_if_set(config, "shuffle_buffer", lambda buffer: buffer >= 0, "an int >= 0")
    for key in ("max_train_images", "max_test_images"):
        _need_if_set(config, key, lambda count: count > 0, "an int > 0")


def _check_augmentation(config: TrainConfig) -> None:
    from cropmix.data import parse_aug
    from cropmix.transforms import PRESETS, make_config

    aug = config.aug
    base, _ = _said_with_option("aug", parse_aug, aug.name)
    _need(config, aug.preset in PRESETS, "preset", f"one of {sorted(PRESETS)}")
    if aug.rrc_scale is not None:
        try:
            make_config(32, scale=aug.rrc_scale)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{option('rrc_scale')} {list(aug.rrc_scale)}: {error}") from error
    if base == "cropmix":
        kwargs = config.augment_spec(config.data.image_size or 32).cropmix_kwargs()
        kwargs.pop("interpolation", None)
        try:
            make_config(**kwargs)  # raises naming the bad CropMix argument
        except (TypeError, ValueError) as error:
            raise cropmix_error(config, error) from error


def _check_timm_aug(config: TrainConfig) -> None:
    """Build timm's transform once, so that no timm, or an argument timm refuses (a keyword create_transform
    does not take, an unknown auto_augment policy, which timm asserts), is one error naming --timm-aug
    before any work."""
    from cropmix.integrations import require
    from cropmix.integrations.timm import train_transform as timm_transform

    aug, label = config.aug, option("timm_aug")
    if aug.timm_aug is None:
        return
    require("timm", "timm", label)
    size = config.augment_spec(config.data.image_size or 32).cropmix_kwargs()["size"]
    try:
        timm_transform(size, False, aug.preset, aug.cropmix_overrides(), **aug.timm_aug)
    except (TypeError, ValueError, AssertionError, KeyError) as error:
        if str(error).startswith(label):  # already said in the option's words
            raise
        kind = TypeError if isinstance(error, TypeError) else ValueError
        cause = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise kind(f"{label} {json.dumps(aug.timm_aug)} was refused by timm's create_transform: {cause}") from error


def cropmix_error(config: TrainConfig, error: Exception) -> Exception:
    """`error` from making CropMix's configuration (it names a CropMix argument: "num_crops must be >= 1"),
    said with the option that set it (the same type, to re-raise); else with the preset it came from."""
    given = {name: value for name, value in config.aug.cropmix_overrides().items() if value is not None}
    named = next((name for name in given if str(error).startswith(name)), None)
    if named is None:
        return type(error)(f"CropMix of {option('preset')} {config.aug.preset!r}: {error}")
    value = given[named]
    shown = list(value) if isinstance(value, tuple) else value
    label = next(entry.label for entry in declared(AugSettings) if entry.field.name == named)
    return type(error)(f"{label} {shown}: {error}")


def _check_data_pipeline(config: TrainConfig) -> None:
    """Where augmentation runs against the data: shards on the device; data in memory in workers or, with
    aug_device "device", on the device; files in workers."""
    from cropmix.data.sources import source_named

    data, where = config.data, config.aug.device
    source = source_named(data.dataset)
    shards = source.streams
    if shards and where == "workers":
        raise ValueError(
            f"{option('aug_device')} 'workers' does not apply to {option('dataset')} 'webdataset' (shards are "
            f"decoded and augmented on the training device): use aug_device 'auto' or 'device'"
        )
    if where == "device" and not (shards or source.in_memory or data.in_memory):
        raise ValueError(
            f"{option('aug_device')} 'device' needs the images in memory or as shards, got dataset="
            f"{data.dataset!r} read from files: add --in-memory, write shards with `cropmix shards`, or use "
            "aug_device 'auto' or 'workers'"
        )
    check_switches(data)
    if config.augments_on_device() and config.aug.timm_aug is not None:
        raise ValueError(
            f"{option('timm_aug')} (a per-image CPU transform) does not apply with augmentation on the device "
            f"({option('dataset')} 'webdataset' or {option('aug_device')} 'device'): drop the one or change the other"
        )


def check_switches(data: TrainData, remedy: str = "drop the one or change the other") -> None:
    """A switch the dataset's format has no use for (--skip-bad on arrays, --in-memory on shards) is refused
    by name, not ignored; `remedy` ends the message."""
    from cropmix.data.sources import SOURCES, source_named

    source = source_named(data.dataset)
    for key in ("skip_bad", "in_memory"):
        if getattr(data, key) and key not in source.switches:
            takers = ", ".join(repr(s.name) for s in SOURCES.values() if key in s.switches)
            raise ValueError(
                f"{option(key)} does not apply to {option('dataset')} {data.dataset!r} (it applies to {takers}): "
                f"{remedy}"
            )


def _check_paths(config: TrainConfig) -> None:
    from cropmix.data import check_data_path
    from cropmix.models.weights import check_checkpoint_path

    data, init = config.data, config.model.init
    check_data_path(data.dataset, data.path, download=data.download, in_memory=data.in_memory)
    check_out_path(config.run.out, data.path, data.dataset)
    if init is not None:
        check_checkpoint_path(init, f"{option('init')} checkpoint")
