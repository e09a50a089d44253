"""benchmarks/gpu_session.sh, the one prepared GPU run: a failed probe ends it early with its few files, the
CIFAR benchmark stops its jobs at its time budget, and (slow) the QUICK dry run completes every step."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"


def carry(folder: Path) -> Path:
    """A stand-in for the carried data: the files the script checks for before it starts."""
    (folder / "photos").mkdir(parents=True)
    for photo in (ROOT / "examples" / "photos").glob("*.jpg"):
        (folder / "photos" / photo.name).write_bytes(photo.read_bytes())
    subset = ROOT / "examples" / "cifar10_subset" / "cifar10_subset.npz"
    (folder / "cifar10_jpeg.npz").write_bytes(subset.read_bytes())
    return folder


def session(tmp_path: Path, timeout: float, **env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "CARRY": str(carry(tmp_path / "carry")), "TMPDIR": str(tmp_path),
           "OUT": str(tmp_path / "out"), **env}  # fmt: skip
    return subprocess.run(["bash", str(SCRIPT), "run"], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=timeout)  # fmt: skip


def test_the_script_parses() -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="with CUDA the probe passes and the whole session would run")
def test_a_failed_probe_ends_the_session_before_the_timed_steps(tmp_path) -> None:
    done = session(tmp_path, 120, DEVICE="cuda")
    assert done.returncode == 1
    log = (tmp_path / "out" / "session.log").read_text()
    assert "probe failed: --device cuda but torch sees no CUDA device" in done.stdout
    assert "the session ends here" in log and "batch_throughput" not in log
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["results.tar.gz", "session.log", "steps.log", "summary.md"]


def test_the_cifar_benchmark_stops_its_jobs_at_the_deadline(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from paper_cifar import run_together

    quick = ([sys.executable, "-c", "pass"], tmp_path / "quick.log")
    slow = ([sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "slow.log")
    start = time.time()
    with pytest.raises(SystemExit, match=r"stopped at the --time-budget after \d+ s: .*slow\.log"):
        run_together([quick, slow], threads=1, deadline=start + 3)
    assert time.time() - start < 30
    assert "quick.log: exit status 0" in capsys.readouterr().out


@pytest.mark.slow
def test_the_quick_dry_run_completes_every_step_and_returns_few_files(tmp_path) -> None:
    done = session(tmp_path, 600, QUICK="1", DEVICE="cpu")
    assert done.returncode == 0, done.stdout[-3000:]
    summary = (tmp_path / "out" / "summary.md").read_text()
    for name in ("probe", "batch_throughput", "tests", "input_pipeline", "paper_cifar"):
        assert f"| {name} | 0 |" in summary, summary
    steps = (tmp_path / "out" / "steps.log").read_text()
    assert "eval.log: exit status 0" in steps and "| cropmix | 1 |" in steps  # evaluated, then compared
    assert len(list((tmp_path / "out").iterdir())) <= 8
