"""JPEG and PNG bytes to uint8 tensors, by torchvision.io's decoders or, where it has none, TorchCodec's.

torchvision 0.29 deprecated its image decoders in favour of TorchCodec's (from 0.16: the same
libjpeg-turbo, libpng and nvJPEG, the same pixels, a compatible API). torchvision's are used while it
has them, the path tested on CPUs and GPUs; with a torchvision that no longer has them, TorchCodec's take
over, so the device stage and the shard checks keep working. `decoder_backend()` says which one runs.
Both are imported on first use: importing cropmix.data decodes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, NamedTuple

import torch

__all__ = ["decode_jpeg", "decode_png", "decoder_backend"]


class _Decoders(NamedTuple):
    backend: str
    jpeg: Callable[..., Any]  # (data, device) -> RGB uint8 (a tensor, or a list for a list)
    png: Callable[..., torch.Tensor]  # (data, keep_depth) -> RGB uint8, or every channel at its own depth


@lru_cache(maxsize=1)
def _decoders() -> _Decoders:
    try:
        from torchvision.io import ImageReadMode
        from torchvision.io import decode_jpeg as tv_jpeg
        from torchvision.io import decode_png as tv_png
    except ImportError as tv_error:
        return _torchcodec_decoders(tv_error)

    def jpeg(data: Any, device: Any) -> Any:
        return tv_jpeg(data, mode=ImageReadMode.RGB, device=device)

    def png(data: torch.Tensor, keep_depth: bool) -> torch.Tensor:
        image = tv_png(data, mode=ImageReadMode.UNCHANGED if keep_depth else ImageReadMode.RGB)
        if keep_depth or image.dtype == torch.uint8:
            return image
        # A 16-bit PNG stays 16-bit even in RGB mode: rounded to 8 bits, as TorchCodec's RGB mode gives it.
        return ((image.to(torch.int32) * 255 + 32767) // 65535).to(torch.uint8)

    return _Decoders("torchvision", jpeg, png)


def _torchcodec_decoders(tv_error: ImportError) -> _Decoders:
    try:
        from torchcodec.decoders import decode_jpeg as tc_jpeg
        from torchcodec.decoders import decode_png as tc_png
    except ImportError as tc_error:
        raise ImportError(
            f"decoding images needs torchvision.io's decoders, which this torchvision lacks ({tv_error}), or "
            f"TorchCodec's ({tc_error}): pip install torchcodec"
        ) from tc_error

    def jpeg(data: Any, device: Any) -> Any:
        return tc_jpeg(data, mode="RGB", device=device)

    def png(data: torch.Tensor, keep_depth: bool) -> torch.Tensor:
        return tc_png(data, mode="UNCHANGED", output_dtype="auto") if keep_depth else tc_png(data, mode="RGB")

    return _Decoders("torchcodec", jpeg, png)


def decoder_backend() -> str:
    """The package whose decoders run: "torchvision" or "torchcodec"."""
    return _decoders().backend


def decode_jpeg(data: torch.Tensor | list[torch.Tensor], device: torch.device | str = "cpu") -> Any:
    """RGB (3, H, W) uint8 of a 1-D uint8 CPU tensor of JPEG bytes, or a list of them for a list (one batched
    call: nvJPEG on CUDA), on `device`. RuntimeError for bytes the decoder cannot read."""
    return _decoders().jpeg(data, device)


def decode_png(data: torch.Tensor, keep_depth: bool = False) -> torch.Tensor:
    """RGB (3, H, W) uint8 of a 1-D uint8 tensor of PNG bytes (its default image); `keep_depth`: its own
    channels at its own depth instead (uint16 for a 16-bit PNG). RuntimeError for bytes it cannot read."""
    return _decoders().png(data, keep_depth)
