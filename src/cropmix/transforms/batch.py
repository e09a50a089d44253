"""`BatchCropMix` and `CropMixCollate`: CropMix on a batch of tensors, thin over `sample_batch` and `render_batch`.

Every image gets its own N, crops, order, lambdas, cut boxes and permutations, drawn by
`sample_batch` (the draws `CropMix` makes per image, vectorised); the batched kernel
(functional/batch.py) renders them without a loop over images, on any device.

Example (runnable; tests/test_batch.py runs it)::

    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from cropmix.transforms import BatchCropMix, CropMixCollate, retain_freed_memory

    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = TensorDataset(torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8), torch.arange(256) % 10)
    aug = BatchCropMix.from_preset("cifar", size=32)

    # 1. The loader yields uint8 batches; CropMix runs on the device, then the usual flip/normalise.
    for x, y in DataLoader(data, batch_size=128, shuffle=True, pin_memory=device == "cuda"):
        x = aug(x.to(device, non_blocking=True)).float().div_(255)

    # 2. CropMix in the CPU workers, as the collate_fn (each worker draws from its own seeded RNG;
    #    do not give the BatchCropMix a generator here, or every worker repeats the same draws).
    #    retain_freed_memory() before the workers fork keeps each batch's buffers for the next.
    retain_freed_memory()
    for x, y in DataLoader(data, batch_size=128, num_workers=2, collate_fn=CropMixCollate(aug)):
        x = x.to(device).float().div_(255)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision.transforms.v2 import InterpolationMode

from .config import CONFIG_FIELDS, CropMixConfig, ReadOnlyConfig, make_config, preset_for
from .functional import (
    batch_mode,
    check_images,
    check_kernel,
    colour_channels,
    render_batch,
    tensor_has_alpha,
    warn_if_channels_last,
)
from .params import BatchParams
from .sampling import sample_batch, warn_if_generator_in_worker


class BatchCropMix(ReadOnlyConfig, torch.nn.Module):
    """CropMix for a batch of tensors, on CPU or GPU, with parameters drawn per image.

    Same arguments, in the same order, and method as `CropMix` (size, scale and ratio positional as
    in RandomResizedCrop, the rest keyword-only; bilinear or bicubic; each crop is
    resized with torchvision's own weights). Call it on a (B, C, H, W) tensor or
    on a list of (C, Hi, Wi) tensors (sizes may differ); it returns a
    (B, C, h, w) tensor of the input's dtype and device, channels-last when the
    input batch is. uint8, other integer and float dtypes are accepted; the work
    is done in float16 on CUDA for 8-bit and float16 inputs, otherwise in
    float32 (float64 for float64 and 32/64-bit integer inputs), differentiably
    in the pixels. `generator` must be
    a CPU generator: parameters are always drawn on the host. As for `CropMix`,
    do not pass a generator where the transform runs in DataLoader workers (e.g.
    in `CropMixCollate`): every worker would repeat the same draws (a
    RuntimeWarning says so once). The settings are read-only attributes.

    Where it pays: on a GPU, and on a CPU for small images; for ImageNet-sized
    images on a CPU, `CropMix` in DataLoader workers is the faster choice (the
    measurements are in docs/design.md). On a CPU with glibc, call
    `retain_freed_memory()` once: otherwise each call may fault its tens of MB
    of buffers in afresh.
    """

    def __init__(
        self,
        size: int | Sequence[int],
        scale: Sequence[float] = (0.01, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        *,
        num_crops: int | Sequence[int] = (2, 3, 4),
        mix: str | Sequence[str] = "mixup",
        alpha: float = 0.4,
        channel_permute: bool = True,
        p: float = 1.0,
        interpolation: InterpolationMode | str | int = InterpolationMode.BILINEAR,
        antialias: bool = True,
        generator: torch.Generator | None = None,
        kernel: str | None = None,
    ) -> None:
        super().__init__()
        config = make_config(size, scale, ratio, num_crops, mix, alpha, channel_permute, p, interpolation, antialias)
        batch_mode(config.interpolation)
        self.kernel = check_kernel(kernel)
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise TypeError(f"generator must be a CPU torch.Generator or None, got {generator!r}")
        self.config: CropMixConfig = config
        self.generator = generator

    @classmethod
    def from_preset(cls, name: str, size: int | tuple[int, int] | None = None, **overrides: Any) -> BatchCropMix:
        """A `BatchCropMix` with the settings of `preset(name)`; keyword arguments override them."""
        return preset_for(cls, name, size, **overrides)

    def extra_repr(self) -> str:
        settings = [f"{name}={getattr(self.config, name)!r}" for name in CONFIG_FIELDS]
        return ", ".join(settings + ([f"kernel={self.kernel!r}"] if self.kernel else []))

    def make_params(self, images: torch.Tensor | Sequence[torch.Tensor]) -> BatchParams:
        """Draw the parameters of every image of the batch (one `sample_batch` call)."""
        _, heights, widths, _ = check_images(images)
        C = images.shape[1] if isinstance(images, torch.Tensor) else images[0].shape[0]
        warn_if_channels_last(images if isinstance(images, torch.Tensor) else images[0], "BatchCropMix", "(B, C, H, W)")
        warn_if_generator_in_worker(self, self.generator)
        return sample_batch(self.config, heights, widths, colour_channels(C, tensor_has_alpha(C)), C, self.generator)

    def render(self, images: torch.Tensor | Sequence[torch.Tensor], params: BatchParams) -> torch.Tensor:
        """The outputs for given parameters (from `make_params`, or `sample_batch` with this config)."""
        config = self.config
        return render_batch(images, params, config.size, config.antialias, config.interpolation, self.kernel)

    def forward(self, images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Augment a batch: (B, C, H, W) or a list of (C, Hi, Wi) tensors -> (B, C, h, w)."""
        return self.render(images, self.make_params(images))


class CropMixCollate:
    """A DataLoader `collate_fn` running `BatchCropMix` on the images of a batch in the worker.

    Samples are (image, target, ...) tuples or bare images; images are (C, H, W)
    tensors (sizes may differ). Returns (images, targets, ...) with the other
    fields collated by torch's default collate, or just the images.
    """

    def __init__(self, aug: BatchCropMix) -> None:
        if not isinstance(aug, BatchCropMix):
            raise TypeError(f"aug must be a BatchCropMix, got {type(aug).__name__}")
        self.aug = aug

    def __call__(self, samples: Sequence[Any]) -> Any:
        if len(samples) == 0:
            raise ValueError("CropMixCollate got an empty batch")
        if isinstance(samples[0], torch.Tensor):
            return self.aug(list(samples))
        if not isinstance(samples[0], (tuple, list)):
            raise TypeError(
                f"CropMixCollate takes samples that are (C, H, W) image tensors or (image, target, ...) tuples, "
                f"got a {type(samples[0]).__name__}"
                + (" (a dict: have the dataset return (image, label) tuples)" if isinstance(samples[0], dict) else "")
            )
        images = self.aug([s[0] for s in samples])
        rest = torch.utils.data.default_collate([tuple(s[1:]) for s in samples])
        return (images, *rest)
