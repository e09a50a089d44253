"""Datasets (CIFAR, .npz, ImageFolder), augmentations by name, and loaders."""

from .arrays import ArraySplit, load_cifar, load_npz, save_npz
from .augment import BASE_AUGS, BATCH_MIXES, base_transform, eval_transform, parse_aug
from .folder import FolderIndex, decode_folder, index_folder, open_image, split_dir
from .loaders import DATASETS, DataSource, load_source, make_loader, set_epoch

__all__ = [
    "BASE_AUGS",
    "BATCH_MIXES",
    "DATASETS",
    "ArraySplit",
    "DataSource",
    "FolderIndex",
    "base_transform",
    "decode_folder",
    "eval_transform",
    "index_folder",
    "load_cifar",
    "load_npz",
    "load_source",
    "make_loader",
    "open_image",
    "parse_aug",
    "save_npz",
    "set_epoch",
    "split_dir",
]
