"""The peak memory of BatchCropMix's CUDA code path, simulated on the CPU (no GPU needed).

The target is <= 1 GB of GPU memory at B = 256 x 224 from 375x500 uint8. Without a GPU, this
runs the exact code path a CUDA device takes (the separable passes with `--method`, chunks sized
for CUDA, float16 work) on the CPU and tracks the bytes of every live tensor storage
created inside the call (a TorchDispatchMode: each op's outputs are counted until their last
Python reference dies), which is what `torch.cuda.max_memory_allocated` measures on a device,
minus the allocator's rounding and any workspace a CUDA kernel allocates internally (cuBLAS).
The input batch itself is not counted (it is on the device already). A figure from a real device
replaces this one: benchmarks/batch_throughput.py --device cuda prints "Batch peak GB".

    python benchmarks/cuda_memory_on_cpu.py
"""

from __future__ import annotations

import argparse
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import cropmix.transforms.functional.resample as resample
from cropmix.transforms import BatchCropMix, render_batch


class LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensor storages created under this mode and still referenced from Python."""

    def __init__(self, existing: torch.Tensor | None = None) -> None:
        super().__init__()
        # The storage of `existing` (the input batch) is not counted, whatever view of it an op makes.
        self.existing = None if existing is None else existing.untyped_storage().data_ptr()
        self.refs: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = self.peak = 0

    def _drop(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.live -= self.sizes.pop(key)
            del self.refs[key]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and tensor.device.type != "meta":
                storage = tensor.untyped_storage()
                key = storage.data_ptr()
                if key == self.existing:
                    continue
                if key not in self.refs:
                    self.refs[key], self.sizes[key] = 0, storage.nbytes()
                    self.live += storage.nbytes()
                    self.peak = max(self.peak, self.live)
                self.refs[key] += 1
                weakref.finalize(tensor, self._drop, key)
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--method", choices=("dense", "gather"), default=resample.DEVICE_METHOD)
    parser.add_argument("--preset", default="imagenet")
    args = parser.parse_args()
    images = torch.randint(0, 256, (args.batch, 3, 375, 500), dtype=torch.uint8)
    for mix in ("mixup", "cutmix"):
        aug = BatchCropMix.from_preset(args.preset, size=224, mix=mix, generator=torch.Generator().manual_seed(0))
        params = aug.make_params(images)
        # The CUDA path on the CPU: CUDA's chunks, half precision, the kernel asked for.
        with LiveBytes(images) as tracker:
            out = render_batch(images, params, (224, 224), kernel=args.method, device_type="cuda")
        print(
            f"B={args.batch} 375x500 -> 224, preset {args.preset}, mix {mix}, method {args.method}, float16: "
            f"peak of live tensors {tracker.peak / 1e9:.2f} GB (output {out.numel() * out.element_size() / 1e9:.3f} GB)"
        )


if __name__ == "__main__":
    from results_file import recorded

    with recorded("cuda_memory_on_cpu"):
        main()
