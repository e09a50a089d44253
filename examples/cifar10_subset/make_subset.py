"""Make the CIFAR-10 subset shipped with the repo (cifar10_subset.npz) from CIFAR-10 as JPEG files.

The first `--train-per-class` / `--test-per-class` files (sorted by name) of every class are
kept as their original JPEG bytes (about 0.9 kB each), so the subset is small and decodes to
exactly the pixels of the source files. With `--decode` all images of both splits are decoded
into plain uint8 arrays instead (an in-memory cache for benchmarks; ~180 MB for all of CIFAR-10).

    python examples/cifar10_subset/make_subset.py --src CIFAR10_JPEG_ROOT
    python examples/cifar10_subset/make_subset.py --src CIFAR10_JPEG_ROOT --all --decode --out runs/cache/cifar10.npz

CIFAR10_JPEG_ROOT holds CIFAR-10 as JPEG files, <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from cropmix.data.arrays import save_npz
from cropmix.data.folder import decode_folder, index_folder, split_dir

SOURCE_HELP = (
    "an ImageFolder root of CIFAR-10 as JPEG files, <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg "
    "(CIFAR-10 is at https://www.cs.toronto.edu/~kriz/cifar.html; write each image out as one JPEG file)"
)


def pick(index, per_class: int | None):
    """Keep the first `per_class` files of every class (all with None)."""
    if per_class is None:
        return index
    counts: dict[int, int] = {}
    keep = []
    for path, target in zip(index.paths, index.targets, strict=True):
        if counts.get(target, 0) < per_class:
            counts[target] = counts.get(target, 0) + 1
            keep.append((path, target))
    index.paths = [p for p, _ in keep]
    index.targets = [t for _, t in keep]
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help="ImageFolder root of CIFAR-10 JPEGs with train/ and test/ (required)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("cifar10_subset.npz")))
    parser.add_argument("--train-per-class", type=int, default=500)
    parser.add_argument("--test-per-class", type=int, default=150)
    parser.add_argument("--all", action="store_true", help="keep every image")
    parser.add_argument("--decode", action="store_true", help="store decoded uint8 arrays instead of JPEG bytes")
    args = parser.parse_args()
    if args.src is None:
        parser.error(f"--src is required: {SOURCE_HELP}")

    train = index_folder(split_dir(args.src, "train"))
    test = index_folder(split_dir(args.src, "val"), classes=train.classes)
    per = {"train": None if args.all else args.train_per_class, "test": None if args.all else args.test_per_class}
    indexes = {"train": pick(train, per["train"]), "test": pick(test, per["test"])}
    if args.decode:
        splits = {}
        from cropmix.data.arrays import ArraySplit

        for name, index in indexes.items():
            images, targets = decode_folder(index)
            splits[name] = ArraySplit(images, targets, index.classes)
        save_npz(args.out, splits)
    else:
        arrays = {"classes": np.array(train.classes)}
        for name, index in indexes.items():
            blobs = [p.read_bytes() for p in index.paths]
            arrays[f"jpeg_{name}"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
            arrays[f"jpeg_{name}_offsets"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
            arrays[f"y_{name}"] = np.array(index.targets, dtype=np.int64)
        tmp = args.out + ".tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, args.out)
    print(
        f"wrote {args.out} ({os.path.getsize(args.out) / 1e6:.1f} MB): "
        f"{len(indexes['train'].paths)} train, {len(indexes['test'].paths)} test images"
    )


if __name__ == "__main__":
    main()
