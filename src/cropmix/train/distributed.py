"""DDP set-up from torchrun's environment (gloo on CPU, nccl on CUDA), the device of each process, and
metric reduction. Training and self-supervised pre-training both use these: `info =
init_distributed(uses_cuda(name))`, then `device = resolve_device(name, info)`."""

from __future__ import annotations

import datetime
import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cropmix.data.processes import end_with_parent


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


# How long a collective waits for a stopped or lost rank before the job ends with an error.
DDP_TIMEOUT_S = 600
TIMEOUT_ENV = "CROPMIX_DDP_TIMEOUT_S"


def ddp_timeout() -> datetime.timedelta:
    """The process-group timeout: DDP_TIMEOUT_S, or the seconds in $CROPMIX_DDP_TIMEOUT_S (a positive number)."""
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return datetime.timedelta(seconds=DDP_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not (seconds > 0 and seconds < float("inf")):
        raise ValueError(f"{TIMEOUT_ENV} must be a positive number of seconds, got {text!r}")
    return datetime.timedelta(seconds=seconds)


DEVICE_NAMES = ("auto", "cpu", "cuda", "cuda:N")
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def check_device_name(name: object) -> None:
    """Raise ValueError unless `name` is one of "auto", "cpu", "cuda" or "cuda:N"."""
    if not (isinstance(name, str) and (name in ("auto", "cpu", "cuda") or _CUDA_INDEX.fullmatch(name))):
        raise ValueError(f"device must be one of {DEVICE_NAMES}, got {name!r}")


def uses_cuda(name: str) -> bool:
    """Whether device `name` ends up on a GPU here ("auto": when CUDA is available)."""
    check_device_name(name)
    return name != "cpu" and torch.cuda.is_available()


def init_distributed(use_cuda: bool) -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); a no-op otherwise. Collectives
    time out after `ddp_timeout()`, and the process ends with its launcher (`end_with_parent`).
    Follow it with `resolve_device`, which picks (and selects) this process's GPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    timeout = ddp_timeout()
    end_with_parent()
    if use_cuda:
        torch.cuda.set_device(local_rank)  # before NCCL starts, so each process talks from its own GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    return DistInfo(rank, world, local_rank)


def resolve_device(name: str, info: DistInfo | None = None) -> torch.device:
    """The device of this process for `name` ("auto" | "cpu" | "cuda" | "cuda:N").

    "auto" is CUDA when available, else the CPU. On CUDA, a process under torchrun (`info.enabled`)
    takes GPU LOCAL_RANK (so "cuda:N" is refused there), a single process GPU 0 or N; the GPU is made
    current with torch.cuda.set_device. Raises ValueError for an unknown name, for CUDA when it is not
    available, and for an index past the GPUs present.
    """
    check_device_name(name)
    info = info or DistInfo()
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
    match = _CUDA_INDEX.fullmatch(name)
    if match and info.enabled:
        raise ValueError(f"device {name!r}: under torchrun each process uses GPU LOCAL_RANK; pass 'cuda' or 'auto'")
    index = int(match.group(1)) if match else (info.local_rank if info.enabled else 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: there are only {torch.cuda.device_count()} CUDA devices")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def all_reduce_sum(values: list[float], info: DistInfo, device: torch.device) -> list[float]:
    """Sum `values` over all ranks (float64)."""
    if not info.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def shutdown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
