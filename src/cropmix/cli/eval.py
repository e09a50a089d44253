"""`cropmix eval RUN`: the paper's metrics for a trained run (top-1/5, ECE, RMS, FGSM, corruptions)."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained run: top-1/5, ECE, RMS, FGSM, corruptions")
    p.add_argument("run_dir", help="run folder written by `cropmix train`")
    p.add_argument("--fgsm", action="store_true", help="FGSM top-1")
    p.add_argument("--fgsm-eps", type=float, default=8 / 255, help="FGSM step (default: 8/255)")
    p.add_argument("--corruptions", action="store_true", help="accuracy under common corruptions")
    p.add_argument("--max-corruption-images", type=int, help="test images per corruption (default: all)")
    p.add_argument("--max-images", type=int, help="evaluate on a fixed subset of the test split")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=512)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import json

    from cropmix.train import evaluate_run

    results = evaluate_run(
        args.run_dir,
        fgsm=args.fgsm,
        corruptions=args.corruptions,
        fgsm_eps=args.fgsm_eps,
        max_corruption_images=args.max_corruption_images,
        max_images=args.max_images,
        device=args.device,
        batch_size=args.batch_size,
    )
    print(json.dumps(results, indent=2))
    return 0
