"""`cropmix eval RUN`: the paper's metrics for a trained run (top-1/5, ECE, RMS, FGSM, corruptions, CIFAR-C files,
ImageNet-C folders with mCE), or with --data, top-1 on another labelled folder (ImageNet-R, -A, -Sketch)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from . import SUBCOMMANDS

if TYPE_CHECKING:
    from cropmix.train import EvalOptions


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help=SUBCOMMANDS["eval"])
    p.add_argument("run_dir", help="run folder written by `cropmix train`")
    from cropmix.train import EvalOptions

    from .config_options import add_config_options

    add_config_options(p, EvalOptions)
    ood = p.add_argument_group("out-of-distribution folder (instead of the run's test split)")
    ood.add_argument("--data", metavar="OTHER", help="a labelled folder <class>/<images> to score the model on")
    ood.add_argument("--dataset", choices=("imagefolder",), help="the format of --data (default: imagefolder)")
    ood.add_argument(
        "--class-subset",
        choices=("imagenet-r", "imagenet-a"),
        help="restrict the logits to the 200 ImageNet classes of ImageNet-R or ImageNet-A",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON (they are in the run folder too)")
    p.set_defaults(run=run)


def _run_ood(args: argparse.Namespace) -> dict:
    from cropmix.train.report import evaluate_ood

    refused = ("--fgsm", args.fgsm), ("--corruptions", args.corruptions), ("--cifar-c", args.cifar_c)
    for flag, given in (*refused, ("--imagenet-c", args.imagenet_c)):
        if given:
            raise ValueError(f"{flag} does not go with --data (which scores that folder alone); drop one of them")
    dataset = args.dataset or "imagefolder"
    return evaluate_ood(args.run_dir, args.data, _options(args), dataset=dataset, class_subset=args.class_subset)


def _check_ood_options(args: argparse.Namespace) -> None:
    """--dataset and --class-subset say how to read and score --data: refused without it, not ignored."""
    for flag, given in (("--dataset", args.dataset), ("--class-subset", args.class_subset)):
        if given is not None and args.data is None:
            raise ValueError(f"{flag} {given!r} only applies with --data (the folder to score); drop it or add --data")


def _options(args: argparse.Namespace) -> EvalOptions:
    """The EvalOptions of the command line."""
    from cropmix.train import EvalOptions

    from .config_options import config_values

    return EvalOptions(**config_values(args, EvalOptions))


def run(args: argparse.Namespace) -> int:
    import json

    from cropmix.train import evaluate_run

    _check_ood_options(args)
    if args.data is not None:
        results = _run_ood(args)
        print(json.dumps(results, indent=2) if args.json else summary(results, f"{args.data} ({results['file']})"))
        return 0
    results = evaluate_run(args.run_dir, _options(args))
    print(json.dumps(results, indent=2) if args.json else summary(results, "the run's test split (eval.json)"))
    return 0


def percent(value: float | None) -> str:
    """A percentage with 2 decimals, "-" for None."""
    return "-" if value is None else f"{value:.2f}%"


def summary(results: dict, scored: str) -> str:
    """The headline figures of `results` for a person: a few lines, fixed decimals."""
    lines = [f"scored on {scored}:"]
    rms = results.get("rms")  # None below 200 images (the paper's bins of 100)
    calibration = f"ECE {results['ece']:.2f}, RMS " + ("-" if rms is None else f"{rms:.2f}")
    head = f"  top-1 {percent(results.get('top1'))}"
    if "top5" in results:
        head += f", top-5 {percent(results['top5'])}"
    lines.append(f"{head}; {calibration}")
    if "fgsm_top1" in results:
        lines.append(f"  FGSM top-1 {percent(results['fgsm_top1'])}")
    for key, name in (("corruption", "corruptions"), ("cifar_c", "CIFAR-C files"), ("imagenet_c", "ImageNet-C")):
        if key in results:
            per = results[key].get("per_corruption", {})
            worst = min(per, key=per.get) if per else None
            line = f"  {name}: mean {percent(results[key]['mean'])} over {len(per)}"
            line += f"; worst {worst} {percent(per[worst])}" if worst else ""
            lines.append(line + (_imagenet_c_note(results[key]) if key == "imagenet_c" else ""))
    if results.get("skipped_files"):
        lines.append(f"  {results['skipped_files']} unreadable files skipped")
    return "\n".join(lines)


def _imagenet_c_note(block: dict) -> str:
    """The end of the ImageNet-C line: its mCE, or why there is none; the files skipped, if any."""
    note = f"; mCE {block['mce']:.2f}%" if block["mce"] is not None else f"; no mCE ({block['mce_reason']})"
    if block.get("skipped_files"):
        note += f"; {block['skipped_files']} unreadable files skipped"
    return note
