"""The parts of a run's configuration, each option declared once (see cropmix.train.settings).

DataSettings and RunSettings are shared by `cropmix train` and `cropmix pretrain`; TrainData and
TrainRun add what only training has. AugSettings, ModelSettings and OptimSettings are training's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from cropmix.data.augment import parse_aug
from cropmix.data.batching import SHUFFLE_BUFFER
from cropmix.data.image_limits import MAX_OUTPUT_SIDE, MIN_IMAGE_SIDE
from cropmix.integrations.tensorboard import LOG_CHOICES

from .settings import OnlyWith, Part, normalise_part, setting

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("cosine", "step", "onecycle", "constant")
NORMALISATIONS = ("cifar10", "cifar100", "imagenet")
AUG_DEVICES = ("auto", "workers", "device")
DEFAULT_LR = {"sgd": 0.1, "adamw": 1e-3}
# Seeds are taken in (-SEED_LIMIT, SEED_LIMIT): the seeds made from one (seed x 1_000_003 + epoch x 1009
# + rank, ...) then stay within the signed 64 bits torch's generators take.
SEED_LIMIT = 2**42
SEEDS = "an int in (-2**42, 2**42)"

WITH_HF = OnlyWith("dataset", lambda dataset: dataset == "hf", "'hf'")
WITH_SHARDS = OnlyWith("dataset", lambda dataset: dataset == "webdataset", "'webdataset'")
WITH_CROPMIX = OnlyWith("aug", lambda aug: parse_aug(aug)[0] == "cropmix", "'cropmix'")
WITH_RRC = OnlyWith("aug", lambda aug: parse_aug(aug)[0] == "rrc", "'rrc'")
WITH_BATCH_MIX = OnlyWith("aug", lambda aug: parse_aug(aug)[1] is not None, "with +mixup or +cutmix")
WITH_SGD = OnlyWith("optimizer", lambda optimizer: optimizer == "sgd", "'sgd'")
WITH_STEP = OnlyWith("schedule", lambda schedule: schedule == "step", "'step'")
CROPMIX_ONLY = "(--aug cropmix only)"


def _source_names() -> tuple[str, ...]:
    from cropmix.data.sources import SOURCES

    return tuple(SOURCES)


class _Checked(Part):
    """Paths given as os.PathLike become str; lists become tuples; every field's type is checked."""

    def __post_init__(self) -> None:
        for name in ("path", "out", "init"):
            if isinstance(getattr(self, name, None), os.PathLike):
                setattr(self, name, os.fspath(getattr(self, name)))
        normalise_part(self)


IMAGE_SIZES = (MIN_IMAGE_SIDE, MAX_OUTPUT_SIDE)  # the image sides a run may ask for


@dataclass
class DataSettings(_Checked):
    """Which dataset, where, and at what image side."""

    dataset: str = setting("cifar10", "the dataset's format", choices=_source_names)
    path: str = setting(
        "data",
        "dataset folder (CIFAR: torchvision format; ImageFolder: train/ and val/ or test/) or .npz file; hf: a "
        "Hugging Face dataset name (in the local cache) or folder; webdataset: the folder `cropmix shards` wrote, "
        "its index.json, or a URL",
        key="data",
    )
    hf_image_key: str | None = setting(None, "hf: the image column", meaning="image", only_with=WITH_HF)
    hf_label_key: str | None = setting(None, "hf: the label column", meaning="label", only_with=WITH_HF)
    image_size: int | None = setting(
        None, "image side, {} to {}".format(*IMAGE_SIZES), meaning="the data's; 224 for files and shards"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        low, high = IMAGE_SIZES
        if self.image_size is not None and not low <= self.image_size <= high:
            raise ValueError(f"image_size (--image-size) must be an int from {low} to {high}, got {self.image_size!r}")

    def hf_keys(self) -> tuple[str, str]:
        """The image and label columns of a Hugging Face dataset (dataset "hf")."""
        return self.setting("hf_image_key"), self.setting("hf_label_key")


@dataclass
class TrainData(DataSettings):
    """Training's data: subsets, bad files, where the images live while training."""

    normalisation: str | None = setting(None, "mean/std", meaning="by dataset", choices=NORMALISATIONS)
    max_train_images: int | None = setting(None, "use a fixed random subset of the training split")
    max_test_images: int | None = setting(None, "use a fixed random subset of the test split")
    skip_bad: bool = setting(False, "count, log and skip unreadable image files")
    in_memory: bool = setting(False, "ImageFolder: decode all images into memory once")
    download: bool = setting(True, "download CIFAR when it is not in --data")
    shuffle_buffer: int | None = setting(
        None, "webdataset: samples each shard reader shuffles among", meaning=SHUFFLE_BUFFER, only_with=WITH_SHARDS
    )


@dataclass
class AugSettings(_Checked):
    """The training augmentation and where it runs."""

    name: str = setting(
        "baseline", "none | baseline | rrc | cropmix, optionally +mixup or +cutmix (or mixup / cutmix alone)", key="aug"
    )
    preset: str = setting("cifar", "CropMix preset, also rrc's scale range")
    scale: tuple[float, float] | None = setting(
        None, f"CropMix scale {CROPMIX_ONLY}", key="cropmix_scale", flag="--scale", only_with=WITH_CROPMIX,
        meaning="the preset's", cli={"metavar": ("LOW", "HIGH")},
    )  # fmt: skip
    num_crops: int | tuple[int, ...] | None = setting(
        None, f"CropMix N, several: drawn per image {CROPMIX_ONLY}", key="cropmix_num_crops", flag="--num-crops",
        only_with=WITH_CROPMIX, meaning="the preset's",
    )  # fmt: skip
    mix: str | None = setting(
        None, f"CropMix mixing {CROPMIX_ONLY}", key="cropmix_mix", flag="--mix", choices=("mixup", "cutmix"),
        only_with=WITH_CROPMIX, meaning="the preset's",
    )  # fmt: skip
    alpha: float | None = setting(
        None, f"CropMix Mixup strength {CROPMIX_ONLY}", key="cropmix_alpha", flag="--alpha", only_with=WITH_CROPMIX,
        meaning="the preset's",
    )  # fmt: skip
    channel_permute: bool | None = setting(
        None, f"no CropMix channel permutation {CROPMIX_ONLY}", key="cropmix_channel_permute",
        flag="--no-channel-permute", only_with=WITH_CROPMIX, cli={"action": "store_false"},
    )  # fmt: skip
    rrc_scale: tuple[float, float] | None = setting(
        None, "rrc scale", meaning="the preset's range", only_with=WITH_RRC, cli={"metavar": ("LOW", "HIGH")}
    )
    timm_aug: dict[str, Any] | None = setting(
        None, "timm's training transform with CropMix as its crop; JSON of timm.data.create_transform arguments, "
        "e.g. '{\"auto_augment\": \"rand-m9-mstd0.5\"}' (cropmix[timm])", only_with=WITH_CROPMIX,
        cli={"metavar": "JSON", "example": '{"auto_augment": "rand-m9-mstd0.5"}'},
    )  # fmt: skip
    mix_alpha: float | None = setting(None, "batch Mixup/CutMix Beta alpha", meaning=1.0, only_with=WITH_BATCH_MIX)
    device: str = setting(
        "auto", "where augmentation runs: DataLoader workers, or the training device (shards, or data in memory: "
        "cifar, npz, --in-memory); auto: the device for webdataset, workers otherwise", key="aug_device",
        choices=AUG_DEVICES,
    )  # fmt: skip

    def cropmix_overrides(self) -> dict[str, Any]:
        """The CropMix settings given here, by CropMix argument name (None: the preset's)."""
        return {
            "scale": self.scale, "num_crops": self.num_crops, "mix": self.mix, "alpha": self.alpha,
            "channel_permute": self.channel_permute,
        }  # fmt: skip


@dataclass
class ModelSettings(_Checked):
    """The network, how it starts, its memory layout."""

    name: str = setting(
        "resnet18", "resnet18 | preact_resnet18 | wrn28_10 | fastnet | vit_tiny | timm:<name>", key="model"
    )
    kwargs: dict[str, Any] = setting(
        {},
        "backbone arguments as JSON, e.g. '{\"widths\": [8, 16, 32, 64]}' with --model fastnet",
        key="model_kwargs",
        cli={"example": '{"widths": [8, 16, 32, 64]}'},
    )
    init: str | None = setting(
        None, "start from the backbone of a cropmix pretrain checkpoint (MoCo or MAE)", cli={"metavar": "PATH"}
    )
    channels_last: bool | None = setting(None, "channels-last memory format", meaning=True)


def _default_lr(optim: OptimSettings) -> float:
    return DEFAULT_LR[optim.optimizer]


@dataclass
class OptimSettings(_Checked):
    """How long, in what batches, with which optimiser, schedule and loss."""

    epochs: int = setting(30, "passes over the training split")
    batch_size: int = setting(128, "per process")
    optimizer: str = setting("sgd", "sgd (momentum, weight decay) or adamw", choices=OPTIMIZERS)
    lr: float | None = setting(
        None, "learning rate", meaning=_default_lr, cli={"meaning_doc": "by optimizer: sgd 0.1, adamw 0.001"}
    )
    momentum: float | None = setting(None, "SGD momentum", meaning=0.9, only_with=WITH_SGD)
    nesterov: bool | None = setting(None, "Nesterov momentum", meaning=True, only_with=WITH_SGD)
    weight_decay: float = setting(5e-4, "L2 weight decay")
    schedule: str = setting("cosine", "learning-rate schedule over the epochs", choices=SCHEDULES)
    warmup_epochs: float = setting(0.0, "epochs of linear learning-rate warm-up from 0")
    milestones: tuple[int, ...] | None = setting(
        None, "step schedule epochs", meaning="50% and 75% of the epochs", only_with=WITH_STEP
    )
    gamma: float | None = setting(None, "step schedule factor", meaning=0.1, only_with=WITH_STEP)
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy")


@dataclass
class RunSettings(_Checked):
    """Where a run writes, on which device, with how many workers and threads, what it shows."""

    out: str = setting("runs/run", "run folder")
    seed: int = setting(0, "seed of the model's initialisation, the data order and the augmentation")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N (under torchrun, CUDA means GPU LOCAL_RANK)")
    workers: int = setting(2, "DataLoader workers per process")
    threads: int | None = setting(None, "torch CPU threads per process", meaning="torch's")
    progress: bool = setting(True, "no progress bars", flag="--no-progress", cli={"action": "store_false"})
    log: str | None = setting(None, "also write TensorBoard events to OUT/tensorboard", choices=LOG_CHOICES)


@dataclass
class TrainRun(RunSettings):
    """Training's run settings: precision, evaluation cadence and batch, the run's label."""

    amp: bool | None = setting(None, "mixed precision", meaning="on CUDA")
    eval_batch_size: int = setting(512, "images per evaluation batch")
    eval_every: int = setting(1, "evaluate every this many epochs (and after the last)")
    name: str | None = setting(None, "label in comparisons", meaning="the augmentation")
