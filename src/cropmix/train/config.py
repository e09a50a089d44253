"""TrainConfig: everything a run needs, checked before any work starts, saved as config.json."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cropmix.data.safe_files import read_regular_bytes, write_text_atomic

from .distributed import check_device_name

OPTIMIZERS = ("sgd", "adamw")
# Fields earlier versions wrote that no longer exist, with the value they always held: an old config.json
# holding that value still loads.
RETIRED_FIELDS = {"extra": {}}
SCHEDULES = ("cosine", "step", "onecycle", "constant")
NORMALISATIONS = ("cifar10", "cifar100", "imagenet")
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}
# What a None field means. These fields only apply with some other setting, so None (not given) keeps an
# explicit value in a conflicting setting detectable (see TrainConfig.validate).
DEFAULTS = {
    "momentum": 0.9,
    "nesterov": True,
    "gamma": 0.1,
    "mix_alpha": 1.0,
    "hf_image_key": "image",
    "hf_label_key": "label",
    "shuffle_buffer": 1000,
}
AUG_DEVICES = ("auto", "workers", "device")
# Command-line spellings of the fields whose option is not simply --field-name.
OPTION_NAMES = {
    "cropmix_scale": "--scale",
    "cropmix_num_crops": "--num-crops",
    "cropmix_mix": "--mix",
    "cropmix_alpha": "--alpha",
    "cropmix_channel_permute": "--no-channel-permute",
}


def option(name: str) -> str:
    """A field with its command-line option, for error messages: "cropmix_num_crops (--num-crops)"."""
    return f"{name} ({OPTION_NAMES.get(name, '--' + name.replace('_', '-'))})"


@dataclass
class TrainConfig:
    """A training run. `out` is the run folder; every other field is recorded in out/config.json.

    aug: "none" | "baseline" | "rrc" | "cropmix", optionally "+mixup" / "+cutmix" (or "mixup" alone).
    preset and the cropmix_* fields set CropMix (None = the preset's value); rrc_scale defaults to
    the preset's scale range. init: a `cropmix pretrain` checkpoint (MoCo or MAE) whose backbone the
    model starts from (the classifier stays as initialised; not re-applied on resume). epochs count
    passes over the training split; warmup_epochs ramp the learning rate linearly from 0. milestones
    (epochs) apply to the step schedule, default 50% / 75%. timm_aug: keyword arguments of timm's
    create_transform (auto_augment, color_jitter, hflip, ...) with aug "cropmix": the training transform
    is then timm's, CropMix as its crop (cropmix.integrations.timm.train_transform). log: None or
    "tensorboard" (event files in out/tensorboard as well, see cropmix.integrations.tensorboard).
    dataset "webdataset": `data` is a shard folder from `cropmix shards` (or its index.json, or a URL);
    max_train_images/max_test_images then keep the first images in shard order (a fixed random subset:
    the shards were written shuffled). aug_device: where the augmentation runs, "workers" (DataLoader
    workers, per image or per in-memory batch) or "device" (on the training device, whole batches:
    shards decoded there, or images held in memory); "auto" picks "device" for shards and "workers"
    otherwise.
    shuffle_buffer: samples each shard reader shuffles among (webdataset only; None = 1000).
    """

    dataset: str = "cifar10"
    data: str = "data"
    hf_image_key: str | None = None
    hf_label_key: str | None = None
    out: str = "runs/run"
    model: str = "resnet18"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    aug: str = "baseline"
    preset: str = "cifar"
    cropmix_scale: tuple[float, float] | None = None
    cropmix_num_crops: int | tuple[int, ...] | None = None
    cropmix_mix: str | None = None
    cropmix_alpha: float | None = None
    cropmix_channel_permute: bool | None = None
    rrc_scale: tuple[float, float] | None = None
    timm_aug: dict[str, Any] | None = None
    mix_alpha: float | None = None
    image_size: int | None = None
    normalisation: str | None = None
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "sgd"
    lr: float | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: tuple[int, ...] | None = None
    gamma: float | None = None
    label_smoothing: float = 0.0
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    channels_last: bool | None = None
    workers: int = 2
    threads: int | None = None
    download: bool = True
    skip_bad: bool = False
    in_memory: bool = False
    aug_device: str = "auto"
    shuffle_buffer: int | None = None
    eval_every: int = 1
    max_train_images: int | None = None
    max_test_images: int | None = None
    name: str | None = None
    progress: bool = True
    log: str | None = None

    def __post_init__(self) -> None:
        for name in ("data", "out", "init"):
            if isinstance(getattr(self, name), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        for name in ("cropmix_scale", "rrc_scale", "milestones", "cropmix_num_crops"):
            if isinstance(getattr(self, name), list):  # from JSON or argparse
                setattr(self, name, tuple(getattr(self, name)))
        check_field_types(self)

    def setting(self, name: str) -> Any:
        """The value of field `name` in effect: its own, or the default that None stands for."""
        value = getattr(self, name)
        if value is not None:
            return value
        return DEFAULT_LR[self.optimizer] if name == "lr" else DEFAULTS.get(name)

    def hf_keys(self) -> tuple[str, str]:
        """The image and label columns of a Hugging Face dataset (dataset "hf")."""
        return self.setting("hf_image_key"), self.setting("hf_label_key")

    def augments_on_device(self) -> bool:
        """Whether augmentation runs on the training device ("device", or "auto" with WebDataset shards)."""
        from cropmix.data.sources import SOURCES

        streams = self.dataset in SOURCES and SOURCES[self.dataset].streams
        return self.aug_device == "device" or (self.aug_device == "auto" and streams)

    def label(self) -> str:
        """A short name for tables: `name`, else the augmentation."""
        return self.name or self.aug

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if not (k in RETIRED_FIELDS and v == RETIRED_FIELDS[k])}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; accepted: {sorted(known)}")
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        """Write the config as JSON (atomically; a link at `path` is replaced, not followed)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """The config in a JSON file (a regular file of at most 1 MiB), errors naming it."""
        try:
            values = json.loads(read_regular_bytes(path, 1 << 20))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        if not isinstance(values, dict):
            raise ValueError(f"{path} holds a JSON {type(values).__name__}, not an object of config fields")
        return cls.from_dict(values)

    @staticmethod
    def cropmix_overrides_fields() -> tuple[str, ...]:
        return ("cropmix_scale", "cropmix_num_crops", "cropmix_mix", "cropmix_alpha", "cropmix_channel_permute")

    def augment_spec(self, size: int) -> Any:
        """This run's training augmentation at image side `size`, stated once (a cropmix.data.AugmentSpec)."""
        from cropmix.data import AugmentSpec, parse_aug

        base, _ = parse_aug(self.aug)
        return AugmentSpec(base, size, self.preset, self.cropmix_overrides(), self.rrc_scale)

    def cropmix_overrides(self) -> dict[str, Any]:
        return {
            "scale": self.cropmix_scale,
            "num_crops": self.cropmix_num_crops,
            "mix": self.cropmix_mix,
            "alpha": self.cropmix_alpha,
            "channel_permute": self.cropmix_channel_permute,
        }

    def validate(self, cuda_available: bool) -> None:
        """Raise ValueError/TypeError naming the field (and its option), the bad value and what is accepted."""
        check_field_types(self)
        check_finite(self)
        _check_choices(self, cuda_available)
        _check_augmentation(self)
        _check_numbers(self)
        _check_conflicts(self)
        _check_model(self)
        _check_paths(self)


def model_error(config: Any, image_size: int | None, error: Exception) -> Exception:
    """`error` from building `config`'s model, said in the options' words (the same type, to re-raise)."""
    at = f" at image size {image_size}" if image_size else ""
    kwargs = f" with {option('model_kwargs')} {json.dumps(config.model_kwargs)}" if config.model_kwargs else ""
    return type(error)(f"{option('model')} {config.model!r}{kwargs}{at}: {error}")


def _check_model(config: TrainConfig) -> None:
    """Build the model once on the meta device (no memory, no data), so that a keyword it does not take or
    a size it cannot have fails before any data is read. timm models are checked when built."""
    if config.model.startswith("timm:"):
        return
    from cropmix.models.registry import check_model

    size = config.image_size or 32  # the data's own size is known only once it is read
    try:
        check_model(config.model, image_size=size, **config.model_kwargs)
    except (TypeError, ValueError) as error:
        raise model_error(config, config.image_size, error) from error


def _need(config: TrainConfig, cond: bool, name: str, accepted: str) -> None:
    if not cond:
        raise ValueError(f"{option(name)} must be {accepted}, got {getattr(config, name)!r}")


def _matches(value: Any, hint: Any) -> bool:
    """Whether `value` is of the annotated type `hint` (an int passes for a float, a bool never for a number)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
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
            return all(_matches(v, args[0]) for v in value)
        return len(value) == len(args) and all(_matches(v, a) for v, a in zip(value, args, strict=True))
    return isinstance(value, origin or hint)


def check_field_types(config: TrainConfig) -> None:
    """TypeError naming the first field whose value is not of its annotated type (`lr="0.1"`, say)."""
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            hint = hints[f.name]
            accepted = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
            raise TypeError(f"{option(f.name)} must be {accepted}, got {value!r} ({type(value).__name__})")


def _check_choices(config: TrainConfig, cuda_available: bool) -> None:
    from cropmix.data.sources import SOURCES
    from cropmix.integrations import require
    from cropmix.integrations.tensorboard import check_log
    from cropmix.models import MODEL_NAMES

    _need(config, config.dataset in SOURCES, "dataset", f"one of {tuple(SOURCES)}")
    _need(config, config.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}")
    _need(config, config.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}")
    _need(config, config.aug_device in AUG_DEVICES, "aug_device", f"one of {AUG_DEVICES}")
    check_device_name(config.device)
    check_log(config.log)  # --log tensorboard without the package fails here, before any work
    _need(config, config.normalisation in (None, *NORMALISATIONS), "normalisation", f"None or one of {NORMALISATIONS}")
    accepted = f"one of {MODEL_NAMES} or 'timm:<name>'"
    _need(config, config.model in MODEL_NAMES or config.model.startswith("timm:"), "model", accepted)
    if config.model.startswith("timm:"):  # before any data is read
        require("timm", "timm", f"{option('model')} {config.model!r}")
    if config.dataset == "hf":
        require("datasets", "hf", f"{option('dataset')} 'hf'")
    if config.device.startswith("cuda") and not cuda_available:
        raise ValueError(f"device {config.device!r} was asked for but CUDA is not available; use cpu or auto")
    on_cuda = config.device.startswith("cuda") or (config.device == "auto" and cuda_available)
    if config.amp and not on_cuda:
        raise ValueError("amp=True needs a CUDA device (mixed precision is for GPUs here); drop --amp on CPU")


def check_finite(config: Any, name_of: Callable[[str], str] = option) -> None:
    """ValueError naming the first field of the dataclass `config` holding a NaN or an infinity (as a
    number, or in a tuple or list of them): `--lr inf` would "train" on NaN losses."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        values = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):
            raise ValueError(f"{name_of(f.name)} must be a finite number, got {value!r}")


def _check_numbers(config: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
        _need(config, getattr(config, name) > 0, name, "an int > 0")
    _need(config, config.workers >= 0, "workers", "an int >= 0")
    _need(config, config.lr is None or config.lr > 0, "lr", "None or > 0")
    _need(config, config.weight_decay >= 0, "weight_decay", ">= 0")
    _need(config, config.momentum is None or 0 <= config.momentum < 1, "momentum", "None or in [0, 1)")
    _need(config, config.mix_alpha is None or config.mix_alpha > 0, "mix_alpha", "None or > 0")
    _need(config, 0 <= config.label_smoothing < 1, "label_smoothing", "in [0, 1)")
    _need(config, 0 <= config.warmup_epochs < config.epochs, "warmup_epochs", f"in [0, epochs={config.epochs})")
    _need(config, config.gamma is None or 0 < config.gamma <= 1, "gamma", "None or in (0, 1]")
    if config.milestones is not None:
        increasing = list(config.milestones) == sorted(set(config.milestones))
        ok = increasing and all(0 < m < config.epochs for m in config.milestones)
        _need(config, ok, "milestones", f"increasing epochs in (0, epochs={config.epochs})")
    _need(config, config.image_size is None or config.image_size >= 8, "image_size", "None or an int >= 8")
    _need(config, config.threads is None or config.threads >= 1, "threads", "None or an int >= 1")
    _need(config, config.shuffle_buffer is None or config.shuffle_buffer >= 0, "shuffle_buffer", "None or an int >= 0")
    for name in ("max_train_images", "max_test_images"):
        _need(config, getattr(config, name) is None or getattr(config, name) > 0, name, "None or an int > 0")


def _check_augmentation(config: TrainConfig) -> None:
    from cropmix.data import parse_aug
    from cropmix.transforms import PRESETS, make_config

    base, _ = parse_aug(config.aug)
    _need(config, config.preset in PRESETS, "preset", f"one of {sorted(PRESETS)}")
    if config.rrc_scale is not None:
        make_config(32, scale=config.rrc_scale)
    if base == "cropmix":
        kwargs = config.augment_spec(config.image_size or 32).cropmix_kwargs()
        kwargs.pop("interpolation", None)
        make_config(**kwargs)  # raises naming the bad CropMix argument
        if config.timm_aug is not None:  # built once here: a bad timm argument (or no timm) fails before any work
            from cropmix.integrations.timm import train_transform as timm_transform

            timm_transform(kwargs["size"], False, config.preset, config.cropmix_overrides(), **config.timm_aug)


def _check_conflicts(config: TrainConfig) -> None:
    """Settings that only apply with another one: an explicit value without it is an error naming both."""
    from cropmix.data import parse_aug

    base, batch_mix = parse_aug(config.aug)
    needs = {name: ("aug", base == "cropmix", "'cropmix'") for name in config.cropmix_overrides_fields()}
    needs["rrc_scale"] = ("aug", base == "rrc", "'rrc'")
    needs["timm_aug"] = ("aug", base == "cropmix", "'cropmix'")
    needs["mix_alpha"] = ("aug", batch_mix is not None, "with +mixup or +cutmix")
    needs["momentum"] = needs["nesterov"] = ("optimizer", config.optimizer == "sgd", "'sgd'")
    needs["milestones"] = needs["gamma"] = ("schedule", config.schedule == "step", "'step'")
    needs["hf_image_key"] = needs["hf_label_key"] = ("dataset", config.dataset == "hf", "'hf'")
    needs["shuffle_buffer"] = ("dataset", config.dataset == "webdataset", "'webdataset'")
    for name, (other, applies, which) in needs.items():
        if getattr(config, name) is not None and not applies:
            raise ValueError(
                f"{option(name)} only applies with {option(other)} {which}, got {other}={getattr(config, other)!r}: "
                f"drop the one or change the other"
            )
    _check_data_pipeline(config)


def _check_data_pipeline(config: TrainConfig) -> None:
    """Where augmentation runs against the data: shards on the device; data in memory in workers or, with
    aug_device "device", on the device; files in workers."""
    from cropmix.data.sources import source_named

    source = source_named(config.dataset)
    shards = source.streams
    if shards and config.aug_device == "workers":
        raise ValueError(
            f"{option('aug_device')} 'workers' does not apply to {option('dataset')} 'webdataset' (shards are "
            f"decoded and augmented on the training device): use aug_device 'auto' or 'device'"
        )
    if config.aug_device == "device" and not (shards or source.in_memory or config.in_memory):
        raise ValueError(
            f"{option('aug_device')} 'device' needs the images in memory or as shards, got dataset="
            f"{config.dataset!r} read from files: add --in-memory, write shards with `cropmix shards`, or use "
            "aug_device 'auto' or 'workers'"
        )
    if shards and config.in_memory:
        raise ValueError(
            f"{option('in_memory')} does not apply to {option('dataset')} 'webdataset' (shards are streamed): "
            f"drop the one or change the other"
        )
    if config.augments_on_device() and config.timm_aug is not None:
        raise ValueError(
            f"{option('timm_aug')} (a per-image CPU transform) does not apply with augmentation on the device "
            f"({option('dataset')} 'webdataset' or {option('aug_device')} 'device'): drop the one or change the other"
        )


def _check_paths(config: TrainConfig) -> None:
    from cropmix.data import check_data_path

    check_data_path(config.dataset, config.data, download=config.download, in_memory=config.in_memory)
    if config.init is not None and not Path(config.init).is_file():
        raise FileNotFoundError(
            f"{option('init')} checkpoint {config.init!r} does not exist (init takes a cropmix pretrain checkpoint.pt)"
        )
