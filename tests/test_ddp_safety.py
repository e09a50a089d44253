"""DDP: a process-group timeout, and workers that end with their launcher."""

from __future__ import annotations

import datetime
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cropmix.train import distributed


def test_the_process_group_gets_a_timeout(monkeypatch):
    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", lambda backend, **kw: seen.update(kw))
    monkeypatch.setattr(distributed, "end_with_parent", lambda: seen.setdefault("watched", True))
    distributed.init_distributed(False)
    assert seen["timeout"] == datetime.timedelta(seconds=distributed.DDP_TIMEOUT_S) and seen["watched"]
    monkeypatch.setenv("CROPMIX_DDP_TIMEOUT_S", "42")
    distributed.init_distributed(False)
    assert seen["timeout"] == datetime.timedelta(seconds=42)


@pytest.mark.parametrize("bad", ["0", "-1", "inf", "soon"])
def test_a_bad_timeout_is_refused_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv("CROPMIX_DDP_TIMEOUT_S", bad)
    with pytest.raises(ValueError, match="CROPMIX_DDP_TIMEOUT_S"):
        distributed.ddp_timeout()


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return False
    return "\nState:\tZ" not in status.read_text()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_worker_ends_when_its_launcher_is_killed(tmp_path):
    ready = tmp_path / "ready"
    child = (
        "from cropmix.train.distributed import end_with_parent; import time; end_with_parent(); "
        f"open({str(ready)!r}, 'w').close(); time.sleep(60)"
    )
    launcher = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', {child!r}])\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", launcher], stdout=subprocess.PIPE, text=True, env=os.environ)
    worker = int(parent.stdout.readline())
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:  # the worker has asked to end with its parent
        time.sleep(0.05)
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _alive(worker)
    if alive:
        os.kill(worker, signal.SIGKILL)
    assert not alive


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl")
def test_a_dataloader_worker_whose_parent_died_before_it_started_ends_at_once():
    # torch's watchdog in DataLoader workers compares the parent pid with the one seen at start, so a worker
    # re-parented before it ran would wait for work forever; EndWithParent knows the pid it must have.
    code = (
        "from cropmix.data.processes import EndWithParent\n"
        "init = EndWithParent()\n"
        "init.parent = -1  # as if the process that made it had died before this worker started\n"
        "init(0)\n"
        "print('still running', flush=True)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL and "still running" not in done.stdout, done.stderr


_FORK_SERVER_LOADER = """
import multiprocessing, sys, time
import torch
from cropmix.data.processes import worker_options
if sys.argv[1] == "ddp":  # a process of a DDP group (of one): its workers start from cropmix's fork server
    torch.distributed.init_process_group("gloo", init_method="file://" + sys.argv[2], rank=0, world_size=1)
else:  # the platform's default from Python 3.14 on Linux
    multiprocessing.set_start_method("forkserver")
dataset = torch.utils.data.TensorDataset(torch.arange(100))
loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2, **worker_options())
batches = iter(loader)
next(batches)
print(*[w.pid for w in batches._workers], flush=True)
time.sleep(120)
"""


def _ppid(pid: int) -> int:
    return int(
        next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("PPid:")).split()[
            1
        ]
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("started", ["ddp", "forkserver"])
def test_workers_from_a_fork_server_end_with_the_process_they_work_for(tmp_path, started):
    """The fork server outlives the process that asked for workers while any worker lives (each holds its
    end of the server's pipe): workers waiting only on their parent, the server, lived on for good."""
    command = [sys.executable, "-c", _FORK_SERVER_LOADER, started, str(tmp_path / "store")]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    workers = [int(pid) for pid in process.stdout.readline().split()]
    assert len(workers) == 2, process.communicate(timeout=60)
    server = _ppid(workers[0])
    assert server != process.pid
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.monotonic() + 15
    while any(_alive(pid) for pid in (*workers, server)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in (*workers, server) if _alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"still running after the process was killed: {left} (workers {workers}, server {server})"


def test_every_loader_with_workers_ends_them_with_its_process(tmp_path):
    from helpers import make_folder

    from cropmix.data import AugmentSpec, Batching, index_folder, make_loader
    from cropmix.data.processes import EndWithParent
    from cropmix.data.shard_reader import ShardLoader
    from cropmix.data.shards import read_index, write_shards

    index = index_folder(make_folder(tmp_path / "data") / "train")
    for batched in (False, True):
        transform = AugmentSpec("none", 12).per_image(in_memory=False)
        loader = make_loader(index, transform, Batching(4, workers=1), batched_transform=batched)
        assert isinstance(loader.worker_init_fn, EndWithParent)
        assert (loader.worker_init_fn.then is not None) == batched  # batched transforms keep freed memory
    split = read_index(write_shards(make_folder(tmp_path / "src"), tmp_path / "shards", progress=False)).split("val")
    assert isinstance(ShardLoader(split, Batching(4, workers=1)).loader.worker_init_fn, EndWithParent)


def test_workers_of_a_ddp_process_start_from_a_fork_server(tmp_path):
    """Forked from a process whose gloo threads enter Python, a worker can deadlock before it runs."""
    import torch.distributed as dist

    from cropmix.data.processes import EndWithParent, worker_options

    default = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_all_start_methods()[0]
    single = worker_options()
    assert ("multiprocessing_context" in single) == (default != "fork")
    assert single["worker_init_fn"].via_server == (default == "forkserver")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        options = worker_options(then=print)
        assert options["multiprocessing_context"].get_start_method() == "forkserver"
        init = options["worker_init_fn"]
        assert isinstance(init, EndWithParent) and init.via_server and init.then is print
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_processes_start_workers_each_step_without_deadlock(tmp_path):
    """300 rounds of DDP steps then a new worker, in 2 processes: forked, a worker hung within seconds."""
    script = Path(__file__).parent / "data" / "ddp_worker_starts.py"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    env = dict(os.environ, OMP_NUM_THREADS="1", LOOPS="300")
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0 and done.stdout.count("done") == 2, done.stderr[-3000:]


@pytest.mark.parametrize("in_memory", [False, True], ids=["files", "in memory"])
@pytest.mark.parametrize(("base", "preset"), [("baseline", "cifar"), ("rrc", "imagenet"), ("cropmix", "imagenet")])
def test_what_a_loader_sends_its_workers_pickles(tmp_path, base, preset, in_memory):
    """Workers from a fork server (DDP) get the dataset, transform and collate pickled, not inherited."""
    import pickle

    import torch
    from helpers import make_folder

    from cropmix.data import AugmentSpec, Batching, index_folder, make_loader
    from cropmix.data.arrays import ArraySplit

    transform, batched = AugmentSpec(base, 16, preset).for_workers(in_memory=in_memory)
    if in_memory:
        split = ArraySplit(torch.zeros(8, 3, 16, 16, dtype=torch.uint8), torch.arange(8) % 2, ["a", "b"])
    else:
        split = index_folder(make_folder(tmp_path / "data") / "train")
    loader = make_loader(split, transform, Batching(4, workers=1), batched_transform=batched)
    dataset, init, collate = pickle.loads(pickle.dumps((loader.dataset, loader.worker_init_fn, loader.collate_fn)))
    assert len(dataset) == len(loader.dataset) and init.parent == loader.worker_init_fn.parent


def test_in_memory_data_too_large_for_shared_memory_is_refused_in_a_ddp_process(tmp_path, monkeypatch):
    """Workers from a fork server get the arrays through /dev/shm: too small (Docker's 64 MB), a worker
    would die of SIGBUS mid-epoch; the loader says so when it is made, with what to do instead."""
    import types

    import torch
    import torch.distributed as dist

    from cropmix.data import Batching, make_loader, processes
    from cropmix.data.arrays import ArraySplit

    split = ArraySplit(torch.zeros(64, 3, 32, 32, dtype=torch.uint8), torch.arange(64) % 2, ["a", "b"])
    tiny = types.SimpleNamespace(f_bavail=4, f_frsize=4096)  # 16 KiB free
    monkeypatch.setattr(processes.os, "statvfs", lambda path: tiny)
    make_loader(split, None, Batching(8, workers=1))  # forked outside a group: nothing goes through /dev/shm
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        with pytest.raises(ValueError, match=r"in-memory images \(0 MiB\).*has 0 MiB free: use workers=0"):
            make_loader(split, None, Batching(8, workers=1))
        make_loader(split, None, Batching(8, workers=0))  # no workers, nothing to send
    finally:
        dist.destroy_process_group()
    monkeypatch.setattr(processes.multiprocessing, "get_start_method", lambda allow_none=False: "forkserver")
    with pytest.raises(ValueError, match=r"not forked through shared memory"):  # Python 3.14's default, no group
        make_loader(split, None, Batching(8, workers=1))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_without_pidfd_a_watched_process_that_became_a_zombie_counts_as_ended():
    """Where there is no pidfd the watch polls, and os.kill(pid, 0) still finds a process that has ended
    but is not yet collected by its parent: such a zombie must end the watcher as well."""
    watched = subprocess.Popen(["sleep", "0.3"])  # ends, then stays a zombie: nothing here collects it yet
    code = (
        "import os, sys, time\n"
        "del os.pidfd_open  # as on a system without pidfd\n"
        "from cropmix.data.processes import end_with_process\n"
        "end_with_process(int(sys.argv[1]), poll_s=0.05)\n"
        "time.sleep(30)\n"
        "print('outlived it', flush=True)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(watched.pid)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == -signal.SIGKILL and "outlived" not in done.stdout, done.stderr
    finally:
        watched.wait()
