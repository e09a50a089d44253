"""Reading tar shards for training: encoded bytes and labels only, each image exactly once per epoch.

How an epoch is split (`epoch_plan`): the shards are put in one order shared by every process
(a permutation seeded by seed and epoch when shuffling, the index order otherwise). Their samples,
numbered 0..N-1 along that order, are cut into `world` contiguous ranges whose sizes differ by at
most one (rank r gets [r*N//world, (r+1)*N//world)), and each rank's range into one range per
DataLoader worker the same way. The ranges partition 0..N-1, so every sample is read by exactly one
worker of exactly one rank, whatever N, the shard count, `world` and the worker count are; a worker
opens only the shards its range touches and skips the leading members of its first one. Within a
worker, samples pass a seeded shuffle buffer (seed, epoch, rank, worker), so runs are reproducible.

Workers only read: `ByteBatch` holds the encoded files as uint8 tensors, the labels and the member
names; decoding and augmentation happen in the main process on the training device
(cropmix.data.device_pipeline). Shards are read with tarfile (cropmix.data.shard_tar): member sizes and
image headers are checked before anything is decoded. Bad members (no image, a bad label, a member over
`max_member_bytes`, an image over the pixel limit) and the members a short shard lacks (one record for them
all) are an error naming the shard, the member and the file it was written from, or with `skip_bad` logged,
counted and left out. A split of which nothing could be read is an error, not an empty epoch.
"""

from __future__ import annotations

import logging
import math
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .batching import SHUFFLE_BUFFER, Batching
from .device_pipeline import batch_decodable, member_label
from .folder import IMAGE_EXTENSIONS
from .image_files import SKIP_HINT
from .image_limits import BadImageError
from .shard_tar import MAX_MEMBER_BYTES, check_member_image, iter_samples
from .shards import ShardSplit

log = logging.getLogger("cropmix.data")

IMAGE_FIELDS = tuple(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
_FIELDS = frozenset((*IMAGE_FIELDS, "cls", "path"))
# A worker's shuffle buffer: at most SHUFFLE_BUFFER samples and this many bytes of encoded images.
SHUFFLE_BUFFER_BYTES = 512 * 2**20


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
        """A batch of encoded files, stored end to end."""
        sizes = torch.tensor([0] + [len(f) for f in files], dtype=torch.int64)
        data = (
            torch.frombuffer(bytearray(b"".join(files)), dtype=torch.uint8)
            if files
            else torch.zeros(0, dtype=torch.uint8)
        )
        labels_t = torch.tensor(labels, dtype=torch.int64)
        return cls(data, sizes.cumsum(0), labels_t, keys, jpeg, list(skipped), list(sources) or [""] * len(keys))

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
    def cat(batches: list[ByteBatch]) -> ByteBatch:
        """One batch holding the samples (and skip records) of `batches`, in order."""
        starts = [0]
        for b in batches[:-1]:
            starts.append(starts[-1] + len(b.data))
        offsets = [b.offsets[:-1] + s for b, s in zip(batches, starts, strict=True)]
        total = torch.tensor([starts[-1] + len(batches[-1].data)], dtype=torch.int64)
        return ByteBatch(
            torch.cat([b.data for b in batches]),
            torch.cat([*offsets, total]),
            torch.cat([b.labels for b in batches]),
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


def part(n: int, i: int, k: int) -> tuple[int, int]:
    """The i-th of k contiguous ranges splitting range(n), sizes differing by at most one."""
    return i * n // k, (i + 1) * n // k


def epoch_plan(
    counts: list[int], *, epoch: int, seed: int, shuffle: bool, rank: int, world: int, worker: int, workers: int
) -> list[tuple[int, int, int]]:
    """What one worker of one rank reads this epoch: (shard number, members to skip, members to take)."""
    if shuffle:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(len(counts), generator=generator).tolist()
    else:
        order = list(range(len(counts)))
    lo, hi = part(sum(counts), rank, world)
    a, b = part(hi - lo, worker, workers)
    lo, hi = lo + a, lo + b
    plan, start = [], 0
    for shard in order:
        stop = start + counts[shard]
        if stop > lo and start < hi:
            plan.append((shard, max(lo - start, 0), min(hi, stop) - max(lo, start)))
        start = stop
    return plan


def _shuffled(items: Iterator, size: int, generator: torch.Generator | None, max_bytes: int | None = None) -> Iterator:
    """Items (encoded bytes first) through a shuffle buffer of `size` items and at most `max_bytes` bytes
    (SHUFFLE_BUFFER_BYTES by default; one item alone may be larger); no buffer when generator is None.

    While the bytes stay under the bound, the order is that of the count bound alone; over it, random
    items are given out until the next one fits.
    """
    if generator is None or size <= 1:
        yield from items
        return
    max_bytes = SHUFFLE_BUFFER_BYTES if max_bytes is None else max_bytes
    buffer: list = []
    held = 0
    for item in items:
        while buffer and held + len(item[0]) > max_bytes:
            j = int(torch.randint(len(buffer), (1,), generator=generator))
            buffer[j], buffer[-1] = buffer[-1], buffer[j]
            held -= len(buffer[-1][0])
            yield buffer.pop()
        held += len(item[0])
        if len(buffer) < size:
            buffer.append(item)
            continue
        j = int(torch.randint(size, (1,), generator=generator))
        buffer[j], item = item, buffer[j]
        held -= len(item[0])
        yield item
    for j in torch.randperm(len(buffer), generator=generator).tolist():
        yield buffer[j]


class ShardStream(IterableDataset):
    """This process's share of a shard split, as `ByteBatch`es of up to `batch_size` (see the module doc)."""

    def __init__(
        self,
        split: ShardSplit,
        batching: Batching,
        *,
        num_classes: int | None = None,
        shuffle_buffer: int = SHUFFLE_BUFFER,
        max_member_bytes: int = MAX_MEMBER_BYTES,
    ) -> None:
        """`batching.train` shuffles (shards and samples); its workers and pin_memory are ShardLoader's."""
        self.split, self.batch_size, self.num_classes = split, batching.batch_size, num_classes
        self.rank, self.world, self.shuffle, self.seed = batching.rank, batching.world, batching.train, batching.seed
        self.shuffle_buffer, self.skip_bad, self.max_member_bytes = shuffle_buffer, batching.skip_bad, max_member_bytes
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _bad(self, skipped: list[str], name: str, reason: str, where: str | None = None) -> None:
        """Raise for the bad member `name` or, with skip_bad, log and record it; `where` adds its source file."""
        if not self.skip_bad:
            raise ValueError(f"bad shard member {where or name}: {reason} {SKIP_HINT}")
        log.warning("skipping shard member %s: %s", where or name, reason)
        skipped.append(name)

    def _sample(self, url: str, sample: dict, skipped: list[str]):
        """(encoded bytes, label, name, jpeg, source) for a tar sample, or None (recorded in `skipped`) if it is
        bad."""
        name = f"{url}#{sample.get('__key__')}"
        source = bytes(sample.get("path") or b"")[:4096].decode("utf-8", "replace")
        where = member_label(name, source)
        if sample["__oversize__"]:
            return self._bad(skipped, name, "; ".join(sample["__oversize__"]), where)
        field_name = next((f for f in IMAGE_FIELDS if f in sample), None)
        if field_name is None or not sample[field_name]:
            fields = sorted(k for k in sample if not k.startswith("__"))
            return self._bad(skipped, name, f"no (or an empty) image member; it has {fields}", where)
        try:
            label = int(bytes(sample.get("cls", b"")).decode("ascii"))
        except ValueError:
            return self._bad(skipped, name, f"label (.cls) is not an integer: {sample.get('cls')!r}", where)
        if label < 0 or (self.num_classes is not None and label >= self.num_classes):
            return self._bad(skipped, name, f"label {label} is outside [0, {self.num_classes})", where)
        try:
            data = check_member_image(bytes(sample[field_name]), where)
        except BadImageError as error:
            return self._bad(skipped, name, str(error).removeprefix(f"{where}: "), where)
        return data, label, name, batch_decodable(data), source

    def _read_shard(self, shard: int, skip: int, take: int, skipped: list[str]) -> Iterator:
        url = self.split.urls[shard]
        stream = iter_samples(url, _FIELDS, self.max_member_bytes)
        try:
            yield from self._members(url, stream, skip, take, skipped)
        finally:
            stream.close()

    def _members(self, url: str, stream: Iterator, skip: int, take: int, skipped: list[str]) -> Iterator:
        seen = 0
        while seen < skip + take:
            try:
                sample = next(stream, None)
            except (OSError, ValueError, RuntimeError, tarfile.TarError) as error:
                if not self.skip_bad:
                    raise ValueError(f"cannot read shard {url!r} after member {seen}: {error}") from error
                log.warning("cannot read the rest of shard %s: %s", url, error)
                sample = None
            if sample is None:
                break
            seen += 1
            if seen > skip:
                item = self._sample(url, sample, skipped)
                if item is not None:
                    yield item
        first, last = max(seen, skip) + 1, skip + take
        if first <= last:  # one record for the whole missing run, however long the index says it is
            missing = f"<member {first}>" if first == last else f"<members {first}..{last}>"
            lost = f"{last - first + 1} members missing" if first < last else "missing"
            self._bad(skipped, f"{url}#{missing}", f"{lost}: the shard ends after {seen} members")

    def _samples(self, plan: list[tuple[int, int, int]], skipped: list[str]) -> Iterator:
        for shard, skip, take in plan:
            yield from self._read_shard(shard, skip, take, skipped)

    def __iter__(self) -> Iterator[ByteBatch]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        plan = epoch_plan(
            self.split.counts,
            epoch=self.epoch,
            seed=self.seed,
            shuffle=self.shuffle,
            rank=self.rank,
            world=self.world,
            worker=worker,
            workers=workers,
        )
        generator = None
        if self.shuffle:
            key = ((self.seed * 1_000_003 + self.epoch) * 1009 + self.rank) * 1009 + worker
            generator = torch.Generator().manual_seed(key % (2**63))
        skipped: list[str] = []
        items: list = []
        for item in _shuffled(self._samples(plan, skipped), self.shuffle_buffer, generator):
            items.append(item)
            if len(items) == self.batch_size:
                yield _collate(items, skipped)
                items, skipped[:] = [], []
        if items or skipped:
            yield _collate(items, skipped)


def _collate(items: list, skipped: list[str]) -> ByteBatch:
    return ByteBatch.from_bytes(
        [item[0] for item in items],
        [item[1] for item in items],
        [item[2] for item in items],
        [item[3] for item in items],
        skipped,
        [item[4] for item in items],
    )


class ShardLoader:
    """Batches of exactly `batch_size` encoded images for this rank, read by `workers` DataLoader workers.

    Workers batch their own streams; the partial batches they end with are merged here, so only the
    rank's last batch can be short. Training (`drop_last=True`) gives every rank the same number of
    batches, (N // world) // batch_size, as DDP needs (a rank that skipped bad members repeats a few images
    of its share to get there); evaluation (`drop_last=False`) gives every
    sample exactly once over all ranks. `skipped` lists the bad members met so far (with `skip_bad`).
    Call `set_epoch(epoch)` before each epoch: it picks the shard order and the shuffle.
    """

    def __init__(
        self,
        split: ShardSplit,
        batching: Batching,
        *,
        num_classes: int | None = None,
        shuffle_buffer: int = SHUFFLE_BUFFER,
        prefetch_factor: int = 4,
    ) -> None:
        self.stream = ShardStream(split, batching, num_classes=num_classes, shuffle_buffer=shuffle_buffer)
        self.batch_size, self.drop_last = batching.batch_size, batching.train
        self._skipped: dict[str, None] = {}  # each bad member once, over all epochs, in the order first met
        workers = batching.workers
        extra = {"prefetch_factor": prefetch_factor} if workers > 0 else {}
        # Not persistent: workers restart each epoch and so read the epoch set by set_epoch.
        self.loader = DataLoader(
            self.stream, batch_size=None, num_workers=workers, pin_memory=batching.pin_memory, **extra
        )

    def set_epoch(self, epoch: int) -> None:
        self.stream.set_epoch(epoch)

    @property
    def skipped(self) -> list[str]:
        """The bad members met so far, each once, in the order first met."""
        return list(self._skipped)

    def __len__(self) -> int:
        split, world = self.stream.split, self.stream.world
        if self.drop_last:
            return split.num_samples // world // self.batch_size
        lo, hi = part(split.num_samples, self.stream.rank, world)
        return math.ceil((hi - lo) / self.batch_size)

    def _passes(self) -> Iterator[ByteBatch]:
        yield from self.loader
        if self.drop_last:
            # Only reached when skipped members left this rank short: top up from the start of its share,
            # so that every rank still takes len(self) steps (DDP waits for all of them).
            log.warning("rank %d: bad members left it short; repeating images to fill the epoch", self.stream.rank)
            yield from self.loader

    def __iter__(self) -> Iterator[ByteBatch]:
        limit = len(self)
        emitted = 0
        pending: list[ByteBatch] = []
        waiting = 0
        for batch in self._passes():
            self._skipped.update(dict.fromkeys(batch.skipped))
            if len(batch) == self.batch_size and not pending:
                out = [batch]
            else:
                pending.append(batch)
                waiting += len(batch)
                out = []
                while waiting >= self.batch_size:
                    head, tail = ByteBatch.cat(pending).split(self.batch_size)
                    out.append(head)
                    pending, waiting = [tail], len(tail)
            for full in out[: limit - emitted]:
                emitted += 1
                yield full
            if emitted == limit:
                return
        if waiting and not self.drop_last:
            yield ByteBatch.cat(pending)
        elif emitted == 0 and limit > 0:
            urls = self.stream.split.urls
            raise ValueError(
                f"the {len(urls)} shards from {urls[0]!r} gave rank {self.stream.rank} {waiting} readable samples, "
                f"fewer than one batch of {self.batch_size}: {len(self.skipped)} members were bad or missing "
                "(see the warnings above)"
            )
