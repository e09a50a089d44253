"""Hugging Face `datasets` as a training source (extra: cropmix[hf]): `--dataset hf --data NAME_OR_PATH`.

`data` is a folder written by `DatasetDict.save_to_disk` (read with `load_from_disk`), or anything
`datasets.load_dataset` opens offline: a local folder (imagefolder, parquet, ...) or a dataset
already in the cache. The training split is "train", the test split the first of TEST_SPLITS that
has labels. Image columns are read undecoded (their stored bytes or paths) and decoded per item by
cropmix's own opener, as image files are (only the accepted formats, first frame, pixel limit), then
go through the transform by `Dataset.with_transform`, so training sees them as it sees ImageFolder files.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch

from ..data.arrays import check_class_count
from ..data.image_files import BadFileError, image_from_bytes, open_image
from . import require

TEST_SPLITS = ("test", "validation", "valid", "val")


@dataclass
class HFSplit:
    """One split of a Hugging Face dataset: the dataset itself, which column holds the images, int targets
    (read once from the label column) and class names."""

    dataset: Any  # datasets.Dataset
    image_key: str
    targets: list[int]
    classes: list[str]

    def __len__(self) -> int:
        return len(self.targets)

    def select(self, indices: torch.Tensor) -> HFSplit:
        """The items at `indices` (an int tensor), in that order."""
        keep = indices.tolist()
        return HFSplit(self.dataset.select(keep), self.image_key, [self.targets[i] for i in keep], self.classes)

    def torch_dataset(self, transform: Callable | None) -> torch.utils.data.Dataset:
        """(transform(RGB PIL image), target) per index; the transform runs through `with_transform`."""
        images = self.dataset.with_transform(_ImageColumn(self.image_key, transform), columns=[self.image_key])
        return _Items(images, self.targets)


class _ImageColumn:
    """The `with_transform` function: the image column of a batch as RGB PIL images, each transformed."""

    def __init__(self, image_key: str, transform: Callable | None) -> None:
        self.image_key, self.transform = image_key, transform

    def __call__(self, batch: dict[str, list]) -> dict[str, list]:
        images = [to_rgb(value) for value in batch[self.image_key]]
        return {"image": [self.transform(im) for im in images] if self.transform is not None else images}


class _Items(torch.utils.data.Dataset):
    """(image, target) pairs, as the training loop's collate expects, from a dataset of {"image": ...} rows."""

    def __init__(self, dataset: Any, targets: list[int]) -> None:
        self.dataset, self.targets = dataset, targets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        try:
            return self.dataset[index]["image"], self.targets[index]
        except BadFileError as error:  # the transform does not know the row: named here
            raise BadFileError(f"{error.path} (row {index})", error.reason) from error


def to_rgb(value: Any, name: str = "Hugging Face image") -> PIL.Image.Image:
    """A dataset's image value as an RGB PIL image: stored bytes or a file path (an undecoded Image column, see
    `undecoded`) decoded as cropmix decodes files, a PIL image, or an (H, W[, C]) uint8 array."""
    if isinstance(value, dict) and ("bytes" in value or "path" in value):
        where = str(value.get("path") or name)
        if value.get("bytes") is not None:
            return image_from_bytes(bytes(value["bytes"]), where)
        if value.get("path"):
            return open_image(value["path"])
        raise BadFileError(name, "the image value holds neither bytes nor a path")
    if isinstance(value, PIL.Image.Image):
        return value.convert("RGB")
    array = np.asarray(value)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(
            f"image values must be PIL images or uint8 (H, W[, C]) arrays, got {array.dtype} {array.shape}"
        )
    return PIL.Image.fromarray(array).convert("RGB")


def undecoded(dataset: Any, image_key: str) -> Any:
    """`dataset` with an Image column read as its stored bytes or path, not decoded by `datasets`, which
    would open them with PIL in any format Pillow knows (EPS runs Ghostscript); `to_rgb` decodes them
    as one of cropmix's accepted formats instead."""
    import datasets

    feature = dataset.features.get(image_key)
    if isinstance(feature, datasets.Image) and feature.decode:
        return dataset.cast_column(image_key, datasets.Image(decode=False))
    return dataset


def _check_not_decoded(feature: Any, where: str) -> None:
    """Refuse a column `datasets` would still decode when it is read (images in a list or a dict, an Image
    label, audio, video): it opens images with PIL in any format Pillow knows, as `undecoded` explains."""
    from datasets.features.features import require_decoding

    if require_decoding(feature):
        raise ValueError(
            f"{where} is {feature}, which only `datasets` itself would decode; accepted: images as one Image "
            "column (or PIL images, uint8 arrays), labels as ClassLabel, int or str values"
        )


def check_hf_data(data: str | os.PathLike) -> None:
    """Before any work: the `datasets` package is there (else pip install cropmix[hf]) and `data` is a
    folder or a dataset name, not a file."""
    require("datasets", "hf", "--dataset hf")
    if Path(data).is_file():
        raise ValueError(
            f"data (--data) {str(data)!r} is a file, but dataset (--dataset) 'hf' reads a dataset folder "
            "(save_to_disk, imagefolder, parquet files, ...) or a dataset name in the local cache"
        )


def open_hf(data: str | os.PathLike) -> Any:
    """The DatasetDict at `data`: `load_from_disk` for a save_to_disk folder, else `load_dataset(data)`."""
    check_hf_data(data)
    import datasets

    path = Path(data)
    if path.is_dir() and (path / "state.json").is_file():
        raise ValueError(
            f"data (--data) {str(path)!r} holds one saved Dataset; --dataset hf needs a DatasetDict with a "
            f"'train' split and one of {TEST_SPLITS} (DatasetDict({{'train': ..., 'test': ...}}).save_to_disk)"
        )
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        return datasets.load_from_disk(str(path))
    refuse_scripts(path)
    kwargs = (
        {"trust_remote_code": False}
        if "trust_remote_code" in inspect.signature(datasets.load_dataset).parameters
        else {}
    )
    try:
        with offline(datasets):
            return datasets.load_dataset(str(data), **kwargs)
    except Exception as error:  # noqa: BLE001 - one line naming the data, with the cause
        if path.is_dir():
            raise
        raise ValueError(
            f"data (--data) {str(data)!r} is neither a dataset folder nor a dataset in the local Hugging Face cache "
            f"(cropmix reads Hugging Face datasets offline; download it first): {' '.join(str(error).split())[:300]}"
        ) from error


def refuse_scripts(path: Path) -> None:
    """Raise ValueError if the folder `path` holds a dataset loading script (*.py at its top): `datasets`
    versions before 3 would run it, and cropmix never runs code that came with data."""
    if path.is_dir():
        scripts = sorted(p.name for p in path.iterdir() if p.suffix == ".py")
        if scripts:
            raise ValueError(
                f"data (--data) {str(path)!r} holds a dataset loading script {scripts[:3]}, which cropmix never runs; "
                "use a save_to_disk folder, an imagefolder or parquet/arrow files instead"
            )


@contextlib.contextmanager
def offline(datasets: Any) -> Iterator[None]:
    """`datasets` and the hub client set offline for the duration (environment and the already-read
    config), so a name not in the cache fails at once instead of retrying the network."""
    names = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    saved_env = {name: os.environ.get(name) for name in names}
    modules = [datasets.config]
    with contextlib.suppress(ImportError):
        import huggingface_hub.constants

        modules.append(huggingface_hub.constants)
    saved = [(m, name, getattr(m, name)) for m in modules for name in names if hasattr(m, name)]
    try:
        os.environ.update(dict.fromkeys(names, "1"))
        for module, name, _ in saved:
            setattr(module, name, True)
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def load_hf(data: str | os.PathLike, image_key: str = "image", label_key: str = "label") -> tuple[HFSplit, HFSplit]:
    """(train, test) splits of the dataset at `data`; errors name the missing split or column and what there is."""
    splits = open_hf(data)
    names = list(splits.keys())
    if "train" not in names:
        raise ValueError(f"Hugging Face dataset {str(data)!r} has no 'train' split; its splits: {names}")
    if image_key == label_key:
        raise ValueError(
            f"the image column (--hf-image-key) and the label column (--hf-label-key) are both {image_key!r}; "
            "they must be two different columns"
        )
    for name in names:
        columns = splits[name].column_names
        for option, key in (("--hf-image-key", image_key), ("--hf-label-key", label_key)):
            if key not in columns:
                raise ValueError(
                    f"split {name!r} of {str(data)!r} has no column {key!r} ({option}); columns: {columns}"
                )
        _check_not_decoded(  # as stored: `undecoded` below casts only the image column
            splits[name].features[label_key], f"split {name!r} of {str(data)!r}: column {label_key!r} (--hf-label-key)"
        )
    splits = {name: undecoded(splits[name], image_key) for name in names}
    for name in names:
        _check_not_decoded(
            splits[name].features[image_key], f"split {name!r} of {str(data)!r}: column {image_key!r} (--hf-image-key)"
        )
    train_labels = list(splits["train"][label_key])
    classes, to_int = _label_coding(splits["train"].features[label_key], train_labels)
    train = HFSplit(splits["train"], image_key, [to_int(v) for v in train_labels], classes)
    for name in (n for n in TEST_SPLITS if n in names):
        labels = list(splits[name][label_key])
        if all(v is not None and v != -1 for v in labels):  # unlabelled test splits mark labels -1
            return train, HFSplit(splits[name], image_key, [to_int(v) for v in labels], classes)
    raise ValueError(
        f"Hugging Face dataset {str(data)!r} has no labelled test split (one of {TEST_SPLITS}); splits: {names}"
    )


def _label_coding(feature: Any, labels: Sequence[Any]) -> tuple[list[str], Callable[[Any], int]]:
    """Class names and a value -> int target map: a ClassLabel's names, ints 0..max, or sorted label strings."""
    names = getattr(feature, "names", None)
    if names:
        classes = [str(n) for n in names]
    elif all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in labels):
        check_class_count(int(max(labels)) + 1, "the training split's labels")
        classes = [str(i) for i in range(int(max(labels)) + 1)]
    else:
        classes = sorted({str(v) for v in labels})
    index = {name: i for i, name in enumerate(classes)}

    def to_int(value: Any) -> int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool) and 0 <= value < len(classes):
            return int(value)
        if str(value) in index and not isinstance(value, (int, np.integer)):
            return index[str(value)]
        shown = [c[:40] for c in classes[:5]] + (["..."] if len(classes) > 5 else [])  # cut: labels can be bytes
        raise ValueError(f"label {repr(value)[:40]} is not one of the training split's {len(classes)} classes {shown}")

    return classes, to_int


def decode_split(split: HFSplit) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image of `split` as one uint8 (N, 3, H, W) tensor (all of one size), and int64 targets."""
    arrays, shape = [], None
    for i, value in enumerate(split.dataset[split.image_key]):
        array = np.asarray(to_rgb(value, f"image {i}"))
        if shape is not None and array.shape != shape:
            raise ValueError(
                f"image {i} is {array.shape[1]}x{array.shape[0]} but earlier ones are {shape[1]}x{shape[0]}: "
                "decoding into memory needs one size; leave --in-memory off"
            )
        shape = array.shape
        arrays.append(array)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.as_tensor(split.targets, dtype=torch.int64)
