"""Datasets held in memory as uint8 (N, C, H, W) tensors: CIFAR-10/100 (torchvision format) and .npz files.

An .npz file holds, per split s in {train, test}: either `x_s` (uint8, (N, H, W, C)) or the
original encoded files as `jpeg_s` (uint8, all bytes end to end) with `jpeg_s_offsets` (int64,
N + 1 offsets); `y_s` (int64 targets); and `classes` (str). Encoded files keep a subset of
JPEG CIFAR small without changing a pixel.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch


@dataclass
class ArraySplit:
    """One split in memory: uint8 images (N, C, H, W), int64 targets (N,), class names."""

    images: torch.Tensor
    targets: torch.Tensor
    classes: list[str]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be a uint8 (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if len(self.images) != len(self.targets):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} targets")

    def __len__(self) -> int:
        return len(self.targets)


CIFAR_CLASSES = {"cifar10": 10, "cifar100": 100}


def load_cifar(name: str, root: str | os.PathLike, train: bool, download: bool = True) -> ArraySplit:
    """CIFAR-10/100 from `root` in torchvision's format; downloaded there first if missing and `download`."""
    from torchvision import datasets

    if name not in CIFAR_CLASSES:
        raise ValueError(f"dataset must be one of {sorted(CIFAR_CLASSES)}, got {name!r}")
    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    root = Path(root)
    try:
        dataset = cls(str(root), train=train, download=False)
    except RuntimeError as error:
        if not download:
            raise FileNotFoundError(
                f"no {name} data in torchvision's format under {str(root)!r} (and download is off): {error}"
            ) from error
        try:
            dataset = cls(str(root), train=train, download=True)
        except Exception as download_error:  # noqa: BLE001 - re-raised with the path and the cause
            raise FileNotFoundError(
                f"no {name} data under {str(root)!r} and downloading it failed: {download_error}"
            ) from download_error
    images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    return ArraySplit(images, torch.as_tensor(dataset.targets, dtype=torch.int64), list(dataset.classes))


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Decode images stored end to end in `blob` at `offsets` into a uint8 (N, H, W, 3) array."""
    out = []
    for i in range(len(offsets) - 1):
        data = blob[offsets[i] : offsets[i + 1]].tobytes()
        out.append(np.asarray(PIL.Image.open(io.BytesIO(data)).convert("RGB")))
    return np.stack(out)


def load_npz(path: str | os.PathLike, split: str) -> ArraySplit:
    """Split `split` ("train" or "test"; "val" means "test") of an .npz file in the format above."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz file {str(path)!r} does not exist")
    split = {"val": "test"}.get(split, split)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'val', got {split!r}")
    with np.load(path, allow_pickle=False) as data:
        if f"x_{split}" in data:
            array = data[f"x_{split}"]
        elif f"jpeg_{split}" in data:
            array = decode_jpegs(data[f"jpeg_{split}"], data[f"jpeg_{split}_offsets"])
        else:
            raise ValueError(
                f"npz file {str(path)!r} has neither x_{split} nor jpeg_{split}; keys: {sorted(data.files)}"
            )
        if f"y_{split}" not in data:
            raise ValueError(f"npz file {str(path)!r} lacks y_{split}")
        targets = torch.from_numpy(data[f"y_{split}"].astype(np.int64))
        num_classes = int(targets.max()) + 1
        classes = [str(c) for c in data["classes"]] if "classes" in data else [str(i) for i in range(num_classes)]
    if array.dtype != np.uint8 or array.ndim != 4:
        raise ValueError(f"x_{split} in {str(path)!r} must be uint8 (N, H, W, C), got {array.dtype} {array.shape}")
    return ArraySplit(torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2).contiguous(), targets, classes)


def save_npz(path: str | os.PathLike, splits: dict[str, ArraySplit], compress: bool = False) -> Path:
    """Write `splits` ({"train": ..., "test": ...}) as decoded uint8 arrays; written to a temporary file and renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name, split in splits.items():
        arrays[f"x_{name}"] = split.images.permute(0, 2, 3, 1).numpy()
        arrays[f"y_{name}"] = split.targets.numpy()
        arrays["classes"] = np.array(split.classes)
    tmp = path.with_name(path.name + ".tmp.npz")
    (np.savez_compressed if compress else np.savez)(tmp, **arrays)
    os.replace(tmp, path)
    return path
