"""Helpers the test modules share: small generated data (arrays, npz files, image folders, Hugging Face
datasets), tiny models and configs, the command lines of tiny runs, and stand-ins for CUDA streams.
Encoded images and shards are made by encoded_files.py.

Test modules import these from here, never from one another.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from PIL import Image

from cropmix.evaluate.corruptions import CORRUPTIONS
from cropmix.models.classifier import Classifier
from cropmix.models.fastnet import FastNet
from cropmix.ssl import PretrainConfig
from cropmix.ssl.mae import MAE
from cropmix.ssl.moco import MoCo
from cropmix.train.config import TrainConfig
from cropmix.transforms.functional import mix_step

SORTED_RUN_CLASSES = 10  # the classes c0..c9 of the `sorted_run` fixture (conftest.py)
_MISSING_PACKAGE = re.compile(r"needs the '([\w.]+)' package, which is not installed")


def installed(package: str) -> bool:
    """Whether the optional `package` can be imported here (the dev install has them all; a bare one not)."""
    return importlib.util.find_spec(package) is not None


def skip_if_for_want_of_package(message: str) -> None:
    """Skip the test if `message` is cropmix's error for an optional package that is indeed not installed
    here: a documented command that needs timm runs wherever timm is, and is skipped, not failed, elsewhere."""
    found = _MISSING_PACKAGE.search(message)
    if found and not installed(found.group(1)):
        pytest.skip(f"needs the optional package {found.group(1)!r}, not installed here")


def make_images(n: int, size: int = 16, classes: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy images: each class has its own colour, plus noise. (N, H, W, 3) uint8 and targets."""
    rng = np.random.default_rng(seed)
    targets = np.arange(n) % classes
    palette = np.random.default_rng(1234).integers(30, 225, size=(classes, 3))  # the same in every split
    noise = rng.integers(-30, 30, size=(n, size, size, 3))
    images = np.clip(palette[targets][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    return images, targets.astype(np.int64)


def make_npz(path: Path, n_train: int = 64, n_test: int = 32, size: int = 16, classes: int = 4) -> Path:
    """An .npz dataset file in cropmix's format."""
    x_train, y_train = make_images(n_train, size, classes, seed=0)
    x_test, y_test = make_images(n_test, size, classes, seed=1)
    names = np.array([f"c{i}" for i in range(classes)])
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=names)
    return path


def make_folder(root: Path, val_name: str = "val", per_class: int = 3, size: int = 12) -> Path:
    images, targets = make_images(per_class * 2, size, classes=2)
    for split in ("train", val_name):
        for i, (image, target) in enumerate(zip(images, targets, strict=True)):
            folder = root / split / f"class{target}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


CROPMIX = [sys.executable, "-m", "cropmix"]


TINY_NET = ["--model", "fastnet", "--model-kwargs", '{"widths": [8, 8, 16, 16]}']


def base_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        "npz",
        "--data",
        str(data),
        "--out",
        str(out),
        *TINY_NET,
        "--workers",
        "0",
        "--batch-size",
        "16",
        "--lr",
        "0.2",
        "--no-progress",
        "--threads",
        "1",
        "--device",  # CPU: exact comparisons between runs, and DDP of two processes with one GPU or none
        "cpu",
        *extra,
    ]


def small_folder(root, side=(20, 24)):
    for split in ("train", "val"):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(4):
                PIL.Image.new("RGB", side, (60 * i, 30, 200)).save(root / split / c / f"{i}.png")
    return root


def textured_image(height: int = 120, width: int = 160, channels: int = 3, seed: int = 0) -> torch.Tensor:
    """A uint8 image with smooth gradients, edges and noise: every resampling error shows."""
    g = torch.Generator().manual_seed(seed)
    y = torch.linspace(0, 1, height)[:, None]
    x = torch.linspace(0, 1, width)[None, :]
    planes = []
    for c in range(channels):
        smooth = 0.5 + 0.4 * torch.sin(6.0 * x * (c + 1) + 4.0 * y)
        checker = ((torch.arange(height)[:, None] // 7 + torch.arange(width)[None, :] // 5 + c) % 2).float()
        planes.append(0.6 * smooth + 0.3 * checker + 0.1 * torch.rand(height, width, generator=g))
    return (torch.stack(planes) * 255).round().clamp(0, 255).to(torch.uint8)


def mix_views(views: list[torch.Tensor], params) -> torch.Tensor:
    """docs/method.md's mixing steps on (C, h, w) float64 views in mixing order, one `mix_step` at a time."""
    mixed = views[0]
    for step, new in zip(params.steps, views[1:], strict=True):
        mixed = mix_step(mixed, new, step)
    return mixed


def assert_same_params(a, b) -> None:
    """Two CropMixParams are the same draw: equal but for lam's last bits (numpy's and libm's Beta draws)."""
    assert a.crops == b.crops and a.order == b.order and a.image_size == b.image_size
    assert len(a.steps) == len(b.steps)
    for x, y in zip(a.steps, b.steps, strict=False):
        assert x.lam == pytest.approx(y.lam, rel=1e-12, abs=1e-15)
        assert dataclasses.replace(x, lam=0.0) == dataclasses.replace(y, lam=0.0)


TINY = {"widths": [8, 8, 16, 16]}


def tiny_config(tmp_path, **changes) -> TrainConfig:
    data = tmp_path / "d.npz"
    if not data.exists():
        make_npz(data)
    values = dict(
        dataset="npz",
        data=str(data),
        out=str(tmp_path / "run"),
        model="fastnet",
        model_kwargs=TINY,
        aug="baseline",
        epochs=2,
        batch_size=16,
        lr=0.2,
        workers=0,
        progress=False,
        eval_batch_size=32,
    )
    values.update(changes)
    return TrainConfig.from_dict(values)


def tiny_backbone() -> Classifier:
    return Classifier(FastNet((8, 8, 16, 16)), 4)


def tiny_mae(norm_pix_loss: bool = True) -> MAE:
    return MAE(
        32,
        8,
        dim=32,
        depth=1,
        heads=2,
        decoder_dim=32,
        decoder_depth=1,
        decoder_heads=2,
        num_classes=4,
        norm_pix_loss=norm_pix_loss,
    )


def tiny_moco() -> MoCo:
    return MoCo(tiny_backbone(), dim=16, queue_size=32)


def synthetic_images(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth coloured blobs: class = quadrant of a bright blob; uint8 (n, 3, 32, 32) and labels."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    cy = 8 + 16 * (labels // 2).float() + torch.randn(n, generator=g) * 2
    cx = 8 + 16 * (labels % 2).float() + torch.randn(n, generator=g) * 2
    blob = torch.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 40.0)
    colour = torch.rand(n, 3, 1, 1, generator=g)
    images = 40 + 200 * blob[:, None] * colour + 10 * torch.rand(n, 3, 32, 32, generator=g)
    return images.clamp(0, 255).to(torch.uint8), labels


def pretrain_config(tmp_path, npz_path, method, aug, **kw) -> PretrainConfig:
    base = dict(
        method=method,
        aug=aug,
        dataset="npz",
        data=str(npz_path),
        out=str(tmp_path / f"{method}-{aug}"),
        batch_size=16,
        log_every=1,
        checkpoint_every=1000,
        progress=False,
        probe_epochs=2,
        knn_k=10,
        threads=1,
        lr=0.05 if method == "moco" else 3e-3,
    )
    if method == "moco":  # MoCo's own settings are refused with MAE
        base.update(queue_size=32, moco_dim=16)
    base.update(kw)
    return PretrainConfig.from_dict(base)


class Crash(torch.nn.Module):
    """Wraps a model and raises on forward call `at` (to test resuming)."""

    def __init__(self, inner: torch.nn.Module, at: int | None) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    @property
    def feature_dim(self) -> int:
        return self.inner.feature_dim

    def features(self, x):
        return self.inner.features(x)

    def forward(self, *args):
        self.calls += 1
        if self.at is not None and self.calls == self.at:
            raise RuntimeError("simulated crash")
        return self.inner(*args)


def random_pil_image(height: int = 48, width: int = 64, seed: int = 0) -> PIL.Image.Image:
    rng = np.random.default_rng(seed)
    return PIL.Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def hf_dataset_dict(
    n_train=16, n_test=8, size=20, image_key="image", label_key="label", test_name="test", class_label=True,
    square=False,
):  # fmt: skip
    datasets = pytest.importorskip("datasets")
    names = ["cat", "dog", "eel"]

    def split(n, seed):
        images = [random_pil_image(size, size if square else size + 4, seed * 1000 + i) for i in range(n)]
        labels = [i % len(names) for i in range(n)]
        if not class_label:
            labels = [names[v] for v in labels]
        label_feature = datasets.ClassLabel(names=names) if class_label else datasets.Value("string")
        features = datasets.Features({image_key: datasets.Image(), label_key: label_feature})
        return datasets.Dataset.from_dict({image_key: images, label_key: labels}, features=features)

    return datasets.DatasetDict({"train": split(n_train, 0), test_name: split(n_test, 1)})


@contextlib.contextmanager
def ctrl_c_at_epoch(epoch: int) -> Iterator[None]:
    """Within the block, a `cropmix train` run is interrupted (KeyboardInterrupt, as by Ctrl-C) as its
    epoch `epoch` (counted from 1) starts."""
    from cropmix.train import loop

    real = loop.train_one_epoch

    def interrupted(run, index):
        if index + 1 == epoch:
            raise KeyboardInterrupt
        return real(run, index)

    loop.train_one_epoch = interrupted
    try:
        yield
    finally:
        loop.train_one_epoch = real


class LoggedStream:
    """Stands in for a torch.cuda.Stream: logs wait_stream calls as ("wait", this, other)."""

    def __init__(self, name: str, log: list) -> None:
        self.name, self.log = name, log

    def wait_stream(self, other: LoggedStream) -> None:
        self.log.append(("wait", self.name, other.name))


class LoggedTensor:
    """Stands in for a CUDA tensor: logs record_stream calls as ("record", name, stream)."""

    def __init__(self, name: object, log: list) -> None:
        self.name, self.log = name, log

    def record_stream(self, stream: LoggedStream) -> None:
        self.log.append(("record", self.name, stream.name))


def simulate_cuda_streams(monkeypatch, log: list) -> list[LoggedStream]:
    """torch.cuda's stream functions replaced by LoggedStreams: the current stream is the innermost one
    entered with `torch.cuda.stream` ("caller" outside), a new Stream is "side". Returns that stack."""
    active = [LoggedStream("caller", log)]

    @contextlib.contextmanager
    def use(stream: LoggedStream) -> Iterator[None]:
        active.append(stream)
        try:
            yield
        finally:
            active.pop()

    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: active[-1])
    monkeypatch.setattr(torch.cuda, "stream", use)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: LoggedStream("side", log))
    return active


CIFAR_C_EXTRAS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")


class MeanColour(torch.nn.Module):
    """Predicts class 0 for dark images, 1 for bright ones."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        level = images.mean(dim=(1, 2, 3))
        return torch.stack([0.5 - level, level - 0.5], dim=1)


def fake_cifar_c(folder: Path, extra_value: int) -> None:
    n = 4
    labels = np.array([0, 1, 0, 1])
    bright = np.where(labels[:, None, None, None] == 1, 250, 5).astype(np.uint8) * np.ones((n, 8, 8, 3), np.uint8)
    np.save(folder / "labels.npy", np.tile(labels, 5))
    for name in CORRUPTIONS:  # every standard file: all correct
        np.save(folder / f"{name}.npy", np.tile(bright, (5, 1, 1, 1)))
    for name in CIFAR_C_EXTRAS:  # the extras: all one value, half wrong
        np.save(folder / f"{name}.npy", np.full((5 * n, 8, 8, 3), extra_value, np.uint8))


def texture(height: int, width: int, seed: int, channels: int = 3) -> torch.Tensor:
    """A photo-like float image in [0, 255]: smooth colour gradients plus a fine random texture."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(
        torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij"
    )
    smooth = torch.stack([128 + 100 * torch.sin(xx / 37 + c) * torch.cos(yy / 53 - c) for c in range(channels)])
    noise = torch.rand(1, channels, height // 4 + 1, width // 4 + 1, generator=g) * 255
    fine = torch.nn.functional.interpolate(noise, size=(height, width), mode="bilinear", align_corners=False)[0]
    return (0.6 * smooth + 0.4 * fine).clamp(0, 255)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """Peak signal-to-noise ratio (dB) of `b` against `a`, both on the 0-255 scale."""
    mse = ((a.double() - b.double()) ** 2).mean().item()
    return 10 * math.log10(255.0**2 / max(mse, 1e-20))


def seeded(seed: int) -> torch.Generator:
    """A CPU generator in the state of `seed`."""
    return torch.Generator().manual_seed(seed)


def last_line(capsys) -> str:
    """The last line the command wrote to stderr (training logs its epochs before it)."""
    return capsys.readouterr().err.strip().splitlines()[-1]


def labelled_folder(root, classes=("c0", "c1"), per_class=2):
    """root/<class>/<i>.png with the class names of `make_npz`'s data."""
    for c in classes:
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            PIL.Image.new("RGB", (16, 16), (40 * i, 90, 160)).save(root / c / f"{i}.png")
    return root


def trained(tmp_path, name="run", epochs=1, *extra):
    """(data, run folder) of a finished tiny training run in tmp_path/name, on tmp_path/d.npz (made once)."""
    from cropmix.cli import main

    data = tmp_path / "d.npz"
    if not data.exists():
        make_npz(data)
    out = tmp_path / name
    assert main(base_args(data, out, "--epochs", str(epochs), *extra)) == 0
    return data, out
