"""How often a batched nvJPEG decode overwrites memory that kernels queued on the caller's stream still read:
torchvision's `decode_jpeg(list, device="cuda")` as it is, against cropmix's `decode_jpegs` (the same decode on
a side stream, its outputs recorded on the caller's stream), in the same run.

Each iteration fills tensors with ones, queues tens of milliseconds of matrix products on the caller's stream
and then one sum per tensor, frees the tensors while those sums still wait, and decodes a batch whose outputs
are as large as the freed tensors. A decoder handed a freed block writes pixels into it before the sum has read
it: the sum comes out wrong. Needs CUDA (nvJPEG's hardware decoder, on A100, H100, H200, writes regardless of
the stream it is given).

    python benchmarks/nvjpeg_race.py --iterations 50
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from cropmix.data.device_pipeline import decode_jpegs

HEIGHT, WIDTH, BATCH = 480, 640, 8


def jpegs(n: int = BATCH) -> list[torch.Tensor]:
    """`n` baseline JPEGs of noise, HEIGHT x WIDTH (what nvJPEG's hardware path decodes)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(buffer, format="JPEG")
        out.append(torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8))
    return out


def corrupted(decode: Callable[[list[torch.Tensor]], list[torch.Tensor]], iterations: int, device: str) -> int:
    """Iterations in which a sum queued before the decode read something other than the ones it was given."""
    data = jpegs()
    numel = 3 * HEIGHT * WIDTH
    busy = torch.randn(4096, 4096, device=device)
    bad = 0
    for _ in range(iterations):
        victims = [torch.ones(numel, dtype=torch.uint8, device=device) for _ in data]
        torch.cuda.synchronize(device)
        for _ in range(10):  # queued work that the sums below wait for
            busy = torch.nn.functional.normalize(busy @ busy, dim=1)
        sums = [v.sum(dtype=torch.int64) for v in victims]
        del victims  # freed on the caller's stream while the sums are still queued
        decoded = decode(data)
        torch.cuda.synchronize(device)
        bad += any(int(s) != numel for s in sums)
        del decoded
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("nvjpeg_race: needs a CUDA device (torch sees none)")
    device = torch.device(args.device)
    side = torch.cuda.Stream(device)
    arms = {
        "torchvision decode_jpeg (caller's stream)": lambda d: decode_jpeg(d, mode=ImageReadMode.RGB, device=device),
        "cropmix decode_jpegs (side stream)": lambda d: decode_jpegs(d, device, side),
    }
    print(f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}; batch of {BATCH} {WIDTH}x{HEIGHT} JPEGs")
    for name, decode in arms.items():
        print(f"{name}: {corrupted(decode, args.iterations, args.device)}/{args.iterations} iterations corrupted")


if __name__ == "__main__":
    from results_file import recorded

    with recorded("nvjpeg_race"):
        main()
