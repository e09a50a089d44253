"""A training or evaluation loader over tar shards that yields batches ready for the model, on the device.

`webdataset_loader` joins the shard reader (bytes and labels from CPU workers, each image exactly
once per epoch over all ranks) and the device pipeline (decode, augmentation by name, flip,
float conversion on the training device). Its batches are (float images (B, 3, size, size),
int64 labels), both on `device`, so a training loop written for DataLoaders uses it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .augment import AugmentSpec
from .batching import SHUFFLE_BUFFER, Batching
from .device_pipeline import DevicePipeline
from .shard_reader import ShardLoader
from .shards import ShardSplit


class DeviceBatches:
    """Iterate a `ShardLoader` through a `DevicePipeline`: (images, labels) on the device per batch."""

    def __init__(self, loader: ShardLoader, pipeline: DevicePipeline) -> None:
        self.loader, self.pipeline = loader, pipeline

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    @property
    def skipped(self) -> list[str]:
        """Bad members met so far: by the readers (no image, bad label) and by the decoders."""
        return self.loader.skipped + self.pipeline.skipped

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batch in self.loader:
            yield self.pipeline(batch)


class DeviceStage:
    """Any loader of (uint8 images (B, C, H, W), labels) batches, augmented on the pipeline's device: the
    pipeline's augmentation, flip and float conversion run on whole batches there (as timm's
    PrefetchLoader wraps any loader). For data in memory, whose batches workers only gather.

    On CUDA the next batch is copied on a side stream while the current one is augmented and trained
    on; the caller's stream waits for each copy and is recorded on its tensors (so their memory is not
    reused before the work queued on them is done). No host synchronisation."""

    def __init__(self, loader: Any, pipeline: DevicePipeline) -> None:
        self.loader, self.pipeline = loader, pipeline

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        device = self.pipeline.device
        if device.type == "cuda":
            yield from self._prefetched(device)
            return
        for images, labels in self.loader:
            yield self._augmented(images.to(device), labels.to(device))

    def _augmented(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.pipeline.finish(self.pipeline.augment(images)), labels

    def _prefetched(self, device: torch.device) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        side = torch.cuda.Stream(device)
        batches = iter(self.loader)

        def copy_next() -> tuple[torch.Tensor, torch.Tensor] | None:
            batch = next(batches, None)
            if batch is None:
                return None
            with torch.cuda.stream(side):
                return batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)

        ahead = copy_next()
        while ahead is not None:
            current = torch.cuda.current_stream(device)
            current.wait_stream(side)
            for tensor in ahead:
                tensor.record_stream(current)
            images, labels = ahead
            ahead = copy_next()  # queued on the side stream: it overlaps this batch's work
            yield self._augmented(images, labels)


def webdataset_loader(
    split: ShardSplit,
    augment: AugmentSpec,
    batching: Batching,
    *,
    device: str | torch.device,
    num_classes: int | None = None,
    normalise: tuple[Sequence[float], Sequence[float]] | None = None,
    channels_last: bool = False,
    shuffle_buffer: int = SHUFFLE_BUFFER,
) -> DeviceBatches:
    """Batches of `split` for training (`batching.train`: shuffled, equal batch counts on every rank,
    `augment`'s crop + flip) or evaluation (in order, every image once over all ranks, resize + centre
    crop to `augment.size`), decoded and augmented on `device`.

    Images come out as floats in [0, 1] (cropmix's models normalise inside), or normalised with
    `normalise` = (mean, std) when given. Call `set_epoch(epoch)` before each training epoch.
    """
    loader = ShardLoader(split, batching, num_classes=num_classes, shuffle_buffer=shuffle_buffer)
    train = batching.train
    crop = augment.for_device() if train else AugmentSpec("none", augment.size).for_device()
    mean, std = normalise if normalise is not None else (None, None)
    pipeline = DevicePipeline(
        crop, device=device, mean=mean, std=std, flip=train and augment.base != "none", skip_bad=batching.skip_bad,
        channels_last=channels_last,
    )  # fmt: skip
    return DeviceBatches(loader, pipeline)
