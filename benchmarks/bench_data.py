"""Where the benchmarks find their data: the photos and CIFAR-10 subset shipped in examples/, or a
CIFAR-10 JPEG folder the user names (no default path: it exists only where someone put it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "examples" / "photos"
CIFAR_SUBSET = ROOT / "examples" / "cifar10_subset" / "cifar10_subset.npz"
CIFAR_FOLDER_HELP = (
    "an ImageFolder root of CIFAR-10 as JPEG files, <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg "
    "(CIFAR-10 is at https://www.cs.toronto.edu/~kriz/cifar.html; write each image out as one JPEG file)"
)


def photo_files(folder: Path, option: str = "--photos") -> list[Path]:
    """The *.jpg files of `folder`, sorted; exits with a message naming `option` when there are none."""
    files = sorted(Path(folder).glob("*.jpg"))
    if not files:
        raise SystemExit(f"{option}: no *.jpg files in {str(folder)!r} (the repo ships some in {PHOTOS})")
    return files


def subset_jpeg_bytes(split: str = "train", path: Path = CIFAR_SUBSET) -> list[bytes]:
    """The encoded JPEG files of one split of the shipped CIFAR-10 subset, in file order (class-sorted)."""
    with np.load(path, allow_pickle=False) as data:
        blob, offsets = data[f"jpeg_{split}"], data[f"jpeg_{split}_offsets"]
        return [blob[offsets[i] : offsets[i + 1]].tobytes() for i in range(len(offsets) - 1)]


def spread(items: list, n: int) -> list:
    """`n` items taken at an even stride over the list, so a class-sorted list gives every class."""
    return items[:: max(1, len(items) // n)][:n]


def cifar_folder(path: str | Path | None, option: str) -> Path:
    """`path` checked to be a CIFAR-10 JPEG folder; exits with a message naming `option` and the data otherwise."""
    if path is None:
        raise SystemExit(f"{option} is required: {CIFAR_FOLDER_HELP}")
    path = Path(path)
    if not (path / "train").is_dir():
        raise SystemExit(f"{option} {str(path)!r} has no train/ folder; expected {CIFAR_FOLDER_HELP}")
    return path
