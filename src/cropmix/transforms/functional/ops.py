"""`count_ops`: the aten ops a call issues, the figure that tells whether a GPU batch is host-bound.

Each aten op a call dispatches costs the host a few microseconds (a kernel launch, or bookkeeping
for a view), so a batch of a few hundred ops on a fast GPU waits on Python rather than on the
device. Counted on meta tensors, the device code path runs without data and without a device:
the count is exact and the same on any machine, and any read of a device value on the host
fails there. tests/test_kernel_ops.py holds the batched kernel to its targets;
benchmarks/batch_throughput.py prints the counts beside the host time per batch.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

# aten ops that read a device value on the host (`.item()`, `.tolist()`, `bool(t)`, ...).
HOST_READS = ("aten._local_scalar_dense",)


@dataclass
class OpCounts:
    """Ops issued by one call: kernels (ops that compute or allocate), views (metadata only), the
    copies from the host to another device, the reads of device values on the host, and per op."""

    kernels: int = 0
    views: int = 0
    host_to_device: int = 0
    host_reads: int = 0
    by_op: Counter = field(default_factory=Counter)


class _Counting(TorchDispatchMode):
    def __init__(self, counts: OpCounts) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        counts = self.counts
        counts.by_op[name] += 1
        if func.is_view:
            counts.views += 1
        else:
            counts.kernels += 1
        inputs = {t.device.type for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        outputs = {t.device.type for t in tree_leaves(out) if isinstance(t, torch.Tensor)}
        if "cpu" in inputs and outputs - {"cpu"}:
            counts.host_to_device += 1
        if name in HOST_READS or ("cpu" in outputs and inputs - {"cpu"}):
            counts.host_reads += 1
        return out


def count_ops(fn: Callable[[], Any]) -> tuple[Any, OpCounts]:
    """fn() and the aten ops it issued."""
    counts = OpCounts()
    with _Counting(counts):
        result = fn()
    return result, counts
