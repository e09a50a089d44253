"""PretrainConfig: one pre-training run, its data and run parts shared with training's configuration."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cropmix.integrations.tensorboard import check_log
from cropmix.train.config import check_finite
from cropmix.train.config_parts import IMAGE_SIZES, SEED_LIMIT, SEEDS, DataSettings, RunSettings
from cropmix.train.distributed import check_device_name
from cropmix.train.run_files import PRETRAIN_METHODS
from cropmix.train.settings import OnlyWith, by_key, check_only_with, flatten, normalise_part, setting, unflatten

from .views import MAE_VIEWS, QUERY_VIEWS

if TYPE_CHECKING:
    from cropmix.data import DataSource

METHODS = PRETRAIN_METHODS  # stated once, where run folders are told apart by it
# Fields that may change between a run and its resumption: how it runs, when it saves, how it is evaluated.
RESUMABLE_CHANGES = {
    "resume", "progress", "workers", "threads", "device", "log", "checkpoint_every", "max_seconds",
    "eval_train", "eval_test", "knn_k", "knn_temperature", "probe_epochs",
}  # fmt: skip
# What `evaluate_checkpoint` may take from elsewhere than the checkpoint's own config: how it evaluates.
EVALUATION_FIELDS = ("eval_train", "eval_test", "knn_k", "knn_temperature", "probe_epochs", "device", "threads",
                     "progress")  # fmt: skip


# Every number's accepted range, checked when the config is made: a bad evaluation setting would
# otherwise fail only after the whole pre-training (None, where a field allows it, is always accepted).
AT_LEAST_ONE = ("epochs", "batch_size", "steps", "moco_dim", "queue_size", "bn_splits", "log_every",
                "checkpoint_every", "eval_train", "eval_test", "knn_k", "probe_epochs", "threads")  # fmt: skip
AT_LEAST_ZERO = ("warmup_steps", "workers", "weight_decay")
ABOVE_ZERO = ("lr", "temperature", "knn_temperature", "max_seconds")
WITH_MOCO = OnlyWith("method", lambda method: method == "moco", "'moco'")
WITH_MAE = OnlyWith("method", lambda method: method == "mae", "'mae'")
MAX_QUEUE_VALUES = 1 << 28  # MoCo's queue of keys, float32: 1 GiB (MoCo v2 on ImageNet: 128 x 65536)


def _check_ranges(config: PretrainConfig) -> None:
    table, values = by_key(PretrainConfig), config.to_dict()
    rules = [(AT_LEAST_ONE, lambda v: v >= 1, ">= 1"), (AT_LEAST_ZERO, lambda v: v >= 0, ">= 0"),
             (ABOVE_ZERO, lambda v: v > 0, "> 0"), (("moco_momentum",), lambda v: 0 <= v < 1, "in [0, 1)"),
             (("seed",), lambda v: abs(v) < SEED_LIMIT, SEEDS)]  # fmt: skip
    for keys, ok, accepted in rules:
        for key in keys:
            if values[key] is not None and not ok(values[key]):
                raise ValueError(f"{table[key].label} must be {accepted}, got {values[key]!r}")
    if config.moco_dim * config.queue_size > MAX_QUEUE_VALUES:  # a received config must not exhaust memory
        raise ValueError(
            f"moco_dim x queue_size must be at most {MAX_QUEUE_VALUES} (a 1 GiB queue), got "
            f"{config.moco_dim} x {config.queue_size}"
        )


def model_error(config: PretrainConfig, error: Exception) -> Exception:
    """`error` from building `config`'s MAE or MoCo backbone, said with the options that set it (the same
    type, to re-raise): "mae_kwargs (--mae-kwargs) {...}: dim must be divisible by 4"."""
    table = by_key(PretrainConfig)
    if config.method == "mae":
        return type(error)(f"{table['mae_kwargs'].label} {json.dumps(config.mae_kwargs)}: {error}")
    kwargs = config.backbone_kwargs
    with_kwargs = f" with {table['backbone_kwargs'].label} {json.dumps(kwargs)}" if kwargs else ""
    return type(error)(f"{table['backbone'].label} {config.backbone!r}{with_kwargs}: {error}")


def _check_model(config: PretrainConfig) -> None:
    """A keyword the model does not take (or a size its backbone cannot have) fails here, before any data is
    read, as in training: MoCo's backbone is built on the meta device, MAE's keywords are bound to its
    signature (its own checks run when it is built). timm backbones are checked when built."""
    try:
        if config.method == "mae":
            from .mae import MAE

            inspect.signature(MAE).bind(image_size=config.data.image_size, num_classes=1, **config.mae_kwargs)
        elif not config.backbone.startswith("timm:"):
            from cropmix.models.registry import check_model

            check_model(config.backbone, image_size=config.data.image_size, **config.backbone_kwargs)
    except (TypeError, ValueError) as error:
        raise model_error(config, error) from error


def _pretrain_data() -> DataSettings:
    return DataSettings(dataset="npz", path="examples/cifar10_subset/cifar10_subset.npz", image_size=32)


def _pretrain_run() -> RunSettings:
    return RunSettings(out="runs/pretrain", workers=0)


@dataclass
class PretrainConfig:
    """One pre-training run; every setting is saved (flat, as `to_dict()`) in out/config.json.

    Build one from flat keys with `PretrainConfig.from_dict({"method": "mae", "data": ...})` or from its
    parts. aug: MoCo "standard" | "cropmix" (the query view); MAE "standard" | "mae-mixup" | "mae-cutmix"
    ("cropmix" means "mae-cutmix"). The learning-rate schedule is a linear warm-up over `warmup_steps`,
    then cosine to 0. eval_train / eval_test: fixed random subsets of the splits for the kNN bank and the
    probe (None = all).
    """

    method: str = setting("moco", "the pre-training method (required, unless --recipe gives it)", choices=METHODS)
    aug: str = setting(
        "standard", "moco: standard | cropmix (the query view); mae: standard | mae-mixup | mae-cutmix "
        "(cropmix = mae-cutmix)",
    )  # fmt: skip
    data: DataSettings = field(default_factory=_pretrain_data)
    run: RunSettings = field(default_factory=_pretrain_run)
    subset: float = setting(1.0, "fraction of the training split to pre-train on (a fixed random subset)")
    backbone: str = setting("resnet18", "MoCo backbone, a cropmix.models name", only_with=WITH_MOCO)
    backbone_kwargs: dict[str, Any] = setting(
        {}, "JSON keyword arguments of build_model", only_with=WITH_MOCO, cli={"example": '{"widths": [8, 16, 32, 64]}'}
    )
    moco_dim: int = setting(128, "MoCo projection dimension", only_with=WITH_MOCO)
    queue_size: int = setting(4096, "MoCo queue of negative keys", only_with=WITH_MOCO)
    moco_momentum: float = setting(0.99, "MoCo key encoder momentum", only_with=WITH_MOCO)
    temperature: float = setting(0.2, "MoCo InfoNCE temperature", only_with=WITH_MOCO)
    bn_splits: int = setting(4, "MoCo split BatchNorm: chunks per process batch", only_with=WITH_MOCO)
    mae_kwargs: dict[str, Any] = setting(
        {},
        'JSON keyword arguments of cropmix.ssl.MAE, e.g. \'{"dim": 128, "depth": 4, "heads": 4}\'',
        only_with=WITH_MAE,
        cli={"example": '{"dim": 128, "depth": 4, "heads": 4}'},
    )
    epochs: int = setting(1, "passes over the (subset of the) training split")
    steps: int | None = setting(None, "optimiser steps (overrides --epochs)", meaning="the epochs'")
    batch_size: int = setting(256, "per process")
    lr: float | None = setting(None, "learning rate", meaning="MoCo 0.06, MAE 1e-3, x batch / 256 (all processes)")
    weight_decay: float | None = setting(None, "weight decay", meaning="MoCo 5e-4, MAE 0.05")
    warmup_steps: int = setting(0, "linear learning-rate warm-up steps")
    log_every: int = setting(10, "steps between metrics rows")
    checkpoint_every: int = setting(200, "steps between checkpoints")
    resume: bool = setting(False, "continue from OUT/checkpoint.pt")
    eval_train: int | None = setting(None, "labelled training images for kNN / probe", meaning="all")
    eval_test: int | None = setting(None, "test images for kNN / probe", meaning="all")
    max_seconds: float | None = setting(None, "stop training after this many seconds (recorded as stopped_early)")
    knn_k: int = setting(200, "neighbours of the kNN classifier")
    knn_temperature: float = setting(0.1, "temperature of the kNN vote")
    probe_epochs: int = setting(30, "linear probe epochs")

    def __post_init__(self) -> None:
        normalise_part(self)
        if self.method not in METHODS:
            raise ValueError(f"method (--method) must be one of {METHODS}, got {self.method!r}")
        if self.method == "mae" and self.aug == "cropmix":
            self.aug = "mae-cutmix"
        allowed = QUERY_VIEWS if self.method == "moco" else MAE_VIEWS
        if self.aug not in allowed:
            raise ValueError(f"aug (--aug) for {self.method} must be one of {allowed}, got {self.aug!r}")
        if not (0.0 < self.subset <= 1.0):
            raise ValueError(f"subset (--subset) must be a fraction in (0, 1], got {self.subset!r}")
        if self.data.image_size is None:  # its range is the data part's own check
            low, high = IMAGE_SIZES
            raise ValueError(f"image_size (--image-size) must be an int from {low} to {high}, got None")
        _check_ranges(self)
        check_only_with(self)
        check_finite(self)
        _check_model(self)
        check_device_name(self.run.device)
        check_log(self.run.log)  # --log tensorboard without the package fails here, before any work

    def to_dict(self) -> dict[str, Any]:
        """The flat keys and values, as config.json holds them."""
        return flatten(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainConfig:
        """A config from flat keys (config.json, a checkpoint, a recipe, the command line)."""
        return unflatten(cls, values)

    def replace(self, **values: Any) -> PretrainConfig:
        """A copy with the flat keys `values` changed."""
        return PretrainConfig.from_dict({**self.to_dict(), **values})

    def source(self, download: bool = True) -> DataSource:
        """The dataset of this configuration, in memory (a `cropmix.data.DataSource`); CIFAR is downloaded
        when missing only if `download`. Opening it shows progress bars as `run.progress` says."""
        from cropmix.data import load_source

        data = self.data
        return load_source(
            data.dataset, data.path, download=download, in_memory=True, hf_keys=data.hf_keys(),
            progress=self.run.progress,
        )  # fmt: skip
