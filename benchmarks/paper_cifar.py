"""CropMix vs the baseline on CIFAR-10 with the authors' recipe, through the `cropmix` command: the recipes
`cifar10-resnet18-paper` and `cifar10-resnet18-paper-cropmix` (rrc: the first with `--aug rrc`, whose scale
range is the CropMix preset's [0.5, 1]), then `cropmix eval --fgsm --corruptions` and `cropmix compare`
(mean ± sd over seeds of top-1, ECE, RMS, FGSM top-1, corruption mean).

Regimes (--regime; default gpu where CUDA is available, else scarce):
  gpu     both arms at once, one process each on the one GPU, each with half the CPU cores as loader workers;
          CIFAR ResNet-18 on all of CIFAR-10 with the recipe scaled to about 10 minutes on an H100/H200:
          --epochs (default 24) with x0.1 at 1/3 and 2/3 of them (the recipe: 300, at 100 and 200), batch 400
          with lr 0.4 (the recipe: 100 with 0.1, scaled together), AMP and channels-last.
  scarce  the data-scarce regime on the CPU: a fixed class-balanced 10% of the training split (500 images per
          class, the whole test split), fastnet, the recipe's own batch 100 / lr 0.1 / wd 1e-4 and schedule
          shape over --epochs (default 100), seeds 0 1 2 and arms baseline, cropmix, rrc one after another.

Cost, estimated: scarce on a quiet 2-core CPU about 11 min per run (fastnet ~5 s per epoch of 5,000 images, as
benchmarks/RESULTS.md's ~42 s per 50,000-image epoch implies, plus evaluation), 9 runs ~1.7 h; the 2-epoch smoke
run took 40-70 s per epoch with the cores shared by other jobs (load 5). gpu: not yet measured.

    python benchmarks/paper_cifar.py --src CIFAR10_JPEG_ROOT --regime gpu --results benchmarks/RESULTS.md
    nohup python benchmarks/paper_cifar.py --src CIFAR10_JPEG_ROOT --regime scarce > runs/paper_scarce.log 2>&1 &

--time-budget SECONDS stops training, then evaluation, at fixed fractions of it with a message naming the logs
(what benchmarks/gpu_session.sh passes on), rather than letting an outer time limit cut everything off silently.

--src (CIFAR-10 as JPEG files in ImageFolder layout) is needed only until the decoded cache exists (the one
benchmarks/cifar10_accuracy.py writes). Finished runs are kept: the same command again resumes a cut-short
benchmark (checkpoints, and evaluations not yet done) and rebuilds the table.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
from cifar10_accuracy import CACHE, ensure_cache

ROOT = Path(__file__).resolve().parents[1]
CROPMIX = [sys.executable, "-m", "cropmix"]
ARMS = {
    "baseline": ["--recipe", "cifar10-resnet18-paper"],
    "cropmix": ["--recipe", "cifar10-resnet18-paper-cropmix"],
    "rrc": ["--recipe", "cifar10-resnet18-paper", "--aug", "rrc"],
}
# Per regime: defaults of the options, and what every training command of it adds to the recipe.
REGIMES = {
    "gpu": dict(
        epochs=24, seeds=[0], arms=["baseline", "cropmix"], batch=400, lr=0.4, corruption_images=2000, device="cuda"
    ),
    "scarce": dict(
        epochs=100,
        seeds=[0, 1, 2],
        arms=["baseline", "cropmix", "rrc"],
        batch=100,
        lr=0.1,
        corruption_images=500,
        device="cpu",
    ),
}
SCARCE_PER_CLASS = 500  # 10% of CIFAR-10's 5,000 training images per class
# With --time-budget: the fractions of it by which training, then evaluation must have ended (the rest: compare).
TRAIN_SHARE, EVAL_SHARE = 0.7, 0.95


def scarce_npz(cache: Path, per_class: int, seed: int = 0) -> Path:
    """A fixed class-balanced subset of the training split (`per_class` images of every class, drawn with
    its own seed) and the whole test split, written once beside the cache."""
    from cropmix.data import ArraySplit, load_npz, save_npz

    path = cache.with_name(f"{cache.stem}_balanced{per_class}_s{seed}.npz")
    if path.is_file():
        return path
    train, test = load_npz(cache, "train"), load_npz(cache, "test")
    generator = torch.Generator().manual_seed(seed)
    keep = []
    for label in range(len(train.classes)):
        members = torch.nonzero(train.targets == label).flatten()
        if len(members) < per_class:
            raise SystemExit(f"class {train.classes[label]!r} has {len(members)} images, fewer than {per_class}")
        keep.append(members[torch.randperm(len(members), generator=generator)[:per_class]])
    index = torch.cat(keep).sort().values
    save_npz(path, {"train": ArraySplit(train.images[index], train.targets[index], train.classes), "test": test})
    return path


def milestones(epochs: int) -> list[str]:
    """The recipe's x0.1 steps (100 and 200 of 300 epochs) at the same fractions of `epochs`."""
    return [str(m) for m in sorted({round(epochs / 3), round(2 * epochs / 3)}) if 0 < m < epochs]


def train_command(args: argparse.Namespace, arm: str, seed: int, data: Path, out: Path) -> list[str]:
    """`cropmix train` with the arm's recipe and this regime's overrides."""
    cmd = [*CROPMIX, "train", *ARMS[arm], "--dataset", "npz", "--data", str(data), "--out", str(out)]
    cmd += ["--name", arm, "--seed", str(seed), "--epochs", str(args.epochs), "--milestones", *milestones(args.epochs)]
    cmd += ["--batch-size", str(args.batch), "--lr", str(args.lr), "--device", args.device, "--no-progress"]
    cmd += ["--workers", str(args.workers), "--threads", str(args.threads)]
    cmd += ["--eval-every", str(max(1, args.epochs // 10))]
    for option, value in (("--max-train-images", args.max_train_images), ("--max-test-images", args.max_test_images)):
        cmd += [option, str(value)] if value else []
    if args.regime == "gpu":
        cmd += ["--amp", "--channels-last"] if args.device.startswith("cuda") else []
    model = args.model or (None if args.regime == "gpu" else "fastnet")
    cmd += ["--model", model] if model else []
    cmd += ["--model-kwargs", args.model_kwargs] if args.model_kwargs else []
    if (out / "checkpoint.pt").is_file() and not (out / "final.json").is_file():
        cmd.append("--resume")
    return cmd


def eval_command(args: argparse.Namespace, out: Path) -> list[str]:
    """`cropmix eval` with FGSM (eps 8/255) on the whole test split and corruptions on a fixed subset of it."""
    cmd = [*CROPMIX, "eval", str(out), "--fgsm", "--corruptions", "--no-progress", "--device", args.device]
    return cmd + ["--max-corruption-images", str(args.corruption_images), "--batch-size", "500"]


def run_together(jobs: list[tuple[list[str], Path]], threads: int, deadline: float | None = None) -> None:
    """Run the commands at once, each logging to its file, and print each as it ends; exit naming the log of any
    that failed, or, once `deadline` (a time.time()) passes, stop those still running and exit naming them."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    running, start = [], time.time()
    for cmd, log in jobs:
        log.parent.mkdir(parents=True, exist_ok=True)
        handle = open(log, "w")  # closed below, once the process ends
        handle.write(" ".join(cmd) + "\n")
        handle.flush()
        running.append((subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env), handle, log))
    failed, late = [], []
    while running:
        for job in [job for job in running if job[0].poll() is not None]:
            running.remove(job)
            job[1].close()
            print(f"  {job[2].name}: exit status {job[0].returncode} after {time.time() - start:.0f} s", flush=True)
            if job[0].returncode != 0:
                failed.append(str(job[2]))
        if running and deadline is not None and time.time() > deadline:
            late, running = _stop(running), []
        if running:
            time.sleep(0.2)
    if late:
        raise SystemExit(f"stopped at the --time-budget after {time.time() - start:.0f} s: {', '.join(late)}")
    if failed:
        raise SystemExit(f"failed (exit status != 0); see {', '.join(failed)}")


def _stop(running: list) -> list[str]:
    """Terminate the processes (killed if they linger 10 s), close their logs; their log names."""
    for process, _, _ in running:
        process.terminate()
    for process, handle, _ in running:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        handle.close()
    return [str(log) for _, _, log in running]


def run_arms(args: argparse.Namespace, data: Path) -> list[Path]:
    """Train and evaluate every (seed, arm), seeds outermost; in the gpu regime the arms of a seed run at once."""
    runs = []
    for seed in args.seeds:
        batch = [(arm, Path(args.out) / f"{arm}_s{seed}") for arm in args.arms]
        groups = [batch] if args.regime == "gpu" else [[job] for job in batch]
        for group in groups:
            start = time.time()
            logs = Path(args.out) / "logs"
            todo = [(arm, out) for arm, out in group if not (out / "final.json").is_file()]
            jobs = [(train_command(args, a, seed, data, o), logs / f"{o.name}.train.log") for a, o in todo]
            run_together(jobs, args.threads, phase_deadline(args, TRAIN_SHARE))
            todo = [(arm, out) for arm, out in group if not _evaluated(out)]
            jobs = [(eval_command(args, o), logs / f"{o.name}.eval.log") for _, o in todo]
            run_together(jobs, args.threads, phase_deadline(args, EVAL_SHARE))
            names = ", ".join(arm for arm, _ in group)
            print(f"seed {seed}: {names} done in {time.time() - start:.0f} s", flush=True)
            runs += [out for _, out in group]
    return runs


def phase_deadline(args: argparse.Namespace, share: float) -> float | None:
    """When a phase must have ended: `share` of --time-budget after the start (None without a budget)."""
    return None if args.time_budget is None else args.started + share * args.time_budget


def _evaluated(out: Path) -> bool:
    import json

    final = out / "final.json"
    return final.is_file() and {"fgsm_top1", "corruption_mean"} <= set(json.loads(final.read_text()))


def machine(args: argparse.Namespace) -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    text = f"{cpu}, {os.cpu_count()} cores"
    if args.device.startswith("cuda"):
        text = f"{torch.cuda.get_device_name(0)}; {text}"
    return f"{text}; Python {platform.python_version()}, torch {torch.__version__}"


def report(args: argparse.Namespace, runs: list[Path], seconds: float) -> str:
    """The `cropmix compare` table of the runs, with what was run, where and how long it took."""
    compare = subprocess.run(
        [*CROPMIX, "compare", *map(str, runs), "--out", str(Path(args.out) / "compare")],
        check=True,
        capture_output=True,
        text=True,
    )
    table = compare.stdout.split("wrote ")[0].strip()
    if args.regime == "gpu":
        setting = (
            f"all of CIFAR-10, CIFAR ResNet-18, {args.epochs} epochs, batch {args.batch}, lr {args.lr}, x0.1 at "
            f"{'/'.join(milestones(args.epochs))}, arms at once on one GPU with {args.workers} loader workers each"
        )
    else:
        setting = (
            f"{SCARCE_PER_CLASS} images per class (10%, fixed class-balanced subset), fastnet, {args.epochs} epochs, "
            f"batch {args.batch}, lr {args.lr}, x0.1 at {'/'.join(milestones(args.epochs))}, one run at a time"
        )
    return "\n".join(
        [
            f"## CIFAR-10, the authors' recipe, {args.regime} regime (benchmarks/paper_cifar.py)",
            "",
            f"Date: {datetime.date.today()}. Machine: {machine(args)}. Wall time: {seconds / 60:.1f} min.",
            f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
            f"Setting: {setting}; otherwise the recipes cifar10-resnet18-paper(-cropmix) (SGD momentum 0.9, wd 1e-4; "
            f"rrc = RandomResizedCrop over [0.5, 1]). FGSM eps 8/255 on the whole test split; corruptions (all kinds, "
            f"severities 1-5) on {args.corruption_images} fixed test images. Mean ± sd over seeds {args.seeds}.",
            "",
            table,
            "",
        ]
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regime", choices=tuple(REGIMES), help="default: gpu with CUDA, else scarce")
    parser.add_argument("--src", help=f"CIFAR-10 JPEG ImageFolder root (needed until {CACHE} exists)")
    parser.add_argument(
        "--npz", help="train on this CIFAR-10 .npz instead (decoded or JPEG bytes, as make_subset.py --all writes)"
    )
    parser.add_argument("--out", help="folder of the runs (default: runs/paper_cifar_<regime>)")
    parser.add_argument("--epochs", type=int, help="default: gpu 24, scarce 100")
    parser.add_argument("--seeds", type=int, nargs="+", help="default: gpu 0, scarce 0 1 2")
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), help="default: gpu baseline cropmix, scarce all")
    parser.add_argument("--batch", type=int, help="batch size (default: gpu 400, scarce 100)")
    parser.add_argument("--lr", type=float, help="learning rate (default: gpu 0.4, scarce 0.1)")
    parser.add_argument("--corruption-images", type=int, help="default: gpu 2000, scarce 500")
    parser.add_argument("--workers", type=int, help="loader workers per run (default: gpu half the cores, scarce 1)")
    parser.add_argument("--threads", type=int, help="torch threads per run (default: gpu 2, scarce 2)")
    parser.add_argument("--device", help="default: gpu cuda, scarce cpu")
    parser.add_argument("--max-train-images", type=int, help="train on a fixed subset of this many (default: all)")
    parser.add_argument("--max-test-images", type=int, help="evaluate on a fixed subset of this many (default: all)")
    parser.add_argument("--model", help="the network (default: gpu the recipe's CIFAR ResNet-18, scarce fastnet)")
    parser.add_argument("--model-kwargs", help="its arguments as JSON, as `cropmix train --model-kwargs` takes them")
    parser.add_argument(
        "--time-budget",
        type=float,
        help=f"seconds for everything: training is stopped at {TRAIN_SHARE:.0%} of it, evaluation at {EVAL_SHARE:.0%}, "
        "with a message naming the logs, rather than cut off with nothing (default: no limit)",
    )
    parser.add_argument("--results", help="append the table (markdown) to this file (default: print only)")
    args = parser.parse_args()
    args.regime = args.regime or ("gpu" if torch.cuda.is_available() else "scarce")
    for key, value in REGIMES[args.regime].items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if args.workers is None:
        args.workers = max(1, (os.cpu_count() or 2) // 2) if args.regime == "gpu" else 1
    args.threads = args.threads or 2
    args.out = args.out or str(ROOT / "runs" / f"paper_cifar_{args.regime}")
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the recipe's schedule steps inside the run), got {args.epochs}")
    return args


def main() -> None:
    args = parse_args()
    start = args.started = time.time()
    data = Path(args.npz) if args.npz else ensure_cache(args.src)
    if not data.is_file():
        raise SystemExit(f"--npz {str(data)!r}: no such file")
    if args.regime == "scarce":
        data = scarce_npz(data, SCARCE_PER_CLASS)
    runs = run_arms(args, data)
    text = report(args, runs, time.time() - start)
    print(text, flush=True)
    if args.results:
        with open(args.results, "a") as handle:
            handle.write("\n" + text)


if __name__ == "__main__":
    from results_file import recorded

    with recorded("paper_cifar"):
        main()
