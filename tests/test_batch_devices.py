"""BatchCropMix on CUDA (run where there is one) and CUDA's code path on the CPU, under autocast, and the
one dispatcher that chooses its kernel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import psnr, seeded, texture

from cropmix.transforms import BatchCropMix, render, render_batch

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
@pytest.mark.parametrize("method", ["dense", "gather"])
@pytest.mark.parametrize("mix", [("mixup", "cutmix"), "mixup"])  # views and mixing, or Mixup folded in
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu_without_syncs(dtype, mix, method):
    images = [texture(100 + 9 * i, 140 - 7 * i, i) for i in range(6)]
    images = [(img if dtype == torch.uint8 else img / 255).to(dtype) for img in images]
    aug = BatchCropMix(32, mix=mix, generator=seeded(22))
    params = aug.make_params(images)
    cpu = render_batch(images, params, (32, 32)).float()  # the CPU's own kernel
    gpu_images = [img.cuda() for img in images]
    render_batch(gpu_images, params, (32, 32), kernel=method)  # warm-up: allocator, kernels
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        gpu = render_batch(gpu_images, params, (32, 32), kernel=method)
        batch = render_batch(
            torch.stack(gpu_images[:1] * 3).contiguous(memory_format=torch.channels_last),
            aug.make_params(gpu_images[:1] * 3),
            (32, 32),
            kernel=method,
        )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert gpu.dtype == dtype and gpu.is_cuda and batch.is_contiguous(memory_format=torch.channels_last)
    scale = 1 if dtype == torch.uint8 else 255
    assert psnr(gpu.float().cpu() * scale, cpu * scale) > 40


def _autocast_cases():
    cases = [("cpu", torch.bfloat16, dtype) for dtype in (torch.uint8, torch.float32, torch.bfloat16)]
    cases += [pytest.param("cuda", torch.float16, dtype, marks=cuda) for dtype in (torch.uint8, torch.float32)]
    cases += [pytest.param("cuda", torch.bfloat16, dtype, marks=cuda) for dtype in (torch.uint8, torch.bfloat16)]
    return cases


@pytest.mark.parametrize("mix", ["mixup", "cutmix", ("mixup", "cutmix")])
@pytest.mark.parametrize("device, autocast_dtype, dtype", _autocast_cases())
def test_autocast_leaves_the_kernel_its_own_dtypes(device, autocast_dtype, dtype, mix, cpu_kernel):
    """Inside autocast the output is the input's dtype and the values are those rendered outside it."""
    images = torch.stack([texture(40, 50, i) for i in range(5)]).to(device)
    images = images.to(dtype) if dtype == torch.uint8 else (images / 255).to(dtype)
    aug = BatchCropMix(24, mix=mix, generator=seeded(50), kernel=cpu_kernel if device == "cpu" else None)
    params = aug.make_params(images)
    plain = aug.render(images, params)
    with torch.autocast(device, dtype=autocast_dtype):
        out = aug.render(images, params)
        listed = aug.render(list(images), params)
    assert out.dtype == dtype and listed.dtype == dtype
    tolerance = 1 if dtype == torch.uint8 else 1e-2
    assert torch.equal(out, plain) and (listed.float() - plain.float()).abs().max() <= tolerance


@pytest.mark.parametrize("kernel", ["dense", "gather"])
@pytest.mark.parametrize("mix", ["mixup", "cutmix", ("mixup", "cutmix")])
def test_the_cuda_code_path_on_the_cpu_matches_the_cpu_path(kernel, mix, monkeypatch):
    """CUDA's choices (float16 work, chunks by bytes, the kernel) run on CPU tensors: the same outputs
    within half precision, for a list in several padded chunks and for a batch."""
    import cropmix.transforms.functional.batch as batch_kernel

    monkeypatch.setattr(batch_kernel, "DEVICE_CHUNK_BYTES", 200_000)  # several chunks of a list and of a batch
    images = [texture(60 + 9 * i, 90 - 7 * i, i).to(torch.uint8) for i in range(7)]
    aug = BatchCropMix(24, mix=mix, generator=seeded(23))
    for batch in (images, torch.stack([img[:, :50, :40] for img in images])):
        params = aug.make_params(batch)
        cpu = render_batch(batch, params, (24, 24)).float()
        cuda_path = render_batch(batch, params, (24, 24), kernel=kernel, device_type="cuda")
        assert cuda_path.dtype == torch.uint8 and psnr(cuda_path.float(), cpu) > 40


def test_the_one_dispatcher_renders_batch_params_with_the_batched_kernel():
    x = torch.randint(0, 256, (4, 3, 30, 30), dtype=torch.uint8)
    aug = BatchCropMix(12, generator=seeded(33))
    params = aug.make_params(x)
    assert torch.equal(render(x, params, size=(12, 12)), aug.render(x, params))
    with pytest.raises(TypeError, match="size"):
        render(x, params)


def test_cpu_dispatch_between_the_batched_passes_and_the_per_crop_kernel():
    """Small images take the batched passes; large outputs from large sources torch's kernel per crop;
    other devices the separable passes; a kernel named is the one that runs."""
    from cropmix.transforms.functional import select_batch_kernel

    cases = [((32, 32), False), ((64, 48), False), ((128, 32), False), ((128, 112), True), ((256, 64), True)]
    for (source, out), per_crop in cases:
        sizes = np.array([source]), np.array([source])
        assert select_batch_kernel("cpu", (out, out), *sizes) == ("per_crop" if per_crop else "gather"), (source, out)
        assert select_batch_kernel("cuda", (out, out), *sizes) in ("dense", "gather")
    x = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    aug = BatchCropMix(48, generator=seeded(40))
    params = aug.make_params(x)
    per_crop, passes = (render_batch(x, params, (48, 48), kernel=k).float() for k in ("per_crop", "gather"))
    assert psnr(per_crop, passes) > 40 and not torch.equal(per_crop, passes)  # two kernels, one output
    with pytest.raises(ValueError, match=r"kernel must be one of \['per_crop', 'gather', 'dense'\]"):
        BatchCropMix(8, kernel="sparse")
