"""CropMix in self-supervised pre-training on CIFAR-10: MoCo v2 (standard vs CropMix query) and MAE
(standard RandomResizedCrop vs CropMix inputs, on the whole training set and on a 10% subset).

Each run pre-trains for a fixed number of steps (with a wall-clock guard), then measures kNN
(cosine, k = 200, temperature 0.1) and linear-probe accuracy on frozen features of a fixed random
labelled subset. The JPEGs are decoded once into runs/ssl_bench/cifar10.npz (git-ignored).
Results: runs/ssl_bench/summary.json and summary.md; finished runs are skipped when re-run.

    python benchmarks/ssl_pretrain.py --data CIFAR10_JPEG_ROOT --threads 2

--data (CIFAR-10 as JPEG files in ImageFolder layout) is needed only until the npz cache exists.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch
from bench_data import cifar_folder

from cropmix.ssl import PretrainConfig, pretrain
from cropmix.ssl.moco import MoCo

OUT = Path("runs/ssl_bench")


def cache_npz(data: Path | None, out: Path) -> Path:
    """Decode the ImageFolder JPEGs once into an uncompressed npz of uint8 arrays."""
    path = out / "cifar10.npz"
    if path.exists():
        return path
    from cropmix.data import load_source, save_npz

    data = cifar_folder(data, "--data")
    t0 = time.time()
    source = load_source("imagefolder", data, in_memory=True)
    save_npz(path, {"train": source.train, "test": source.test})
    print(
        f"decoded {len(source.train)} + {len(source.test)} images into {path} in {time.time() - t0:.0f} s", flush=True
    )
    return path


def moco_backbone() -> torch.nn.Module:
    """A small CIFAR ResNet (one BasicBlock per stage, widths 16-128): what fits minutes on a CPU."""
    from cropmix.models.classifier import Classifier
    from cropmix.models.resnet import CifarResNet

    return Classifier(CifarResNet((1, 1, 1, 1), (16, 32, 64, 128)), 10)


def runs(args: argparse.Namespace) -> list[tuple[str, dict]]:
    mae = dict(dim=128, depth=4, heads=4, decoder_dim=64, decoder_depth=1, decoder_heads=4)
    common = dict(
        batch_size=args.batch,
        max_seconds=args.max_seconds,
        eval_train=args.eval_train,
        eval_test=args.eval_test,
        probe_epochs=args.probe_epochs,
        threads=args.threads,
        log_every=10,
        checkpoint_every=50,
        progress=False,
    )
    moco = dict(method="moco", steps=args.moco_steps, queue_size=4096, lr=0.06, **common)
    maec = dict(method="mae", steps=args.mae_steps, mae_kwargs=mae, lr=1.5e-3, warmup_steps=20, **common)
    out = []
    for seed in args.seeds:
        out += [
            (f"moco-standard-s{seed}", dict(moco, aug="standard", seed=seed)),
            (f"moco-cropmix-s{seed}", dict(moco, aug="cropmix", seed=seed)),
            (f"mae-standard-s{seed}", dict(maec, aug="standard", seed=seed)),
            (f"mae-cutmix-s{seed}", dict(maec, aug="mae-cutmix", seed=seed)),
            (f"mae10-standard-s{seed}", dict(maec, aug="standard", seed=seed, subset=0.1)),
            (f"mae10-mixup-s{seed}", dict(maec, aug="mae-mixup", seed=seed, subset=0.1)),
        ]
    return [(name, kw) for name, kw in out if not args.only or any(o in name for o in args.only)]


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
            if line.startswith("Model name")
        ),
        "?",
    )
    return f"{model}, {torch.get_num_threads()} torch threads, {platform.node()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="CIFAR-10 JPEG ImageFolder root (until OUT/cifar10.npz exists)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--moco-steps", type=int, default=200)
    parser.add_argument("--mae-steps", type=int, default=200)
    parser.add_argument("--max-seconds", type=float, default=330.0)
    parser.add_argument("--eval-train", type=int, default=5000)
    parser.add_argument("--eval-test", type=int, default=2000)
    parser.add_argument("--probe-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    npz = cache_npz(args.data, args.out)
    summary_path = args.out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary["machine"] = machine()
    for name, kw in runs(args):
        folder = args.out / name
        if (folder / "final.json").exists():
            summary[name] = json.loads((folder / "final.json").read_text())
            continue
        config = PretrainConfig.from_dict(dict(dataset="npz", data=str(npz), out=str(folder), resume=True, **kw))
        model = moco_backbone() if config.method == "moco" else None
        if model is not None:
            torch.manual_seed(config.run.seed)
            model = MoCo(
                model,
                dim=config.moco_dim,
                queue_size=config.queue_size,
                momentum=config.moco_momentum,
                temperature=config.temperature,
                bn_splits=config.bn_splits,
            )
        print(f"{time.strftime('%H:%M:%S')} {name}: {json.dumps(kw, default=str)}", flush=True)
        result = pretrain(config, model=model)
        summary[name] = {**result, "config": config.to_dict()}
        print(
            f"{time.strftime('%H:%M:%S')} {name}: "
            + json.dumps({k: result.get(k) for k in ("steps", "train_seconds", "final_loss", "knn_acc", "probe_acc")}),
            flush=True,
        )
        summary_path.write_text(json.dumps(summary, indent=2, default=str))
    lines = [
        "| run | train images | steps | train s | final loss | kNN acc | probe acc |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in summary.items():
        if name == "machine":
            continue
        lines.append(
            f"| {name} | {r.get('config', {}).get('subset', 1.0)} | {r['steps']} | {r['train_seconds']:.0f} "
            f"| {r['final_loss']:.3f} | {100 * r['knn_acc']:.1f} | {100 * r['probe_acc']:.1f} |"
        )
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    from results_file import recorded

    with recorded("ssl_pretrain"):
        main()
