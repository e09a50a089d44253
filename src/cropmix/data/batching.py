"""Batching: how a loader cuts a split into batches, stated once for in-memory, file and shard loaders."""

from __future__ import annotations

from dataclasses import dataclass

# Shard readers shuffle their samples through a buffer of this many (`cropmix train --shuffle-buffer`).
SHUFFLE_BUFFER = 1000


@dataclass(frozen=True)
class Batching:
    """Batches of `batch_size`; `train`: shuffled with `seed` (reshuffled per epoch) and only whole batches,
    else in order with every item once. This process is `rank` of `world` and reads its share with
    `workers` DataLoader workers; `pin_memory` for asynchronous copies to a GPU; `skip_bad`: unreadable
    files or shard members are counted and skipped instead of an error."""

    batch_size: int
    train: bool = False
    seed: int = 0
    rank: int = 0
    world: int = 1
    workers: int = 2
    pin_memory: bool = False
    skip_bad: bool = False

    def __post_init__(self) -> None:
        for name in ("batch_size", "seed", "rank", "world", "workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Batching.{name} must be an int, got {value!r}")
        for name in ("train", "pin_memory", "skip_bad"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Batching.{name} must be a bool, got {getattr(self, name)!r}")
        if self.batch_size < 1:
            raise ValueError(f"Batching.batch_size must be >= 1, got {self.batch_size!r}")
        if self.workers < 0:
            raise ValueError(f"Batching.workers must be >= 0, got {self.workers!r}")
        if not 0 <= self.rank < self.world:
            raise ValueError(f"Batching.rank must be in [0, world={self.world}), got {self.rank!r}")
