"""Accuracy on the published CIFAR-10-C / CIFAR-100-C files (Hendrycks & Dietterich 2019).

The folder holds one `<corruption>.npy` per corruption, uint8 (5 * N, 32, 32, 3): severity s is rows
(s - 1) * N .. s * N - 1, the N test images in the same order each time, and `labels.npy` (5 * N,) (or (N,)).

The mean is over the 15 standard corruptions (those of the benchmark's tables). The published CIFAR-10-C
folder also holds four extra files (speckle_noise, gaussian_blur, spatter, saturate): any file beyond
the 15 is scored and reported apart, under "extras", and never enters the mean.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from cropmix.data.arrays import read_npy_header
from cropmix.data.image_limits import check_image_size
from cropmix.data.safe_files import open_regular

from .corruptions import CORRUPTIONS
from .options import CorruptionOptions, check_count

SEVERITIES = 5
MAX_BATCH_BYTES = 1 << 28  # uint8 pixels read at once (1 GiB as floats): large images come in smaller batches


def cifar_c_files(folder: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """The corruption names in `folder` (the 15 standard ones first, in the reference's order, then any
    others such as speckle_noise alphabetically) and the labels of the N test images (N,).

    The folder may come from anyone: every file's .npy header (shape, dtype, size) is checked before any
    of it is read, and only regular files are opened."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"CIFAR-C folder {str(folder)!r} {what}")
    if not (folder / "labels.npy").is_file():
        raise FileNotFoundError(f"CIFAR-C folder {str(folder)!r} has no labels.npy")
    found = sorted(p.stem for p in folder.glob("*.npy") if p.stem != "labels")
    if not found:
        raise FileNotFoundError(f"CIFAR-C folder {str(folder)!r} has no <corruption>.npy files")
    names = [n for n in CORRUPTIONS if n in found] + [n for n in found if n not in CORRUPTIONS]
    rows = _check_images(folder / f"{names[0]}.npy")[0]
    if rows % SEVERITIES:
        raise ValueError(f"{names[0]}.npy has {rows} images, not {SEVERITIES} severities x N test images")
    n = rows // SEVERITIES
    shape, dtype = _npy_header(folder / "labels.npy")
    if shape not in ((n,), (SEVERITIES * n,)) or not np.issubdtype(dtype, np.integer):
        raise ValueError(f"labels.npy must be integers of shape ({n},) or ({SEVERITIES * n},), got {dtype} {shape}")
    raw = np.load(folder / "labels.npy", mmap_mode="r", allow_pickle=False)
    labels = np.array(raw[:n], dtype=np.int64)
    if len(raw) != n and not all((raw[s * n : (s + 1) * n] == labels).all() for s in range(1, SEVERITIES)):
        raise ValueError(f"{folder / 'labels.npy'}: the five severity blocks must list the same labels")
    if n and int(labels.min()) < 0:
        raise ValueError(f"{folder / 'labels.npy'} holds a negative label ({int(labels.min())}); labels are 0..K-1")
    return names, labels


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the .npy file `path`, from its header alone (a regular file, its size bounded)."""
    with open_regular(path) as handle:
        return read_npy_header(handle, str(path))


def _check_images(path: Path) -> tuple[int, ...]:
    """The shape of the corruption file `path`, refused unless it is uint8 (rows, H, W, 1 or 3) of images
    within the pixel limits."""
    shape, dtype = _npy_header(path)
    if dtype != np.uint8 or len(shape) != 4 or shape[-1] not in (1, 3):
        raise ValueError(f"{path.name} must be uint8 ({SEVERITIES} * N, H, W, C) with C 1 or 3, got {dtype} {shape}")
    check_image_size(shape[2], shape[1], str(path))
    return shape


def _corruption_file(folder: Path, name: str, n: int) -> np.ndarray:
    """The corruption file `name` of `folder`, checked and memory-mapped (read only where indexed)."""
    shape = _check_images(folder / f"{name}.npy")
    if shape[0] != SEVERITIES * n:
        raise ValueError(f"{name}.npy must hold {SEVERITIES} * {n} images, got shape {shape}")
    return np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)


@torch.no_grad()
def cifar_c_accuracy(
    model: nn.Module,
    folder: str | os.PathLike,
    device: torch.device | str,
    options: CorruptionOptions | None = None,
    *,
    indices: Sequence[int] | torch.Tensor | None = None,
    image_size: int | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> dict:
    """Top-1 (percent) of `model` on every corruption x severity of a CIFAR-10-C / CIFAR-100-C folder.

    Returns the same form as `corruption_accuracy`: {"mean", "per_corruption", "per_severity"} over the
    standard corruptions scored (mean None if none is), plus "images" (test images per severity),
    "missing" (standard corruptions not scored) and, when other files were scored, "extras" (the same
    three keys, its own mean). `options`: which corruptions (`names`, default every file of the folder)
    and severities (default 1-5) to score; its storage and seed do not apply (the files are stored).
    `indices`: which of the N test images to score (default all); `image_size`: resize (bilinear,
    antialiased) when the model was trained at another size.
    """
    folder = Path(folder)
    options = CorruptionOptions() if options is None else options
    available, labels = cifar_c_files(folder)
    names = available if options.names is None else list(options.names)
    missing = [n for n in names if n not in available]
    if missing or not names:
        raise ValueError(f"corruptions {missing or names!r} are not in {str(folder)!r}; it has {available}")
    check_count(batch_size, "batch_size", optional=False)
    keep = np.arange(len(labels)) if indices is None else np.asarray(torch.as_tensor(indices).tolist(), dtype=np.int64)
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    bar = tqdm(total=len(names) * len(options.severities) * len(keep), desc="cifar-c", unit="img", file=sys.stderr,
               disable=not progress, leave=False)  # fmt: skip
    files = _Files(labels, keep)
    scoring = _Scoring(model, device, image_size, batch_size, bar)
    try:
        per_severity = {}
        for name in names:
            array = _corruption_file(folder, name, len(labels))  # checked and mapped once for its severities
            per_severity[name] = [scoring.accuracy(files, array, s) for s in options.severities]
    finally:
        model.train(was_training)
        bar.close()
    summary = _summary({k: v for k, v in per_severity.items() if k in CORRUPTIONS})
    summary.update(images=len(keep), missing=[c for c in CORRUPTIONS if c not in per_severity])
    extras = {k: v for k, v in per_severity.items() if k not in CORRUPTIONS}
    if extras:
        summary["extras"] = _summary(extras)
    return summary


def _summary(per_severity: dict[str, list[float]]) -> dict:
    """{"mean" (None when empty), "per_corruption", "per_severity"} of per-severity accuracies."""
    per_corruption = {k: sum(v) / len(v) for k, v in per_severity.items()}
    mean = sum(per_corruption.values()) / len(per_corruption) if per_corruption else None
    return {"mean": mean, "per_corruption": per_corruption, "per_severity": per_severity}


class _Files(NamedTuple):
    """The test images of a CIFAR-C folder to score: all N labels, the indices kept."""

    labels: np.ndarray
    keep: np.ndarray


class _Scoring(NamedTuple):
    """How `cifar_c_accuracy` scores a file: the model on `device`, resized to `image_size`, in batches."""

    model: nn.Module
    device: torch.device
    image_size: int | None
    batch_size: int
    bar: Any

    def accuracy(self, files: _Files, array: np.ndarray, severity: int) -> float:
        """Top-1 (percent) on the kept test images of one corruption file (`array`, memory-mapped) at one severity."""
        correct, n = 0, len(files.labels)
        step = max(1, min(self.batch_size, MAX_BATCH_BYTES // math.prod(array.shape[1:])))
        for start in range(0, len(files.keep), step):
            chunk = files.keep[start : start + step]
            images = torch.from_numpy(np.asarray(array[(severity - 1) * n + chunk]))
            images = images.to(self.device).permute(0, 3, 1, 2).float().div_(255)
            if self.image_size is not None and images.shape[-1] != self.image_size:
                images = F.interpolate(images, size=self.image_size, mode="bilinear", antialias=True)
            targets = torch.from_numpy(files.labels[chunk]).to(self.device)
            correct += int((self.model(images).argmax(dim=1) == targets).sum())
            self.bar.update(len(chunk))
        return 100.0 * correct / len(files.keep)
