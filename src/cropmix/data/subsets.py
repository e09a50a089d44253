"""Fixed random subsets: the same images for every run and seed (a permutation from its own seed)."""

from __future__ import annotations

from typing import Any

import torch


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
    """`split` cut to `fixed_subset(len(split), limit, seed)` through its `select` (an ArraySplit in
    memory, a FolderIndex of files, a Hugging Face split); the split itself when `limit` is None or
    covers it all.

    A split read as a stream (tar shards: it has `head`) is cut to its first `subset_count(n, limit)`
    samples in index order instead (whole shards, then the head of one): `cropmix shards` wrote them in
    a seeded random order, so that is a fixed random subset too, read without opening the shards left
    out (`seed` is not used).
    """
    if limit is None:
        return split
    n = len(split)
    if hasattr(split, "head"):
        return split.head(subset_count(n, limit))
    if isinstance(limit, int) and limit >= n:
        return split
    return split.select(fixed_subset(n, limit, seed))
