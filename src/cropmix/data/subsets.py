"""Fixed random subsets: the same images for every run and seed (a permutation from its own seed)."""

from __future__ import annotations

from copy import copy
from typing import Any

import torch

from .arrays import ArraySplit
from .shards import ShardSplit


def subset_count(n: int, size: int | float) -> int:
    """How many of `n` images a subset of `size` (an int count >= 1, or a float fraction in (0, 1]) holds."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"size must be an int count or a float fraction, got {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"size must be a count >= 1 (or a fraction in (0, 1]), got {size!r}")
        return min(size, n)
    if not 0 < size <= 1:
        raise ValueError(f"size must be a fraction in (0, 1] (or an int count >= 1), got {size!r}")
    return max(1, int(round(n * size)))


def fixed_subset(n: int, size: int | float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a fixed random subset of range(n): `size` images (an int >= 1; at most n), or
    that fraction of them (a float in (0, 1], at least one). The same (n, size, seed) gives the same
    subset, and a smaller size with the same seed a subset of it (one permutation, cut shorter)."""
    count = subset_count(n, size)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:count].sort().values


def subset(split: Any, limit: int | float | None, seed: int = 0) -> Any:
    """`split` (an ArraySplit in memory, or a file list such as FolderIndex) cut to `fixed_subset(n, limit,
    seed)`; the split itself when `limit` is None or covers it all.

    A ShardSplit (tar shards) is cut to its first `subset_count(n, limit)` samples in index order
    instead (whole shards, then the head of one): `cropmix shards` wrote them in a seeded random order,
    so that is a fixed random subset too, read without opening the shards left out (`seed` is not used).
    """
    if isinstance(split, ShardSplit):
        return _shard_head(split, limit)
    n = len(split.targets)
    if limit is None or (isinstance(limit, int) and limit >= n):
        return split
    keep = fixed_subset(n, limit, seed)
    if isinstance(split, ArraySplit):
        return ArraySplit(split.images[keep], split.targets[keep], split.classes)
    out = copy(split)
    out.paths = [split.paths[i] for i in keep.tolist()]
    out.targets = [split.targets[i] for i in keep.tolist()]
    return out


def _shard_head(split: ShardSplit, limit: int | float | None) -> ShardSplit:
    if limit is None:
        return split
    left = subset_count(split.num_samples, limit)
    urls, counts = [], []
    for url, count in zip(split.urls, split.counts, strict=True):
        if left == 0:
            break
        urls.append(url)
        counts.append(min(count, left))
        left -= counts[-1]
    return ShardSplit(urls, counts)
