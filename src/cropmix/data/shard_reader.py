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

Memory: a worker holds at most its shuffle buffer (SHUFFLE_BUFFER_BYTES of encoded images, plus the member
just read, at most `max_member_bytes`), the samples of the batch it is building (at most MAX_BATCH_BYTES)
and, while packing them, their one copy into a `ByteBatch`; the DataLoader keeps up to prefetch_factor
finished batches per worker in shared memory, each at most MAX_BATCH_BYTES. Merging the workers' partial
batches copies only the samples of the batch being made, also within MAX_BATCH_BYTES. A batch going over
it is an error, with or without `skip_bad`: it is too large a batch, not a bad member, and leaving images
out to fit would bias the data.
"""

from __future__ import annotations

import logging
import math
import tarfile
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .batching import SHUFFLE_BUFFER, Batching
from .byte_batch import ByteBatch
from .device_pipeline import batch_decodable, member_label
from .folder import IMAGE_EXTENSIONS
from .image_files import SKIP_HINT
from .image_limits import BadImageError
from .processes import worker_options
from .shard_tar import MAX_MEMBER_BYTES, check_member_image, iter_samples
from .shards import ShardSplit

log = logging.getLogger("cropmix.data")

IMAGE_FIELDS = tuple(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
_FIELDS = frozenset((*IMAGE_FIELDS, "cls", "path"))
# A worker's shuffle buffer: at most SHUFFLE_BUFFER samples and this many bytes of encoded images.
SHUFFLE_BUFFER_BYTES = 512 * 2**20
# The encoded bytes of one batch. Far above real data (1024 ImageNet JPEGs of ~110 KB are ~110 MB, 256 photos
# of ~5 MB are ~1.3 GB) and far below what batch_size members of MAX_MEMBER_BYTES could ask for (16 GiB at 256).
MAX_BATCH_BYTES = 2 * 2**30


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
        cls = bytes(sample.get("cls", b""))
        try:
            label = int(cls.decode("ascii"))
        except ValueError:  # shown cut short: a .cls member may hold up to max_member_bytes
            shown = repr(cls[:40]) + (f" ... ({len(cls)} bytes)" if len(cls) > 40 else "")
            return self._bad(skipped, name, f"label (.cls) is not an integer: {shown}", where)
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
        held = 0
        for item in _shuffled(self._samples(plan, skipped), self.shuffle_buffer, generator):
            held += len(item[0])
            if held > MAX_BATCH_BYTES:  # checked as samples come, so a batch never holds much more
                raise _too_large([it[2] for it in items] + [item[2]], self.split.urls, held, self.batch_size)
            items.append(item)
            if len(items) == self.batch_size:
                batch = _collate(items, skipped)
                items, held, skipped[:] = [], 0, []
                yield batch
        if items or skipped:
            yield _collate(items, skipped)


def _shard_of(name: str, known: set[str]) -> str:
    """The longest of `known` that the sample name `name` ("shard#key") starts with before a '#'."""
    cut = len(name)
    while (cut := name.rfind("#", 0, cut)) >= 0:
        if name[:cut] in known:
            return name[:cut]
    return name  # from no shard of `known`: shown whole


def _too_large(names: list[str], urls: Sequence[str], held: int, batch_size: int) -> ValueError:
    """The error for a batch whose samples (`names`, "shard#key", the last one going over) hold `held` bytes.

    Each name's shard is the longest of `urls` it starts with: a URL and a key may both hold '#'. The URLs
    are looked up as a set, not scanned once per name (a split may have 10^5 shards, a batch 10^3 names).
    """
    known = set(urls)
    shards = list(dict.fromkeys(_shard_of(name, known) for name in names))
    shown = ", ".join(repr(url) for url in shards[:3]) + (f" and {len(shards) - 3} more" if len(shards) > 3 else "")
    return ValueError(
        f"a batch of batch size {batch_size} from shard(s) {shown} went over the limit of {MAX_BATCH_BYTES} bytes "
        f"of encoded images per batch (MAX_BATCH_BYTES) at member {names[-1]!r}: its {len(names)} images hold "
        f"{held} bytes ({held // len(names)} each on average); use a smaller batch size (--batch-size, or "
        "--eval-batch-size for evaluation), or check the shards: their images are unusually large"
    )


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
        self.batch_size, self.drop_last, self.pin_memory = batching.batch_size, batching.train, batching.pin_memory
        self._skipped: dict[str, None] = {}  # each bad member once, over all epochs, in the order first met
        workers = batching.workers
        extra = {"prefetch_factor": prefetch_factor, **worker_options()} if workers > 0 else {}
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

    def _take(self, pending: list[ByteBatch]) -> ByteBatch:
        """The first batch_size samples of `pending` (which has that many), removed from it, as one batch."""
        pieces, count = [], 0
        while count < self.batch_size:
            piece = pending.pop(0)
            if count + len(piece) > self.batch_size:
                piece, rest = piece.split(self.batch_size - count)
                pending.insert(0, rest)
            pieces.append(piece)
            count += len(piece)
        return self._joined(pieces)

    def _joined(self, pieces: list[ByteBatch]) -> ByteBatch:
        """`pieces` as one batch within MAX_BATCH_BYTES, copied only when there are several."""
        held = sum(len(piece.data) for piece in pieces)
        if held > MAX_BATCH_BYTES:
            keys = [key for piece in pieces for key in piece.keys]
            raise _too_large(keys, self.stream.split.urls, held, self.batch_size)
        return pieces[0] if len(pieces) == 1 else ByteBatch.cat(pieces, pin_memory=self.pin_memory)

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
                    out.append(self._take(pending))
                    waiting -= self.batch_size
            for full in out[: limit - emitted]:
                emitted += 1
                yield full
            if emitted == limit:
                return
        if waiting and not self.drop_last:
            yield self._joined(pending)
        elif emitted == 0 and limit > 0:
            urls = self.stream.split.urls
            raise ValueError(
                f"the {len(urls)} shards from {urls[0]!r} gave rank {self.stream.rank} {waiting} readable samples, "
                f"fewer than one batch of {self.batch_size}: {len(self.skipped)} members were bad or missing "
                "(see the warnings above)"
            )
