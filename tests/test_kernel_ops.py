"""The batched kernel's CUDA code path issues few ops, one host->device copy and no host reads.

Counted on meta tensors (`count_ops`): the CUDA path's choices (kernel, chunks, float16 work) run
without a device and without data, so the counts are exact on any machine. A GPU batch of a few
hundred ops is host-bound (benchmarks/batch_throughput.py prints the counts beside the host time).
"""

from __future__ import annotations

import pytest
import torch

from cropmix.transforms import BatchCropMix, render_batch
from cropmix.transforms.functional.ops import count_ops

# (preset, output size, batch, source size, most kernels per batch)
TARGETS = [("imagenet", 224, 256, (375, 500), 100), ("cifar", 32, 1024, (32, 32), 60)]


def cuda_path(images, mix: str, preset: str, size: int, kernel: str | None = None):
    aug = BatchCropMix.from_preset(preset, size=size, mix=mix, generator=torch.Generator().manual_seed(0))
    params = aug.make_params(images)
    return count_ops(lambda: render_batch(images, params, (size, size), kernel=kernel, device_type="cuda"))


@pytest.mark.parametrize("kernel", ["dense", "gather"])
@pytest.mark.parametrize("mix", ["mixup", "cutmix", ("mixup", "cutmix")])
@pytest.mark.parametrize("preset, size, batch, source, most", TARGETS)
def test_a_cuda_batch_takes_few_ops_one_copy_and_no_host_reads(preset, size, batch, source, most, mix, kernel):
    images = torch.empty(batch, 3, *source, dtype=torch.uint8, device="meta")
    out, counts = cuda_path(images, mix, preset, size, kernel)
    assert out.shape == (batch, 3, size, size) and out.dtype == torch.uint8
    assert counts.kernels <= most, counts.by_op.most_common(10)
    assert counts.host_to_device == 1 and counts.host_reads == 0


@pytest.mark.parametrize("mix", ["mixup", "cutmix"])
def test_a_list_is_padded_in_the_same_copy_without_host_reads(mix):
    images = [torch.empty(3, 300 + 7 * i, 500 - 5 * i, dtype=torch.uint8, device="meta") for i in range(64)]
    out, counts = cuda_path(images, mix, "imagenet", 224)
    assert out.shape == (64, 3, 224, 224)
    assert counts.host_to_device == 1 and counts.host_reads == 0
    assert counts.kernels <= 100 and not any("nested" in op or "padded" in op for op in counts.by_op)


def test_the_counter_sees_copies_and_host_reads():
    _, counts = count_ops(lambda: (torch.ones(3).to("meta"), torch.ones(3).sum().item(), torch.ones(2)[0]))
    assert counts.host_to_device == 1 and counts.host_reads == 1 and counts.views >= 1 and counts.kernels >= 4
