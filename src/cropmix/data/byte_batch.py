"""`ByteBatch`: a batch of encoded images as one uint8 tensor, what shard workers hand to the main process.

One tensor per batch (not one per image) is one shared-memory block between processes, and building it
copies each file once (cropmix.data.shard_reader bounds how many bytes that is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

__all__ = ["ByteBatch"]


@dataclass
class ByteBatch:
    """Encoded images stored end to end in one uint8 tensor (`data`, image i at offsets[i]:offsets[i + 1]:
    one shared-memory block per batch between processes), int64 labels, member names ("shard#key"),
    which images the batched JPEG decoder takes (`jpeg`) and the files the members were written from
    (`sources`, "" where the shard does not say); `skipped` names the bad members met since the last batch."""

    data: torch.Tensor
    offsets: torch.Tensor
    labels: torch.Tensor
    keys: list[str]
    jpeg: list[bool]
    skipped: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @classmethod
    def from_bytes(
        cls,
        files: list[bytes],
        labels: list[int],
        keys: list[str],
        jpeg: list[bool],
        skipped: Sequence[str] = (),
        sources: Sequence[str] = (),
    ) -> ByteBatch:
        """A batch of encoded files, stored end to end: each file is copied once, straight into `data`."""
        offsets = torch.tensor([0] + [len(f) for f in files], dtype=torch.int64).cumsum(0)
        bounds = offsets.tolist()
        data = torch.empty(bounds[-1], dtype=torch.uint8)
        # Written through a memoryview: torch.frombuffer would warn on read-only bytes.
        view = memoryview(data.numpy())
        for file, start, stop in zip(files, bounds[:-1], bounds[1:], strict=True):
            view[start:stop] = file
        labels_t = torch.tensor(labels, dtype=torch.int64)
        return cls(data, offsets, labels_t, keys, jpeg, list(skipped), list(sources) or [""] * len(keys))

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def images(self) -> list[torch.Tensor]:
        """The encoded files as 1-D uint8 views of `data`."""
        bounds = self.offsets.tolist()
        return [self.data[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def pin_memory(self) -> ByteBatch:
        """Pinned copies (DataLoader(pin_memory=True) calls this), for asynchronous copies to the GPU."""
        return ByteBatch(
            self.data.pin_memory(),
            self.offsets,
            self.labels.pin_memory(),
            self.keys,
            self.jpeg,
            self.skipped,
            self.sources,
        )

    @staticmethod
    def cat(batches: list[ByteBatch], pin_memory: bool = False) -> ByteBatch:
        """One batch holding the samples (and skip records) of `batches`, in order; `pin_memory`: its data and
        labels written straight into pinned memory (a batch the DataLoader pinned is pinned again once merged)."""
        starts = [0]
        for b in batches[:-1]:
            starts.append(starts[-1] + len(b.data))
        offsets = [b.offsets[:-1] + s for b, s in zip(batches, starts, strict=True)]
        total = starts[-1] + len(batches[-1].data)
        data = torch.empty(total, dtype=torch.uint8, pin_memory=pin_memory)
        labels = torch.empty(sum(len(b.labels) for b in batches), dtype=torch.int64, pin_memory=pin_memory)
        return ByteBatch(
            torch.cat([b.data for b in batches], out=data),
            torch.cat([*offsets, torch.tensor([total], dtype=torch.int64)]),
            torch.cat([b.labels for b in batches], out=labels),
            [key for b in batches for key in b.keys],
            [flag for b in batches for flag in b.jpeg],
            [name for b in batches for name in b.skipped],
            [source for b in batches for source in b.sources],
        )

    def split(self, n: int) -> tuple[ByteBatch, ByteBatch]:
        """The first `n` samples (with the skip records) and the rest."""
        cut = int(self.offsets[n])
        offsets, labels, keys, jpeg, sources = self.offsets, self.labels, self.keys, self.jpeg, self.sources
        head = ByteBatch(self.data[:cut], offsets[: n + 1], labels[:n], keys[:n], jpeg[:n], self.skipped, sources[:n])
        tail = ByteBatch(self.data[cut:], offsets[n:] - cut, labels[n:], keys[n:], jpeg[n:], [], sources[n:])
        return head, tail
