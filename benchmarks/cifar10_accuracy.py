"""CIFAR-10 accuracy, calibration and robustness of baseline vs RRC vs CropMix (fastnet, full CIFAR-10).

Every arm trains with identical settings except the augmentation; seeds run in the outer loop so a
cut-short benchmark still has complete seeds. Each run then gets FGSM (eps 8/255) and corruption
accuracy on fixed test subsets. The table (mean and standard deviation over seeds) is printed and
appended to benchmarks/RESULTS.md.

    python benchmarks/cifar10_accuracy.py --src CIFAR10_JPEG_ROOT --epochs 15 --seeds 0 1 2   # ~11 min per run

--src (CIFAR-10 as JPEG files in ImageFolder layout) is needed only the first time: the images are
decoded once into runs/cache/cifar10.npz.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from bench_data import cifar_folder

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "runs" / "cache" / "cifar10.npz"  # runs/ is git-ignored
ARMS = ("baseline", "rrc", "cropmix")
METRICS = ("top1", "ece", "rms", "corruption_mean", "fgsm_top1", "seconds_per_epoch")


def ensure_cache(src: str | None) -> Path:
    """Decode the CIFAR-10 JPEGs once into an uncompressed uint8 .npz (about 185 MB)."""
    if not CACHE.is_file():
        src = str(cifar_folder(src, "--src"))
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "examples/cifar10_subset/make_subset.py"),
                "--src",
                src,
                "--all",
                "--decode",
                "--out",
                str(CACHE),
            ],
            check=True,
        )
    return CACHE


def run_arm(args: argparse.Namespace, aug: str, seed: int) -> dict:
    from cropmix.data import Batching, load_npz, make_loader, subset
    from cropmix.evaluate import corruption_accuracy, fgsm_accuracy
    from cropmix.train import TrainConfig, load_run_model, train

    out = Path(args.out) / f"{aug}_s{seed}"
    config = TrainConfig.from_dict(
        dict(
            dataset="npz",
            data=str(CACHE),
            out=str(out),
            model="fastnet",
            model_kwargs={"widths": args.widths},
            aug=aug,
            preset="cifar",
            epochs=args.epochs,
            batch_size=256,
            lr=args.lr,
            weight_decay=5e-4,
            schedule="onecycle",
            seed=seed,
            workers=1,
            threads=args.threads,
            progress=False,
        )
    )
    if not (out / "final.json").is_file():
        resume = (out / "checkpoint.pt").is_file()
        train(config, resume=resume)
    final = json.loads((out / "final.json").read_text())
    if "fgsm_top1" not in final:
        model, _ = load_run_model(out)
        test = load_npz(CACHE, "test")
        loader = make_loader(
            subset(test, args.fgsm_images, seed=0), None, Batching(batch_size=500, train=False, workers=0)
        )
        final["fgsm_top1"] = fgsm_accuracy(model, loader, "cpu", 8 / 255, progress=False)
        loader = make_loader(
            subset(test, args.corruption_images, seed=0), None, Batching(batch_size=500, train=False, workers=0)
        )
        corr = corruption_accuracy(model, loader, "cpu", progress=False)
        final["corruption_mean"] = corr["mean"]
        final["corruption"] = corr
        (out / "final.json").write_text(json.dumps(final, indent=2) + "\n")
    return final


def interleaved_timing(args: argparse.Namespace, rounds: int = 6, steps: int = 15) -> dict[str, float]:
    """Seconds per training step (loading + augmentation + forward/backward) of each arm (within one epoch), in
    alternating rounds in one process, so that load from other jobs on a shared machine hits all arms alike."""

    from cropmix.train import TrainConfig
    from cropmix.train.data_setup import prepare_data
    from cropmix.train.distributed import DistInfo
    from cropmix.train.loop import build_model_for, to_input

    arms = {}
    for aug in args.arms:
        config = TrainConfig.from_dict(
            dict(
                dataset="npz",
                data=str(CACHE),
                out="unused",
                model="fastnet",
                model_kwargs={"widths": args.widths},
                aug=aug,
                batch_size=256,
                workers=1,
                seed=0,
            )
        )
        data = prepare_data(config, DistInfo(), pin=False)
        loader, classes, size = data.train_loader, data.num_classes, data.image_size
        model = build_model_for(config, classes, size).to(memory_format=torch.channels_last)
        arms[aug] = (iter(loader), model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    times: dict[str, list[float]] = {aug: [] for aug in arms}
    for round_index in range(rounds):
        for aug, (batches, model, optimizer) in arms.items():
            next(batches)  # warm the worker up
            start = time.perf_counter()
            for _ in range(steps):
                images, targets = next(batches)
                loss = torch.nn.functional.cross_entropy(model(to_input(images, torch.device("cpu"), True)), targets)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            if round_index > 0:  # round 0 is warm-up
                times[aug].append((time.perf_counter() - start) / steps)
    return {aug: statistics.median(values) for aug, values in times.items()}


def cell(values: list) -> str:
    """Mean ± standard deviation over the seeds that have the metric; "-" when none has it (the paper's
    RMS is None below 200 test predictions)."""
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def table(results: dict[str, list[dict]]) -> str:
    head = "| arm | seeds | top-1 (%) | ECE (%) | RMS (%) | corruption mean top-1 (%) | FGSM top-1 (%) | s / epoch |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for aug, finals in results.items():
        cells = [cell([f.get(metric) for f in finals]) for metric in METRICS]
        lines.append(f"| {aug} | {len(finals)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_arms(args: argparse.Namespace) -> dict[str, list[dict]]:
    """Every arm for every seed (seeds outermost), until --deadline."""
    results: dict[str, list[dict]] = {aug: [] for aug in args.arms}
    for seed in args.seeds:
        for aug in args.arms:
            if args.deadline and time.time() > args.deadline:
                print(f"deadline reached before {aug} seed {seed}", flush=True)
                break
            start = time.time()
            final = run_arm(args, aug, seed)
            results[aug].append(final)
            print(
                f"{aug} seed {seed}: "
                + ", ".join(f"{m}=" + ("-" if final.get(m) is None else f"{final[m]:.2f}") for m in METRICS)
                + f" ({time.time() - start:.0f} s)",
                flush=True,
            )
    return results


def append_results(args: argparse.Namespace, text: str, slowdown: str) -> None:
    """Append the table with the machine, the command and the setting to benchmarks/RESULTS.md."""
    from cropmix.evaluate.corruptions import frost_source

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    cores = open("/proc/cpuinfo").read().count("processor\t:")
    lines = [
        "",
        "## CIFAR-10 accuracy: baseline vs RRC vs CropMix (benchmarks/cifar10_accuracy.py)",
        "",
        f"Date: {datetime.date.today()}. Machine: {cpu}, {cores} cores shared with other jobs, "
        f"{torch.get_num_threads()} torch threads, no GPU; Python {platform.python_version()}, "
        f"torch {torch.__version__}.",
        f"Command: `python benchmarks/{Path(__file__).name} {' '.join(sys.argv[1:])}`",
        "Setting: full CIFAR-10 train (50,000) / test (10,000) from the JPEG tree (decoded once), "
        f"fastnet widths {args.widths}, {args.epochs} epochs, batch 256, SGD Nesterov lr {args.lr} one-cycle, wd 5e-4, "
        "1 loader worker; arms differ only in `--aug` (rrc: RandomResizedCrop over the cifar preset's scale range "
        "[0.5, 1] + flip; cropmix: cifar preset + flip; baseline: pad-4 crop + flip). "
        f"FGSM (eps 8/255) on {args.fgsm_images} and corruptions (all kinds, severities 1-5) on "
        f"{args.corruption_images} fixed test images (corrupted images stored as uint8, as CIFAR-10-C; frost layer: "
        f"{frost_source()}).",
        "",
        text,
        "",
        slowdown,
        "",
    ]
    section = "\n".join(lines)
    with open(ROOT / "benchmarks" / "RESULTS.md", "a") as handle:
        handle.write(section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", help=f"CIFAR-10 JPEG ImageFolder root (needed until {CACHE} exists)")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench_cifar10"))
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--arms", nargs="+", default=list(ARMS))
    parser.add_argument("--widths", type=int, nargs=4, default=[12, 24, 48, 96], help="fastnet widths (its default)")
    parser.add_argument("--lr", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--fgsm-images", type=int, default=2000)
    parser.add_argument("--corruption-images", type=int, default=250)
    parser.add_argument("--deadline", type=float, default=None, help="unix time: start no run after it")
    parser.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    parser.add_argument("--timing-only", action="store_true", help="only the interleaved seconds-per-step timing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ensure_cache(args.src)
    if args.timing_only:
        step = interleaved_timing(args)
        base = step.get("baseline")
        for aug, seconds in step.items():
            change = f" ({100 * (seconds / base - 1):+.1f}% vs baseline)" if base else ""
            print(f"{aug}: {1000 * seconds:.1f} ms per step of 256 images{change}", flush=True)
        return
    results = run_arms(args)
    results = {k: v for k, v in results.items() if v}
    text = table(results)
    base, cm = results.get("baseline"), results.get("cropmix")
    slowdown = ""
    if base and cm:
        b = statistics.fmean(f["seconds_per_epoch"] for f in base)
        c = statistics.fmean(f["seconds_per_epoch"] for f in cm)
        slowdown = f"CropMix epoch time vs baseline: {100 * (c / b - 1):+.1f}% ({c:.1f} s vs {b:.1f} s)."
    print(text + "\n" + slowdown)
    if args.no_results:
        return
    append_results(args, text, slowdown)


if __name__ == "__main__":
    from results_file import recorded

    with recorded("cifar10_accuracy"):
        main()
