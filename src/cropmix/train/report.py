"""Evaluate a finished run (`evaluate_run`) and compare runs side by side (`compare_runs`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import statistics
from pathlib import Path
from typing import Any

import torch

from cropmix.data import eval_transform, fixed_subset, index_folder, make_loader, skipped_files, subset
from cropmix.models.weights import load_checkpoint

from . import run_files as rf
from .checkpoint import CHECKPOINT, checkpoint_entry, restore_states
from .config import TrainConfig
from .data_setup import eval_loader, image_size_of, source_of

# Columns of the comparison table, in order (those present in some run).
TABLE_METRICS = ("top1", "top5", "ece", "rms", "fgsm_top1", "corruption_mean", "cifar_c_mean", "seconds_per_epoch")
# Config fields that do not make two runs different arms of a comparison.
NOT_ARM_FIELDS = {"out", "seed", "progress", "workers", "threads", "device", "eval_batch_size"}


def load_run_model(
    run_dir: str | os.PathLike, device: torch.device | str = "cpu", skip_bad: bool = False
) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained model of a run (from its checkpoint) and its config, after checking that the run's data
    still has the classes and image size it was trained on. skip_bad: unreadable files of the run's
    data are skipped (and counted) rather than an error."""
    from .loop import build_model_for

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {str(run_dir)!r} does not exist")
    config = TrainConfig.load(run_dir / rf.CONFIG)
    if skip_bad:
        config = dataclasses.replace(config, skip_bad=True)
    path = run_dir / CHECKPOINT
    state = load_checkpoint(path)
    epochs = checkpoint_entry(state, "epoch", int, path)
    if epochs < config.epochs:
        raise ValueError(f"run {str(run_dir)!r} stopped after {epochs}/{config.epochs} epochs; resume it first")
    source = source_of(config, skip_bad=skip_bad)
    size = image_size_of(config, source)
    check_data_matches(state.get("data"), source.num_classes, size, config)
    model = build_model_for(config, source.num_classes, size)
    restore_states(state, {"model": model}, path)
    return model.to(device).eval(), config


def check_data_matches(trained: Any, num_classes: int, image_size: int, config: TrainConfig) -> None:
    """ValueError in one line when the run's data (as its config.json names it) no longer has the
    classes and image size the checkpoint records it was trained on (`trained`: None for a checkpoint
    that records neither)."""
    if not isinstance(trained, dict):
        return
    now = {"num_classes": num_classes, "image_size": image_size}
    changed = [f"{k} {trained[k]} -> {v}" for k, v in now.items() if k in trained and trained[k] != v]
    if changed:
        raise ValueError(
            f"the run's data ({config.dataset} {config.data!r}) no longer matches what it was trained on: "
            + ", ".join(changed)
        )


def _check_eval_options(fgsm_eps: float, max_corruption_images: int | None, max_images: int | None, batch_size: int):
    """ValueError naming the first bad option of `evaluate_run`, before any data or model is loaded."""
    limits = {"max_corruption_images": max_corruption_images, "max_images": max_images, "batch_size": batch_size}
    for name, value in limits.items():
        if value is None and name != "batch_size":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            accepted = "an int" if name == "batch_size" else "None or an int"
            raise ValueError(f"{name} must be {accepted} >= 1, got {value!r}")
    if isinstance(fgsm_eps, bool) or not isinstance(fgsm_eps, (int, float)) or not 0 <= fgsm_eps <= 1:
        raise ValueError(f"fgsm_eps must be a number in [0, 1] (pixel units, e.g. 8/255), got {fgsm_eps!r}")


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    fgsm: bool = False,
    corruptions: bool = False,
    fgsm_eps: float = 8 / 255,
    max_corruption_images: int | None = None,
    max_images: int | None = None,
    device: str = "auto",
    batch_size: int = 512,
    progress: bool = True,
    cifar_c: str | os.PathLike | None = None,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """The paper's metrics on the run's test split: top-1/5, ECE, RMS (+ reliability.png), and optionally
    FGSM top-1, accuracy under the 15 standard corruptions generated on the fly ("corruption_mean",
    "corruption"), and accuracy on published CIFAR-10-C / CIFAR-100-C files in the folder `cifar_c`
    ("cifar_c_mean", "cifar_c"). Written to run_dir/eval.json and merged into final.json.

    max_images and max_corruption_images pick fixed random subsets (the same for every run, spread over
    all classes even when the split is sorted by class): the first for every metric, the second, taken
    from the first, for the corruption pass only; with cifar_c, max_corruption_images picks a fixed random
    subset of the files' test images. skip_bad: unreadable test files are skipped and counted
    ("skipped_files") instead of an error. All options are checked before any work starts.
    """
    from cropmix.evaluate import cifar_c_files, evaluate_classifier

    from .distributed import resolve_device

    _check_eval_options(fgsm_eps, max_corruption_images, max_images, batch_size)
    cifar_c_labels = None if cifar_c is None else cifar_c_files(cifar_c)[1]
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    model, config = load_run_model(run_dir, dev, skip_bad=skip_bad)
    source = source_of(config, skip_bad=skip_bad)
    size = image_size_of(config, source)
    test = subset(source.test, max_images or config.max_test_images)

    def loader_of(split: Any) -> Any:
        return eval_loader(config, source, split, batch_size, dev)

    results = evaluate_classifier(
        model, loader_of(test), dev, fgsm=fgsm, corruptions=corruptions, reliability_png=run_dir / rf.RELIABILITY,
        fgsm_eps=fgsm_eps, progress=progress,
        corruption_loader=loader_of(subset(test, max_corruption_images)) if corruptions else None,
    )  # fmt: skip
    if cifar_c is not None:
        limits = (max_corruption_images, batch_size, progress)
        results.update(_cifar_c_pass(model, cifar_c, cifar_c_labels, dev, size, source.num_classes, *limits))
    rf.write_json(run_dir / "eval.json", results)
    if max_images is None:  # metrics on a subset stay in eval.json only
        merge_final(run_dir / rf.FINAL, results)
    return results


def merge_final(path: Path, results: dict[str, Any]) -> None:
    """Rewrite final.json at `path` as its known results (`run_files.FINAL_KEYS`) updated with `results`."""
    final = rf.read_json(path) if path.is_file() else {}
    rf.write_json(path, {**{k: v for k, v in final.items() if k in rf.FINAL_KEYS}, **results})


def _cifar_c_pass(model, folder, labels, device, size, num_classes, limit, batch_size, progress) -> dict[str, Any]:
    """evaluate_run's CIFAR-C part: the files' labels checked against the run's classes, a fixed subset."""
    from cropmix.evaluate import cifar_c_accuracy

    if int(labels.max()) >= num_classes:
        raise ValueError(
            f"cifar_c {str(folder)!r} has labels up to {int(labels.max())}; the run has {num_classes} classes"
        )
    keep = None if limit is None else fixed_subset(len(labels), limit)
    summary = cifar_c_accuracy(model, folder, device, indices=keep, image_size=size, batch_size=batch_size,
                               progress=progress)  # fmt: skip
    return {"cifar_c_mean": summary["mean"], "cifar_c": summary}


def evaluate_ood(
    run_dir: str | os.PathLike,
    data: str | os.PathLike,
    *,
    dataset: str = "imagefolder",
    class_subset: str | None = None,
    max_images: int | None = None,
    device: str = "auto",
    batch_size: int = 512,
    progress: bool = True,
    skip_bad: bool = False,
) -> dict[str, Any]:
    """Top-1, ECE and RMS of a run's model on another labelled folder `data` (<class>/<images>), e.g.
    ImageNet-R or ImageNet-A (class_subset "imagenet-r" / "imagenet-a": the logits restricted to their 200
    ImageNet classes) or ImageNet-Sketch (all classes). Folder classes are matched to the model's by name
    (ImageNet wnids for a 1000-class model). Written to run_dir/ood_<folder name>.json (see
    `ood_result_path`). skip_bad: unreadable files are skipped and counted ("skipped_files").
    """
    from cropmix.evaluate import CLASS_SUBSETS, class_mapping, ood_accuracy, wnids

    from .distributed import resolve_device

    _check_eval_options(0.0, None, max_images, batch_size)
    if dataset != "imagefolder":
        raise ValueError(f"dataset must be 'imagefolder' (a folder of <class>/<images>), got {dataset!r}")
    if class_subset is not None and class_subset not in CLASS_SUBSETS:
        raise ValueError(f"class_subset must be None or one of {CLASS_SUBSETS}, got {class_subset!r}")
    index = index_folder(data)
    run_dir = Path(run_dir)
    dev = resolve_device(device)
    model, config = load_run_model(run_dir, dev)
    source = source_of(config)
    model_classes = list(source.classes)
    if len(model_classes) == 1000 and not set(wnids("imagenet")) <= set(model_classes):
        model_classes = wnids("imagenet")  # a 1000-class model without wnid names: ImageNet's index order
    logit_indices, targets = class_mapping(index.classes, model_classes, class_subset)
    size = image_size_of(config, source)
    loader = make_loader(subset(index, max_images), eval_transform(size, False), batch_size=batch_size,
                         train=False, workers=2, skip_bad=skip_bad)  # fmt: skip
    results = {"data": os.path.realpath(data), "class_subset": class_subset}
    results.update(ood_accuracy(model, loader, dev, logit_indices, targets, progress=progress))
    if skip_bad:
        results["skipped_files"] = skipped_files(loader)
    rf.write_json(ood_result_path(run_dir, data), results)
    return results


def ood_result_path(run_dir: Path, data: str | os.PathLike) -> Path:
    """run_dir/ood_<folder name>.json, unless that file holds the results of another folder of the same
    name: then ood_<folder name>-<hash of the folder's path>.json, so no folder's results replace another's."""
    resolved = os.path.realpath(data)
    name = Path(resolved).name or "root"
    path = run_dir / f"ood_{name}.json"
    if path.is_file():
        try:
            earlier = rf.read_json(path).get("data")
        except ValueError:  # not a results file of ours: leave it, write beside it
            earlier = None
        if earlier != resolved:
            digest = hashlib.sha256(resolved.encode()).hexdigest()[:8]
            path = run_dir / f"ood_{name}-{digest}.json"
    return path


def _arm_key(config: dict[str, Any]) -> str:
    """The settings that make an arm. Fields missing from an older config.json take today's defaults,
    so runs from before a field was added group with new runs that leave it at its default."""
    default = TrainConfig()
    settings = {**{f.name: getattr(default, f.name) for f in dataclasses.fields(TrainConfig)}, **config}
    return json.dumps({k: v for k, v in sorted(settings.items()) if k not in NOT_ARM_FIELDS}, sort_keys=True)


def summarise_runs(run_dirs: list[str | os.PathLike]) -> list[dict[str, Any]]:
    """One row per arm (runs that differ only in seed are grouped): label, n, <metric>_mean, <metric>_std."""
    groups: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        run_dir = Path(run_dir)
        config = rf.read_json(run_dir / rf.CONFIG)
        final = rf.read_json(run_dir / rf.FINAL)
        group = groups.setdefault(
            _arm_key(config), {"label": config.get("name") or config["aug"], "finals": [], "runs": [], "rows": []}
        )
        group["finals"].append(final)
        group["runs"].append(str(run_dir))
        group["rows"].append(rf.read_metrics(run_dir))
    labels = [g["label"] for g in groups.values()]
    table = []
    for group in groups.values():
        label = group["label"]
        if labels.count(label) > 1:  # same aug, different settings: say which run
            label = f"{label} ({Path(group['runs'][0]).name})"
        row: dict[str, Any] = {"label": label, "n": len(group["finals"]), "runs": group["runs"], "rows": group["rows"]}
        for metric in TABLE_METRICS:
            values = [f[metric] for f in group["finals"] if f.get(metric) is not None]
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        table.append(row)
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    """A Markdown table: mean ± std over seeds (std omitted for single runs)."""
    metrics = [m for m in TABLE_METRICS if any(row[f"{m}_mean"] is not None for row in table)]
    lines = ["| run | n | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for row in table:
        cells = []
        for m in metrics:
            mean, std = row[f"{m}_mean"], row[f"{m}_std"]
            cells.append("-" if mean is None else (f"{mean:.2f}" if row["n"] == 1 else f"{mean:.2f} ± {std:.2f}"))
        lines.append(f"| {markdown_cell(row['label'])} | {row['n']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def markdown_cell(text: str) -> str:
    """`text` as one Markdown table cell: line breaks become spaces and | < > are escaped, so a run
    name cannot add rows, columns or HTML to the table."""
    text = " ".join(str(text).split())
    for char, escaped in (("\\", "\\\\"), ("|", "\\|"), ("<", "&lt;"), (">", "&gt;")):
        text = text.replace(char, escaped)
    return text


def compare_runs(run_dirs: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Write out/comparison.md, comparison.json, curves.png (test top-1 and loss per epoch) and bars.png."""
    from cropmix.viz.curves import save_comparison_bars, save_comparison_curves

    if not run_dirs:
        raise ValueError("compare_runs needs at least one run folder, got none")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = summarise_runs(run_dirs)
    text = format_table(table)
    rf.write_text_atomic(out / "comparison.md", text)
    rf.write_json(out / "comparison.json", {"arms": [{k: v for k, v in r.items() if k != "rows"} for r in table]})
    curves = {}
    for row in table:
        for i, rows in enumerate(row["rows"]):
            curves[row["label"] if row["n"] == 1 else f"{row['label']} #{i + 1}"] = rows
    save_comparison_curves(curves, out / "curves.png")
    save_comparison_bars(table, ["top1", "ece", "rms", "fgsm_top1", "corruption_mean"], out / "bars.png")
    return out
