"""Fixed random subsets: the same images for every run and seed (a permutation from its own seed)."""

from __future__ import annotations

from copy import copy
from typing import Any

import torch

from .arrays import ArraySplit


def fixed_subset(n: int, size: int | float, seed: int = 0) -> torch.Tensor:
    """Sorted indices of a fixed random subset of range(n): `size` images (an int >= 1; at most n), or
    that fraction of them (a float in (0, 1], at least one). The same (n, size, seed) gives the same
    subset, and a smaller size with the same seed a subset of it (one permutation, cut shorter)."""
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"size must be an int count or a float fraction, got {size!r}")
    if isinstance(size, int):
        if size < 1:
            raise ValueError(f"size must be a count >= 1 (or a fraction in (0, 1]), got {size!r}")
        count = min(size, n)
    else:
        if not 0 < size <= 1:
            raise ValueError(f"size must be a fraction in (0, 1] (or an int count >= 1), got {size!r}")
        count = max(1, int(round(n * size)))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return perm[:count].sort().values


def subset(split: Any, limit: int | float | None, seed: int = 0) -> Any:
    """`split` (an ArraySplit in memory, or a file list such as FolderIndex) cut to `fixed_subset(n, limit,
    seed)`; the split itself when `limit` is None or covers it all."""
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
