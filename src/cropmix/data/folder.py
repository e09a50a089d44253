"""ImageFolder trees (ImageNet layout: root/train/<class>/*, root/val/<class>/*; test/ is accepted as val).

Files are listed once; reading checks every file and names the one that fails. With `skip_bad`
unreadable files are counted, logged and left out instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .image_files import SKIP_HINT, BadFileError, image_size, open_image
from .safe_files import FileError

log = logging.getLogger("cropmix.data")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
# Split names looked for under the root, in order of preference.
SPLIT_DIRS = {"train": ("train",), "val": ("val", "test", "validation")}
SPLIT_NAMES = tuple(name for names in SPLIT_DIRS.values() for name in names)


@dataclass
class FolderIndex:
    """The files of one split: paths, integer targets and class names (sorted, as torchvision does)."""

    root: Path
    paths: list[Path]
    targets: list[int]
    classes: list[str]
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def select(self, indices: torch.Tensor) -> FolderIndex:
        """The files at `indices` (an int tensor), in that order; the skipped list starts afresh."""
        keep = indices.tolist()
        return FolderIndex(self.root, [self.paths[i] for i in keep], [self.targets[i] for i in keep], self.classes)


def split_dir(root: str | os.PathLike, split: str) -> Path:
    """The folder of `split` ("train" or "val") under `root`, or an error naming what is missing."""
    root = Path(root)
    if root.is_file():
        raise ValueError(f"data folder {str(root)!r} is a file, not a folder with train/ and val/ (or test/)")
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {str(root)!r} does not exist")
    if split not in SPLIT_DIRS:
        raise ValueError(f"split must be one of {sorted(SPLIT_DIRS)}, got {split!r}")
    for name in SPLIT_DIRS[split]:
        if (root / name).is_dir():
            check_not_enclosing(root / name, root, "split folder")
            return root / name
    raise FileNotFoundError(
        f"data folder {str(root)!r} has no {split} split: expected one of the sub-folders {list(SPLIT_DIRS[split])}"
    )


def index_folder(folder: str | os.PathLike, classes: list[str] | None = None, progress: bool = True) -> FolderIndex:
    """List `folder`/<class>/**/<image files> (sub-folders of a class included, as torchvision does).

    Without `classes` (a training split) the class folders found are the classes, and an empty one is an
    error naming it. With `classes` (a validation split, taken from training) a class may be absent, but
    a class folder training lacks is an error naming it. With `progress`, listing that takes more than a
    couple of seconds (ImageNet's 1.28M files) shows a bar over the classes, on one process of a group.
    """
    folder = Path(folder)
    if not folder.is_dir():
        what = "is a file, not a folder of <class>/<images>" if folder.exists() else "does not exist"
        raise FileNotFoundError(f"image folder {str(folder)!r} {what}")
    found = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not found:
        raise FileNotFoundError(f"image folder {str(folder)!r} has no class sub-folders")
    from_training = classes is not None
    classes = found if classes is None else classes
    unknown = sorted(set(found) - set(classes))
    if unknown:
        raise ValueError(f"image folder {str(folder)!r} has classes {unknown} that the training split lacks")
    paths: list[Path] = []
    targets: list[int] = []
    dist = torch.distributed  # is_initialized is missing from torch builds without distributed support
    shown = progress and not (dist.is_available() and dist.is_initialized() and dist.get_rank() != 0)
    bar = tqdm(classes, desc=f"indexing {folder}", unit="class", delay=2.0, leave=False, disable=not shown)
    for target, name in enumerate(bar):
        class_dir = folder / name
        check_not_enclosing(class_dir, folder, "class folder")
        files = class_files(class_dir)
        if not files and not (from_training and not class_dir.is_dir()):
            raise ValueError(f"class folder {str(class_dir)!r} is empty (no files ending in {IMAGE_EXTENSIONS})")
        paths.extend(files)
        targets.extend([target] * len(files))
    return FolderIndex(folder, paths, targets, list(classes))


def check_not_enclosing(linked: Path, folder: Path, what: str) -> None:
    """Refuse a sub-folder of `folder` that is a link to `folder` itself or to a folder above it.

    Listing it would list the data again and everything beside it (a link to / lists the whole disk).
    Links elsewhere stay allowed: class folders linked in from a full dataset are how subsets are made.
    """
    if not linked.is_symlink():
        return
    target, inside = linked.resolve(), folder.resolve()
    if target == inside or target in inside.parents:
        raise ValueError(
            f"{what} {str(linked)!r} links to {str(target)!r}, which holds {str(folder)!r} itself: "
            "listing it would list the data again and everything beside it"
        )


def class_files(class_dir: Path) -> list[Path]:
    """The image files under `class_dir`, links to folders not followed, sorted part by part as Paths sort.

    os.walk tells files from folders by the listing itself, without a stat per file; a folder that
    cannot be listed is an error naming it (a silently shorter class would shift every label count).
    """

    def unreadable(error: OSError) -> None:
        raise FileError(error.errno, f"cannot list image folder {error.filename}: {error.strerror}") from error

    if not class_dir.is_dir():  # a validation split may lack a class
        return []
    found = [
        os.path.join(root, name)
        for root, _, names in os.walk(class_dir, onerror=unreadable)
        for name in names
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
    ]
    found.sort(key=lambda path: path.split(os.sep))
    return [Path(path) for path in found]


def largest_file_size(index: FolderIndex, count: int = 8) -> tuple[int, int] | None:
    """The largest (height, width) among `count` files spread evenly over `index`, from their headers:
    the training transform batches CropMix when even these are small. Unreadable files are left out
    (the loader reports them later); None, with a warning, when none of them can be read."""
    sizes = []
    spread = np.unique(np.linspace(0, len(index.paths) - 1, count).round().astype(int))  # first to last
    for path in (index.paths[i] for i in spread):
        try:
            width, height = image_size(path)
            sizes.append((height, width))
        except BadFileError as error:
            log.warning("cannot read %s to size the training transform (%s)", path, error)
    return max(sizes, key=lambda hw: hw[0] * hw[1]) if sizes else None


def decode_folder(index: FolderIndex, skip_bad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every image of `index` into one uint8 (N, 3, H, W) tensor and int64 targets.

    All images must have the same size (CIFAR as JPEGs, say). Unreadable files raise, or with
    `skip_bad` are logged, counted in `index.skipped` and left out.
    """
    arrays: list[np.ndarray] = []
    targets: list[int] = []
    shape = None
    for path, target in zip(index.paths, index.targets, strict=True):
        try:
            array = np.asarray(open_image(path))
        except BadFileError as error:
            _bad_file(error, skip_bad)
            index.skipped.append(str(path))
            continue
        if shape is None:
            shape = array.shape
        elif array.shape != shape:
            raise ValueError(
                f"image {str(path)!r} is {array.shape[1]}x{array.shape[0]} but earlier ones are {shape[1]}x{shape[0]}: "
                "decoding into memory needs one size; use the file-based loader instead"
            )
        arrays.append(array)
        targets.append(target)
    if not arrays:
        raise ValueError(f"no readable images under {str(index.root)!r}")
    if index.skipped:
        log.warning("skipped %d unreadable files under %s", len(index.skipped), index.root)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    return images, torch.tensor(targets, dtype=torch.int64)


def _bad_file(error: BadFileError, skip_bad: bool) -> None:
    """Log a bad file as skipped, or raise it in one line with the hint to skip it."""
    if not skip_bad:
        raise BadFileError(f"bad image file {error} {SKIP_HINT}") from error
    log.warning("skipping %s: %s", error.path, error.reason)


class FolderDataset(torch.utils.data.Dataset):
    """Images read from files on demand: returns (transform(PIL image), target).

    With `skip_bad`, an unreadable file gives None (dropped by `collate_skip`) and a warning, and is
    counted in shared memory (one slot per loader worker, `slots` of them), so that the process that
    iterates can report totals (`skipped_total`) whichever worker read the file.
    """

    def __init__(self, index: FolderIndex, transform=None, skip_bad: bool = False, slots: int = 1) -> None:
        self.index = index
        self.transform = transform
        self.skip_bad = skip_bad
        self.skipped_counts = torch.zeros(slots, dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.index.paths)

    def skipped_total(self) -> int:
        """Unreadable files skipped so far, by every worker."""
        return int(self.skipped_counts.sum())

    def __getstate__(self) -> dict:
        # Workers from a fork server (DDP) get the dataset pickled: paths as strings load several times
        # faster than Path objects, which for ImageNet's 1.28M took 6.9 s in every worker.
        return {**self.__dict__, "index": replace(self.index, paths=[os.fspath(p) for p in self.index.paths])}

    def __getitem__(self, i: int):
        path = self.index.paths[i]
        try:
            image = open_image(path)
        except BadFileError as error:
            _bad_file(error, self.skip_bad)
            worker = torch.utils.data.get_worker_info()
            self.skipped_counts[0 if worker is None else worker.id + 1] += 1
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, self.index.targets[i]


def collate_skip(
    batch: list, images_of: Callable[[list], torch.Tensor] = torch.stack, train: bool = True
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(images, targets) of (image, target) pairs, dropping the None entries of unreadable files.

    images_of makes the batch from the list of images: stacking, or a batched transform such as
    BatchCropMix (which takes images of different sizes). A batch of unreadable files only is None in
    evaluation (`SkippingLoader` leaves it out) and an error in training, where every process must take
    the same number of steps.
    """
    kept = [item for item in batch if item is not None]
    if not kept:
        if not train:
            return None
        raise ValueError(
            f"every image of a training batch of {len(batch)} was unreadable (see the warnings above): "
            "so many bad files that a whole batch is made of them; remove them from the folder"
        )
    images = images_of([item[0] for item in kept])
    return images, torch.tensor([item[1] for item in kept], dtype=torch.int64)


class SkippingLoader(torch.utils.data.DataLoader):
    """A DataLoader that leaves out the batches `collate_skip` found only unreadable files in (None); its
    length still counts them."""

    def __iter__(self) -> Iterator:
        return (batch for batch in super().__iter__() if batch is not None)
