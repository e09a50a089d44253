"""Fixtures shared by several test modules. Plain helpers live in tests/helpers.py and
tests/encoded_files.py (no test module imports another); this folder is put on sys.path so that
`from helpers import ...` works under any pytest import mode."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers import synthetic_images  # noqa: E402

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
