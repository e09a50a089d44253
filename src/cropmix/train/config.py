"""TrainConfig: everything a run needs, checked before any work starts, saved as config.json."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .distributed import check_device_name

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "onecycle", "constant")
NORMALISATIONS = ("cifar10", "cifar100", "imagenet")


@dataclass
class TrainConfig:
    """A training run. `out` is the run folder; every other field is recorded in out/config.json.

    aug: "none" | "baseline" | "rrc" | "cropmix", optionally "+mixup" / "+cutmix" (or "mixup" alone).
    preset and the cropmix_* fields set CropMix (None = the preset's value); rrc_scale defaults to
    the preset's scale range. init: a `cropmix pretrain` checkpoint (MoCo or MAE) whose backbone the
    model starts from (the classifier stays as initialised; not re-applied on resume). epochs count
    passes over the training split; warmup_epochs ramp the learning rate linearly from 0. milestones
    (epochs) apply to the step schedule, default 50% / 75%.
    """

    dataset: str = "cifar10"
    data: str = "data"
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
    mix_alpha: float = 1.0
    image_size: int | None = None
    normalisation: str | None = None
    epochs: int = 30
    batch_size: int = 128
    eval_batch_size: int = 512
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    warmup_epochs: float = 0.0
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.1
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
    eval_every: int = 1
    max_train_images: int | None = None
    max_test_images: int | None = None
    name: str | None = None
    progress: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        """A short name for tables: `name`, else the augmentation."""
        return self.name or self.aug

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; accepted: {sorted(known)}")
        values = dict(values)
        for key in ("cropmix_scale", "rrc_scale", "milestones"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if isinstance(values.get("cropmix_num_crops"), list):
            values["cropmix_num_crops"] = tuple(values["cropmix_num_crops"])
        return cls(**values)

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def cropmix_overrides(self) -> dict[str, Any]:
        return {
            "scale": self.cropmix_scale,
            "num_crops": self.cropmix_num_crops,
            "mix": self.cropmix_mix,
            "alpha": self.cropmix_alpha,
            "channel_permute": self.cropmix_channel_permute,
        }

    def validate(self, cuda_available: bool) -> None:
        """Raise ValueError/TypeError naming the field, the bad value and what is accepted."""
        from cropmix.data import DATASETS, parse_aug

        def need(cond: bool, name: str, accepted: str) -> None:
            if not cond:
                raise ValueError(f"{name} must be {accepted}, got {getattr(self, name)!r}")

        need(self.dataset in DATASETS, "dataset", f"one of {DATASETS}")
        base, _ = parse_aug(self.aug)
        from cropmix.transforms import PRESETS, make_config

        need(self.preset in PRESETS, "preset", f"one of {sorted(PRESETS)}")
        if base == "cropmix":
            from cropmix.data.augment import cropmix_kwargs

            kwargs = cropmix_kwargs(self.preset, self.image_size or 32, self.cropmix_overrides())
            kwargs.pop("interpolation", None)
            make_config(**kwargs)  # raises naming the bad CropMix argument
        if self.rrc_scale is not None:
            make_config(32, scale=self.rrc_scale)
        for name in ("epochs", "batch_size", "eval_batch_size", "eval_every"):
            value = getattr(self, name)
            need(isinstance(value, int) and not isinstance(value, bool) and value > 0, name, "an int > 0")
        need(isinstance(self.workers, int) and self.workers >= 0, "workers", "an int >= 0")
        need(self.optimizer in OPTIMIZERS, "optimizer", f"one of {OPTIMIZERS}")
        need(self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}")
        check_device_name(self.device)
        need(self.normalisation is None or self.normalisation in NORMALISATIONS, "normalisation", str(NORMALISATIONS))
        need(self.lr > 0, "lr", "> 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(0 <= self.momentum < 1, "momentum", "in [0, 1)")
        need(self.mix_alpha > 0, "mix_alpha", "> 0")
        need(0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)")
        need(0 <= self.warmup_epochs < self.epochs, "warmup_epochs", f"in [0, epochs={self.epochs})")
        need(0 < self.gamma <= 1, "gamma", "in (0, 1]")
        if self.milestones is not None:
            need(all(0 < m < self.epochs for m in self.milestones), "milestones", f"epochs in (0, {self.epochs})")
        need(self.image_size is None or self.image_size >= 8, "image_size", "None or an int >= 8")
        need(self.threads is None or self.threads >= 1, "threads", "None or an int >= 1")
        for name in ("max_train_images", "max_test_images"):
            need(getattr(self, name) is None or getattr(self, name) > 0, name, "None or an int > 0")
        if self.device.startswith("cuda") and not cuda_available:
            raise ValueError(f"device {self.device!r} was asked for but CUDA is not available; use cpu or auto")
        on_cuda = self.device.startswith("cuda") or (self.device == "auto" and cuda_available)
        if self.amp and not on_cuda:
            raise ValueError("amp=True needs a CUDA device (mixed precision is for GPUs here); drop --amp on CPU")
        from cropmix.models import MODEL_NAMES

        need(
            self.model in MODEL_NAMES or self.model.startswith("timm:"),
            "model",
            f"one of {MODEL_NAMES} or 'timm:<name>'",
        )
        path = Path(self.data)
        if not path.exists() and not (self.dataset in ("cifar10", "cifar100") and self.download):
            raise FileNotFoundError(f"data path {str(path)!r} does not exist")
        if self.init is not None and not Path(self.init).is_file():
            raise FileNotFoundError(
                f"init checkpoint {str(self.init)!r} does not exist (init takes a cropmix pretrain checkpoint.pt)"
            )
