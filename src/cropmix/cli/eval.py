"""`cropmix eval RUN`: the paper's metrics for a trained run (top-1/5, ECE, RMS, FGSM, corruptions, CIFAR-C files),
or with --data, top-1 on another labelled folder (ImageNet-R, -A, -Sketch)."""

from __future__ import annotations

import argparse

from . import SUBCOMMANDS


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1] (pixel units, e.g. 0.0314 for 8/255), got {value}")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help=SUBCOMMANDS["eval"])
    p.add_argument("run_dir", help="run folder written by `cropmix train`")
    p.add_argument("--fgsm", action="store_true", help="FGSM top-1")
    p.add_argument("--fgsm-eps", type=unit_float, default=8 / 255, help="FGSM step in [0, 1] (default: 8/255)")
    p.add_argument(
        "--corruptions", action="store_true", help="accuracy under the 15 standard corruptions x 5 severities"
    )
    p.add_argument(
        "--cifar-c",
        metavar="PATH",
        help="score the published CIFAR-10-C / CIFAR-100-C files in PATH (<corruption>.npy, labels.npy)",
    )
    p.add_argument(
        "--max-corruption-images",
        type=positive_int,
        help="corrupt a fixed random subset of this many test images, all classes (default: all)",
    )
    p.add_argument("--max-images", type=positive_int, help="evaluate on a fixed random subset of the test split")
    ood = p.add_argument_group("out-of-distribution folder (instead of the run's test split)")
    ood.add_argument("--data", metavar="OTHER", help="a labelled folder <class>/<images> to score the model on")
    ood.add_argument("--dataset", choices=("imagefolder",), default="imagefolder", help="the format of --data")
    ood.add_argument(
        "--class-subset",
        choices=("imagenet-r", "imagenet-a"),
        help="restrict the logits to the 200 ImageNet classes of ImageNet-R or ImageNet-A",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    p.set_defaults(run=run)


def _run_ood(args: argparse.Namespace) -> dict:
    from cropmix.train.report import evaluate_ood

    for flag, given in (("--fgsm", args.fgsm), ("--corruptions", args.corruptions), ("--cifar-c", args.cifar_c)):
        if given:
            raise SystemExit(f"cropmix eval: error: {flag} scores the run's test split; it does not go with --data")
    return evaluate_ood(
        args.run_dir,
        args.data,
        dataset=args.dataset,
        class_subset=args.class_subset,
        max_images=args.max_images,
        device=args.device,
        batch_size=args.batch_size,
        progress=args.progress,
    )


def run(args: argparse.Namespace) -> int:
    import json

    from cropmix.train import evaluate_run

    if args.data is not None:
        print(json.dumps(_run_ood(args), indent=2))
        return 0
    if args.class_subset is not None:
        raise SystemExit("cropmix eval: error: --class-subset needs --data (the folder to score)")
    results = evaluate_run(
        args.run_dir,
        fgsm=args.fgsm,
        corruptions=args.corruptions,
        fgsm_eps=args.fgsm_eps,
        max_corruption_images=args.max_corruption_images,
        max_images=args.max_images,
        device=args.device,
        batch_size=args.batch_size,
        progress=args.progress,
        cifar_c=args.cifar_c,
    )
    print(json.dumps(results, indent=2))
    return 0
