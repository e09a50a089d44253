"""Decode and augment on the training device: encoded bytes in, normalised float batches out.

`DevicePipeline` takes a batch of encoded images (a `ByteBatch` from cropmix.data.shard_reader, or
lists of 1-D uint8 tensors and labels) and
  1. decodes the 3-channel JPEGs with one batched `decode_jpeg(list, device)` call (torchvision's or
     TorchCodec's, cropmix.data.image_decoders: nvJPEG on CUDA, on a side stream ordered against the
     caller's, `decode_jpegs`; libjpeg on the CPU); other files (PNG, ...) and greyscale or
     CMYK JPEGs are decoded per image on the CPU (`_cpu_decode`, RGB, first frame only) and moved
     to the device;
  2. augments the list of (3, Hi, Wi) uint8 images into one (B, 3, h, w) uint8 batch
     (`make_augment`: BatchCropMix, a random-resized-crop baseline, or resize + centre crop);
  3. flips half the images horizontally (training) and converts to float, normalised with
     (mean, std) given in [0, 1] units, or left in [0, 1] when no statistics are given (cropmix's
     models normalise inside).
A file no decoder reads is an error naming the shard and member, or with `skip_bad` logged, counted
in `skipped` and left out of the batch.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .augment import EVAL_CROP_FRACTION, random_flip
from .image_decoders import decode_jpeg, decode_png
from .image_files import SKIP_HINT
from .image_limits import BadImageError, open_pil, plain_reason
from .shard_tar import check_member_image

log = logging.getLogger("cropmix.data")

AUGMENTS = ("cropmix", "rrc", "center")
# Frame markers whose JPEGs the batched decoder takes: baseline, extended and progressive Huffman.
_BATCH_SOF = (0xC0, 0xC1, 0xC2)
_ALL_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def member_label(name: str, source: str = "") -> str:
    """How a shard member is named in messages: "shard#key", and the file it was written from when known."""
    return f"{name} (from {source!r})" if source else name


def batch_decodable(data: bytes) -> bool:
    """True for a JPEG with 3 colour components and a Huffman frame (read from its header, no decode).

    Greyscale (1 component) and CMYK/YCCK (4) JPEGs, arithmetic-coded or lossless ones, and other
    formats go to the per-image CPU decoder.
    """
    if data[:2] != b"\xff\xd8":
        return False
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return False
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _ALL_SOF:
            return marker in _BATCH_SOF and i + 9 < n and data[i + 9] == 3
        if marker == 0xDA:  # a scan before any frame header
            return False
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return False


class CenterResize:
    """Evaluation crop on the device: resize the short side to size / crop_fraction, then a centre crop."""

    def __init__(self, size: int, crop_fraction: float = EVAL_CROP_FRACTION) -> None:
        self.size, self.resize = size, round(size / crop_fraction)

    def __call__(self, images: Sequence[torch.Tensor]) -> torch.Tensor:
        out = [TF.center_crop(TF.resize(im, self.resize, antialias=True), [self.size]) for im in images]
        return torch.stack(out)


def make_augment(name: str, size: int, *, preset: str = "imagenet", **overrides: Any) -> Callable:
    """The batch augmentation `name` at `size`: list of (3, Hi, Wi) uint8 -> (B, 3, size, size) uint8.

    cropmix: BatchCropMix.from_preset(preset, size, **overrides). rrc: a random resized crop, the
    one-crop case of the same kernel (scale: overrides["scale"], default the preset's range).
    center: resize + centre crop for evaluation.
    """
    from cropmix.transforms import BatchCropMix

    if name == "cropmix":
        return BatchCropMix.from_preset(preset, size, **overrides)
    if name == "rrc":
        kwargs = {k: v for k, v in overrides.items() if k in ("scale", "ratio")}
        return BatchCropMix.from_preset(preset, size, num_crops=1, channel_permute=False, **kwargs)
    if name == "center":
        return CenterResize(size)
    raise ValueError(f"augment name must be one of {AUGMENTS}, got {name!r}")


def _cpu_decode(data: torch.Tensor) -> torch.Tensor:
    """One image on the CPU as (3, H, W) uint8, its first frame only.

    The JPEG and PNG decoders (`image_decoders`) read those (recognised by their first bytes; libpng gives an
    animated PNG's default image); every other file, and a JPEG or PNG they fail on, goes to PIL as
    one of IMAGE_FORMATS (`open_pil`), which decodes the first frame of a GIF, TIFF or WebP only.
    The generic decode_image (of either package) is never used: it decodes every frame of a GIF at once.
    """
    head = data[:8].numpy().tobytes()
    tv_reason = ""
    if head[:3] == b"\xff\xd8\xff" or head == b"\x89PNG\r\n\x1a\n":
        try:
            return decode_jpeg(data) if head[:2] == b"\xff\xd8" else decode_png(data)
        except RuntimeError as tv_error:  # PIL below gets a say; its error names both
            tv_reason = f"{plain_reason(tv_error)} (PIL: "
    try:
        with open_pil(io.BytesIO(data.numpy().tobytes()), "image") as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as pil_error:
        reason = plain_reason(pil_error).removeprefix("image: ")
        raise ValueError(f"{tv_reason}{reason})" if tv_reason else reason) from pil_error
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def decode_jpegs(data: list[torch.Tensor], device: torch.device, side: Any = None) -> list[torch.Tensor]:
    """Batched RGB `decode_jpeg` of CPU byte tensors onto `device`.

    On CUDA, `side` (a `torch.cuda.Stream` used for nothing else) is the stream the outputs are
    allocated on. nvJPEG writes them from its own stream, not ordered after the work queued on the
    caller's, so memory the caller freed while kernels still read it must not be handed to it: the
    side stream's pool holds only decoded images, each recorded on the caller's stream
    (`record_stream`), so its memory goes back to that pool only once the caller's queued work is
    done; the caller's stream then waits for the decode (`wait_stream`). No host synchronisation.
    """
    if device.type != "cuda":
        return decode_jpeg(data, device)
    if side is None:
        raise ValueError("side must be a torch.cuda.Stream for a CUDA decode, got None")
    current = torch.cuda.current_stream(device)
    with torch.cuda.stream(side):
        decoded = decode_jpeg(data, device)
    current.wait_stream(side)
    for image in decoded:
        image.record_stream(current)
    return decoded


class DevicePipeline:
    """Encoded batch -> (normalised float images (B, 3, h, w), int64 labels), both on `device`.

    `augment`: from `make_augment` (or any callable taking a list of (3, Hi, Wi) uint8 tensors on
    `device`). `mean`/`std` in [0, 1] units (e.g. ImageNet's); None keeps images in [0, 1].
    """

    def __init__(
        self,
        augment: Callable[[list[torch.Tensor]], torch.Tensor],
        *,
        device: str | torch.device = "cpu",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        flip: bool = True,
        skip_bad: bool = False,
        channels_last: bool = False,
    ) -> None:
        if (mean is None) != (std is None):
            raise ValueError(f"mean and std must both be given or both be None, got mean={mean!r}, std={std!r}")
        self.augment, self.device = augment, torch.device(device)
        self.flip, self.skip_bad, self.channels_last = flip, skip_bad, channels_last
        mean_t = torch.tensor(mean if mean is not None else [0.0], dtype=torch.float32)
        std_t = torch.tensor(std if std is not None else [1.0], dtype=torch.float32)
        if (std_t <= 0).any():
            raise ValueError(f"std must be > 0, got {std!r}")
        # x / 255 normalised is x * scale - shift.
        self.scale = (1.0 / (255.0 * std_t)).view(-1, 1, 1).to(self.device)
        self.shift = (mean_t / std_t).view(-1, 1, 1).to(self.device)
        self.skipped: list[str] = []
        self._side = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def decode(
        self,
        images: Sequence[torch.Tensor],
        keys: Sequence[str],
        jpeg: Sequence[bool] | None = None,
        sources: Sequence[str] | None = None,
    ) -> tuple[list[torch.Tensor], list[int]]:
        """Decode on the device: (the (3, H, W) uint8 images, the positions of the samples they are).
        `sources` (the files the members were written from, "" for unknown) are named in errors."""
        if jpeg is None:  # bytes not from the shard reader, which checks each member's header: checked here
            images = [self._checked(im, keys[i], sources[i] if sources else "") for i, im in enumerate(images)]
            jpeg = [im is not None and batch_decodable(im.numpy().tobytes()[:65536]) for im in images]
        out: list[torch.Tensor | None] = [None] * len(images)
        fast = [i for i, ok in enumerate(jpeg) if ok]
        if fast:
            try:
                decoded = decode_jpegs([images[i] for i in fast], self.device, self._side)
                for i, image in zip(fast, decoded, strict=True):
                    out[i] = image
            except RuntimeError as error:  # one bad file fails the whole call: decode those images one by one
                log.debug("batched JPEG decode failed (%s); decoding one by one", error)
        kept = []
        for i, image in enumerate(out):
            if image is None and images[i] is not None:
                image = self._decode_one(images[i], keys[i], jpeg[i], sources[i] if sources else "")
            if image is not None:
                out[i] = image
                kept.append(i)
        return [out[i] for i in kept], kept

    def _decode_one(self, data: torch.Tensor, key: str, jpeg: bool, source: str) -> torch.Tensor | None:
        if jpeg and self.device.type != "cpu":
            try:
                return decode_jpegs([data], self.device, self._side)[0]
            except RuntimeError:
                pass  # the CPU decoders below get a say, and name the error if they fail too
        try:
            return _cpu_decode(data).to(self.device, non_blocking=True)
        except ValueError as error:
            return self._bad(key, source, str(error), error)

    def _checked(self, data: torch.Tensor, key: str, source: str) -> torch.Tensor | None:
        """`data` if its header passes `check_member_image` (16-bit images as 8-bit PNG bytes), else None."""
        where = member_label(key, source)
        raw = data.numpy().tobytes()
        try:
            checked = check_member_image(raw, where)
        except BadImageError as error:
            return self._bad(key, source, str(error).removeprefix(f"{where}: "), error)
        return data if checked is raw else torch.frombuffer(bytearray(checked), dtype=torch.uint8)

    def _bad(self, key: str, source: str, reason: str, error: Exception) -> None:
        """A member no decoder may take: an error naming it, or with `skip_bad` logged and counted in `skipped`."""
        if not self.skip_bad:
            raise ValueError(f"cannot decode shard member {member_label(key, source)}: {reason} {SKIP_HINT}") from error
        log.warning("skipping shard member %s: cannot decode it: %s", member_label(key, source), reason)
        self.skipped.append(key)

    def finish(self, images: torch.Tensor) -> torch.Tensor:
        """Flip (when training) and normalise a (B, 3, h, w) uint8 batch on the device."""
        if self.flip:
            images = random_flip(images)
        out = images.float().mul_(self.scale).sub_(self.shift)
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def __call__(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A `ByteBatch` (or anything with images, labels and keys; jpeg and sources optional) -> (images, labels)
        on the device."""
        decoded, kept = self.decode(
            batch.images, batch.keys, getattr(batch, "jpeg", None), getattr(batch, "sources", None)
        )
        if not decoded:
            raise ValueError(f"no image of the batch could be decoded (first member: {batch.keys[:1]})")
        labels = batch.labels if len(kept) == len(batch.labels) else batch.labels[torch.tensor(kept)]
        images = self.finish(self.augment(decoded))
        return images, labels.to(self.device, non_blocking=True)
