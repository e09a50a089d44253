"""Datasets (a registry of formats: CIFAR, .npz, ImageFolder, Hugging Face, WebDataset shards; see
cropmix.data.sources), augmentations by name and where they run, loaders, fixed subsets."""

from .arrays import ArraySplit, load_cifar, load_npz, save_npz
from .augment import BASE_AUGS, BATCH_MIXES, AugmentSpec, eval_transform, parse_aug, random_flip
from .batching import Batching
from .folder import (
    FolderIndex,
    check_not_enclosing,
    decode_folder,
    index_folder,
    largest_file_size,
    open_image,
    split_dir,
)
from .loaders import check_data_path, load_source, make_loader, set_epoch, skipped_files
from .sources import SOURCES, DataSource, Source, SourceOptions, register, source_named
from .subsets import fixed_subset, subset

__all__ = [
    "BASE_AUGS",
    "BATCH_MIXES",
    "SOURCES",
    "ArraySplit",
    "AugmentSpec",
    "Batching",
    "DataSource",
    "FolderIndex",
    "Source",
    "SourceOptions",
    "check_data_path",
    "check_not_enclosing",
    "decode_folder",
    "eval_transform",
    "fixed_subset",
    "index_folder",
    "largest_file_size",
    "load_cifar",
    "load_npz",
    "load_source",
    "make_loader",
    "open_image",
    "parse_aug",
    "random_flip",
    "register",
    "save_npz",
    "set_epoch",
    "skipped_files",
    "source_named",
    "split_dir",
    "subset",
]
