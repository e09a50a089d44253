"""Datasets held in memory as uint8 (N, C, H, W) tensors: CIFAR-10/100 (torchvision format) and .npz files.

An .npz file holds, per split s in {train, test}: either `x_s` (uint8, (N, H, W, C)) or the
original encoded files as `jpeg_s` (uint8, all bytes end to end) with `jpeg_s_offsets` (int64,
N + 1 offsets); `y_s` (int64 targets); and `classes` (str). Encoded files keep a subset of
JPEG CIFAR small without changing a pixel.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch

from .image_files import to_rgb
from .image_limits import BadImageError, check_image_size, open_pil
from .safe_files import atomic_writer, missing_folders, open_regular, remove_empty_folders

MAX_ARRAY_BYTES = 4 * 2**30  # per npz member, declared size, checked before anything is inflated
MAX_CLASSES = 1 << 20  # labels 0..K-1 name K classes; ImageNet-21k has 21,841, a planted label may claim 10^12


def check_class_count(count: int, where: str) -> None:
    """Refuse labels (or class names) that would name more than MAX_CLASSES classes (a list of that many
    names, a head that wide), before anything that size is made; `where` names the file and the array."""
    if count > MAX_CLASSES:
        raise ValueError(f"{where} names {count} classes, more than MAX_CLASSES = {MAX_CLASSES}")


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

    def select(self, indices: torch.Tensor) -> ArraySplit:
        """The images at `indices` (an int tensor), in that order."""
        return ArraySplit(self.images[indices], self.targets[indices], self.classes)


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
        created = missing_folders(root)
        try:
            dataset = cls(str(root), train=train, download=True)
        except Exception as download_error:  # noqa: BLE001 - re-raised with the path and the cause
            remove_empty_folders(created)  # the folder the download made for itself, if nothing came
            raise FileNotFoundError(
                f"no {name} data under {str(root)!r} and downloading it failed: {download_error}"
            ) from download_error
    images = torch.from_numpy(np.asarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
    return ArraySplit(images, torch.as_tensor(dataset.targets, dtype=torch.int64), list(dataset.classes))


def decode_jpegs(blob: np.ndarray, offsets: np.ndarray, name: str = "jpeg") -> np.ndarray:
    """Decode images stored end to end in `blob` at `offsets` into a uint8 (N, H, W, 3) array, each opened
    only as one of IMAGE_FORMATS (`open_pil`) and checked against the pixel limits from its header first;
    errors name `name` and the image. The decoded images together are held to MAX_ARRAY_BYTES, as an x_ array
    is: a PNG of one colour shrinks a thousandfold, so the encoded sizes bound nothing."""
    out, held = [], 0
    for i in range(len(offsets) - 1):
        data = blob[offsets[i] : offsets[i + 1]].tobytes()
        try:
            with open_pil(io.BytesIO(data), f"{name}[{i}]") as image:
                check_image_size(image.width, image.height, f"{name}[{i}]")
                held += image.width * image.height * 3
                if held > MAX_ARRAY_BYTES:
                    raise ValueError(
                        f"{name}: images 0..{i} decode to {held} bytes, over the limit of {MAX_ARRAY_BYTES} "
                        "(MAX_ARRAY_BYTES) that decoded arrays have"
                    )
                out.append(np.asarray(to_rgb(image)))
        except (OSError, SyntaxError) as error:
            raise BadImageError(f"{name}[{i}]: cannot read image: {error}") from error
    return np.stack(out)


def check_npz_sizes(path: Path, limit: int = MAX_ARRAY_BYTES) -> None:
    """Refuse an npz whose members declare more than `limit` bytes (zip size or .npy shape x itemsize), unread."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            where = f"npz file {str(path)!r}: array {info.filename.removesuffix('.npy')}"
            if info.file_size > limit:
                raise ValueError(f"{where} declares {info.file_size} bytes, over the limit of {limit}")
            with archive.open(info) as member:
                read_npy_header(member, where, limit)


def read_npy_header(handle: IO[bytes], where: str, limit: int = MAX_ARRAY_BYTES) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) from the .npy header at `handle`, unread beyond it: ValueError naming `where` if there is
    no valid header, if the array holds Python objects (which only pickle could load) or if its declared size
    is over `limit` bytes."""
    try:
        version = np.lib.format.read_magic(handle)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(handle)
    except ValueError as error:
        raise ValueError(f"{where} has no valid .npy header: {error}") from error
    if dtype.hasobject:
        raise ValueError(f"{where} holds Python objects ({dtype}); only arrays of numbers are read")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > limit:
        raise ValueError(f"{where} of shape {shape} is {nbytes} bytes, over the limit of {limit}")
    return tuple(shape), dtype


def _images(array: np.ndarray, path: Path, key: str) -> torch.Tensor:
    where = f"npz file {str(path)!r}: {key}"
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise ValueError(f"{where} must be uint8 (N, H, W, C) or (N, H, W), got {array.dtype} {array.shape}")
    array = array[..., None] if array.ndim == 3 else array
    if array.shape[3] not in (1, 3):
        raise ValueError(f"{where} has {array.shape[3]} channels; 1 (grey, made RGB) or 3 (RGB) are accepted")
    check_image_size(array.shape[2], array.shape[1], where)
    images = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    return images.expand(-1, 3, -1, -1).contiguous() if images.shape[1] == 1 else images.contiguous()


def _targets(labels: np.ndarray, path: Path, key: str, count: int, num_classes: int | None) -> torch.Tensor:
    """`labels` as int64 targets, checked first to be `count` (one per image) integers in [0, num_classes)."""
    where = f"npz file {str(path)!r}: {key}"
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
        raise ValueError(f"{where} must be 1-d integer labels, got {labels.dtype} {labels.shape}")
    if len(labels) != count:  # before the int64 copy, 8 times a planted uint8 array's size
        raise ValueError(f"{where} holds {len(labels)} labels for {count} images; one label per image is accepted")
    top = num_classes if num_classes is not None else int(labels.max(initial=0)) + 1
    check_class_count(top, where)
    if labels.size and (labels.min() < 0 or labels.max() >= top):
        raise ValueError(f"{where} holds labels in [{labels.min()}, {labels.max()}]; accepted: [0, {top})")
    return torch.from_numpy(labels.astype(np.int64))


def _class_names(names: np.ndarray, path: Path) -> list[str]:
    """The `classes` array as names, its count checked first: a Python string per entry is some 50 bytes, so
    a planted array of a billion one-character names would take 50 GB."""
    check_class_count(names.size, f"npz file {str(path)!r}: classes")
    return [str(c) for c in names]


def load_npz(path: str | os.PathLike, split: str) -> ArraySplit:
    """Split `split` ("train" or "test"; "val" means "test") of an .npz file in the format above, its
    declared sizes, channels (1 or 3), image sides and labels checked before use."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not an .npz file" if path.is_dir() else "does not exist"
        raise FileNotFoundError(f"npz file {str(path)!r} {what}")
    split = {"val": "test"}.get(split, split)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'val', got {split!r}")
    try:
        check_npz_sizes(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"npz file {str(path)!r} is not a valid npz (zip) file: {error}") from error
    with open_regular(path) as handle, np.load(handle, allow_pickle=False) as data:
        if f"x_{split}" in data:
            array = data[f"x_{split}"]
        elif f"jpeg_{split}" in data:
            array = decode_jpegs(data[f"jpeg_{split}"], data[f"jpeg_{split}_offsets"], f"{path} jpeg_{split}")
        else:
            raise ValueError(
                f"npz file {str(path)!r} has neither x_{split} nor jpeg_{split}; keys: {sorted(data.files)}"
            )
        if f"y_{split}" not in data:
            raise ValueError(f"npz file {str(path)!r} lacks y_{split}")
        images = _images(array, path, f"x_{split}")  # its shape checked before len() counts the images
        classes = _class_names(data["classes"], path) if "classes" in data else None
        count = len(classes) if classes is not None else None
        targets = _targets(data[f"y_{split}"], path, f"y_{split}", len(images), count)
    classes = classes if classes is not None else [str(i) for i in range(int(targets.max()) + 1 if len(targets) else 0)]
    return ArraySplit(images, targets, classes)


def save_npz(path: str | os.PathLike, splits: dict[str, ArraySplit], compress: bool = False) -> Path:
    """Write `splits` ({"train": ..., "test": ...}) as decoded uint8 arrays, through `atomic_writer` (a link
    planted at `path` or beside it is never written through)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for name, split in splits.items():
        arrays[f"x_{name}"] = split.images.permute(0, 2, 3, 1).numpy()
        arrays[f"y_{name}"] = split.targets.numpy()
        arrays["classes"] = np.array(split.classes)
    with atomic_writer(path, "wb") as handle:
        (np.savez_compressed if compress else np.savez)(handle, **arrays)
    return path
