"""Fixtures shared by several test modules. Plain helpers live in tests/helpers.py and
tests/encoded_files.py (no test module imports another); this folder is put on sys.path so that
`from helpers import ...` works under any pytest import mode."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import SORTED_RUN_CLASSES, synthetic_images  # noqa: E402

from cropmix.data.arrays import ArraySplit, save_npz  # noqa: E402


@pytest.fixture(scope="session")
def npz_path(tmp_path_factory) -> Path:
    """A 4-class .npz of textured 32x32 images, 64 for training and 32 for testing."""
    x, y = synthetic_images(64)
    xt, yt = synthetic_images(32, seed=1)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    classes = ["a", "b", "c", "d"]
    return save_npz(path, {"train": ArraySplit(x, y, classes), "test": ArraySplit(xt, yt, classes)})


@pytest.fixture(params=["gather", "per_crop"])
def cpu_kernel(request) -> str:
    """Run a test under both CPU kernels: the batched separable passes, and torch's own kernel per crop."""
    return request.param


@pytest.fixture(scope="module")
def sorted_run(tmp_path_factory) -> Path:
    """A finished one-epoch run (fastnet, 8x8 images, classes c0..c9) on an .npz whose test split is sorted by
    class, as ImageFolder lists it; one per test module."""
    from cropmix.train import TrainConfig, train

    root = tmp_path_factory.mktemp("eval_run")
    rng = np.random.default_rng(0)
    palette = rng.integers(30, 225, size=(SORTED_RUN_CLASSES, 3))

    def split(per_class: int) -> tuple[np.ndarray, np.ndarray]:
        targets = np.repeat(np.arange(SORTED_RUN_CLASSES), per_class)  # 0,0,...,1,1,...: class-sorted
        noise = rng.integers(-30, 30, size=(len(targets), 8, 8, 3))
        return np.clip(palette[targets][:, None, None] + noise, 0, 255).astype(np.uint8), targets.astype(np.int64)

    (x_train, y_train), (x_test, y_test) = split(4), split(20)
    data = root / "sorted.npz"
    names = np.array([f"c{i}" for i in range(SORTED_RUN_CLASSES)])
    np.savez(data, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=names)
    config = TrainConfig.from_dict(dict(
        dataset="npz", data=str(data), out=str(root / "run"), model="fastnet", aug="baseline",
        model_kwargs={"widths": [4, 4, 8, 8]}, epochs=1, batch_size=20, workers=0, threads=1, device="cpu",
        progress=False,
    ))  # fmt: skip
    train(config)
    return root / "run"
