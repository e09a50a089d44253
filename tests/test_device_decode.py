"""`decode_jpegs`: on the CPU a plain batched decode; on CUDA (simulated with stand-in streams) the decode
runs on the side stream, then the caller's stream waits for it and is recorded on every output."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import LoggedStream, LoggedTensor, simulate_cuda_streams
from PIL import Image

from cropmix.data import device_pipeline
from cropmix.data.device_pipeline import decode_jpegs


def jpeg(seed: int) -> torch.Tensor:
    pixels = np.random.default_rng(seed).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=95)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def test_cpu_decode_is_the_plain_batched_decode() -> None:
    data = [jpeg(0), jpeg(1)]
    out = decode_jpegs(data, torch.device("cpu"))
    assert [tuple(x.shape) for x in out] == [(3, 12, 20)] * 2 and out[0].dtype == torch.uint8
    for image, blob in zip(out, data, strict=True):
        reference = np.asarray(Image.open(io.BytesIO(blob.numpy().tobytes())).convert("RGB"))
        assert (image.permute(1, 2, 0).int() - torch.from_numpy(reference.copy()).int()).abs().float().mean() < 3


@pytest.fixture
def simulated_cuda(monkeypatch):
    """torch.cuda's stream functions and the decoder replaced by stand-ins; returns (log, side stream)."""
    log: list = []
    active = simulate_cuda_streams(monkeypatch, log)

    def decode(data, device):
        log.append(("decode", active[-1].name, len(data), device.type))
        return [LoggedTensor(i, log) for i in range(len(data))]

    monkeypatch.setattr(device_pipeline, "decode_jpeg", decode)
    return log, LoggedStream("side", log)


def test_cuda_decode_runs_on_the_side_stream_and_orders_the_callers_stream(simulated_cuda) -> None:
    log, side = simulated_cuda
    out = decode_jpegs([jpeg(0), jpeg(1), jpeg(2)], torch.device("cuda"), side)
    assert [x.name for x in out] == [0, 1, 2]
    assert log == [
        ("decode", "side", 3, "cuda"),
        ("wait", "caller", "side"),
        ("record", 0, "caller"),
        ("record", 1, "caller"),
        ("record", 2, "caller"),
    ]


def test_cuda_decode_needs_a_side_stream(simulated_cuda) -> None:
    log, _ = simulated_cuda
    with pytest.raises(ValueError, match="side must be a torch.cuda.Stream"):
        decode_jpegs([jpeg(0)], torch.device("cuda"))
    assert log == []  # refused before decoding on the caller's stream


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_decode_never_overwrites_memory_that_queued_kernels_still_read(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from nvjpeg_race import corrupted

    side = torch.cuda.Stream()
    assert corrupted(lambda data: decode_jpegs(data, torch.device("cuda"), side), 20, "cuda") == 0
