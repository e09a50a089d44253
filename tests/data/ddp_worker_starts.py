"""Run under torchrun (2 CPU processes): DDP steps, each followed by a fresh DataLoader worker started the
way cropmix's loaders start theirs (`worker_options`), LOOPS times; prints "done" per rank when all ran."""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from cropmix.data.processes import worker_options


def main() -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    layers = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 2))
    model = torch.nn.parallel.DistributedDataParallel(layers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(int(os.environ.get("LOOPS", "300"))):
        for _ in range(3):  # gloo's threads run the gradient all-reduce while Python goes on
            loss = model(torch.randn(8, 16)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            model(torch.randn(8, 16))  # the buffers' broadcast, as evaluation starts
        for _ in DataLoader(list(range(4)), num_workers=1, **worker_options()):
            pass
    print(f"rank {dist.get_rank()} done", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
