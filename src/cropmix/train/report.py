"""Evaluate a finished run (`evaluate_run`, `evaluate_ood`); comparing runs is in `compare`."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cropmix.data import Batching, eval_transform, fixed_subset, index_folder, make_loader, skipped_files, subset
from cropmix.data.folder import SPLIT_NAMES
from cropmix.data.sources import source_named
from cropmix.models.weights import load_checkpoint

from . import run_files as rf
from .checkpoint import CHECKPOINT, checkpoint_entry, restore_states
from .config import TrainConfig, check_switches
from .data_setup import eval_loader, image_size_of, source_of
from .eval_options import EvalOptions, options_or_default


def load_run_model(
    run_dir: str | os.PathLike,
    device: torch.device | str = "cpu",
    skip_bad: bool = False,
    data: str | os.PathLike | None = None,
) -> tuple[torch.nn.Module, TrainConfig]:
    """The trained model of a run (from its checkpoint) and its config, after checking that the run's data
    still has the classes and image size it was trained on. skip_bad: unreadable files of the run's
    data are skipped (and counted) rather than an error. data: where the run's dataset is now, if it
    moved (default: config.json's)."""
    loaded = _load_run(Path(run_dir), device, skip_bad, data)
    return loaded.model, loaded.config


@dataclass
class _LoadedRun:
    """A run's model with what was opened to check it: its config, its data source and the image side,
    so that evaluation does not open (for a folder: index) the run's data a second time."""

    model: torch.nn.Module
    config: TrainConfig
    source: Any
    size: int


def _load_run(
    run_dir: Path, device: torch.device | str, skip_bad: bool, data: str | os.PathLike | None, progress: bool = True
) -> _LoadedRun:
    """`load_run_model`, keeping the source and the image side (`progress`: bars while opening the data)."""
    from .loop import build_model_for

    rf.check_run_folder(run_dir)
    saved = rf.read_json(run_dir / rf.CONFIG)
    if rf.is_pretrain_run(saved):
        raise ValueError(
            f"{str(run_dir)!r} is a `cropmix pretrain` run ({saved['method']}): evaluate it with "
            f"`cropmix pretrain --eval-only {run_dir / CHECKPOINT}`"
        )
    # Evaluation reads the data the run trained on and never downloads: a received config.json must not
    # make cropmix create folders where it says and fetch into them.
    config = TrainConfig.from_saved(saved, run_dir / rf.CONFIG).replace(download=False)
    if data is not None:  # the run's data has moved since training
        config = config.replace(data=os.fspath(data))
    # Skipped only when this evaluation asks: a run trained with skip_bad does not pass it on unseen.
    config = config.replace(skip_bad=skip_bad and "skip_bad" in source_named(config.data.dataset).switches)
    path = run_dir / CHECKPOINT
    state = load_checkpoint(path)
    epochs = checkpoint_entry(state, "epoch", int, path)
    if epochs < config.optim.epochs:
        raise ValueError(f"run {str(run_dir)!r} stopped after {epochs}/{config.optim.epochs} epochs; resume it first")
    source = source_of(config.data, progress=progress)
    size = image_size_of(config.data, source)
    check_data_matches(state.get("data"), source.num_classes, size, config)
    model = build_model_for(config, source.num_classes, size)
    restore_states(state, {"model": model}, path)
    return _LoadedRun(model.to(device).eval(), config, source, size)


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
            f"the run's data ({config.data.dataset} {config.data.path!r}) no longer matches what it was trained on: "
            + ", ".join(changed)
        )


def evaluate_run(run_dir: str | os.PathLike, options: EvalOptions | None = None) -> dict[str, Any]:
    """The paper's metrics on the run's test split: top-1/5, ECE, RMS (+ reliability.png), and as
    `options` asks (default: nothing more, on the whole split): FGSM top-1, accuracy under the 15
    standard corruptions generated on the fly ("corruption_mean", "corruption"), and accuracy on
    published CIFAR-10-C / CIFAR-100-C files in the folder `options.cifar_c` ("cifar_c_mean",
    "cifar_c"), and on the published ImageNet-C folders in `options.imagenet_c` ("imagenet_c_mean",
    "imagenet_c_mce", "imagenet_c": see `imagenet_c_accuracy`). Written to run_dir/eval.json and merged
    into final.json (not when `options.max_images` scores a subset). The options are checked before any
    work starts (when `EvalOptions` is made), the CIFAR-C files and ImageNet-C layout before the model
    is loaded.
    """
    from cropmix.evaluate import cifar_c_files, evaluate_classifier, imagenet_c_folders

    from .distributed import resolve_device

    options = options_or_default(options)
    cifar_c_labels = None if options.cifar_c is None else cifar_c_files(options.cifar_c)[1]
    if options.imagenet_c is not None:
        imagenet_c_folders(options.imagenet_c)
    run_dir = Path(run_dir)
    dev = resolve_device(options.device)
    run = _load_run(run_dir, dev, options.skip_bad, options.run_data, options.progress)
    model, config, source, size = run.model, run.config, run.source, run.size
    if options.skip_bad and not config.data.skip_bad and options.imagenet_c is None:
        check_switches(
            dataclasses.replace(config.data, skip_bad=True),
            remedy="drop it, or give --imagenet-c folders it would apply to",
        )
    test = subset(source.test, options.max_images or config.data.max_test_images)

    def loader_of(split: Any) -> Any:
        return eval_loader(config.data, source, split, options.batch_size, dev, options.workers)

    corruption_loader = loader_of(subset(test, options.max_corruption_images)) if options.corruptions else None
    png = run_dir / rf.RELIABILITY
    results = evaluate_classifier(
        model, loader_of(test), dev, options.classifier_eval(), reliability_png=png, corruption_loader=corruption_loader
    )
    if options.cifar_c is not None:
        results.update(_cifar_c_pass(model, cifar_c_labels, size, source.num_classes, options, dev))
    if options.imagenet_c is not None:
        results.update(_imagenet_c_pass(model, source.classes, size, options, dev))
    rf.write_json(run_dir / "eval.json", results)
    if options.max_images is None:  # metrics on a subset stay in eval.json only
        merge_final(run_dir / rf.FINAL, results)
    return results


def merge_final(path: Path, results: dict[str, Any]) -> None:
    """Rewrite final.json at `path` as its known results (`run_files.FINAL_KEYS`) updated with `results`."""
    final = rf.read_json(path) if path.is_file() else {}
    rf.write_json(path, {**{k: v for k, v in final.items() if k in rf.FINAL_KEYS}, **results})


def _cifar_c_pass(
    model: torch.nn.Module, labels: Any, size: int, num_classes: int, options: EvalOptions, device: torch.device
) -> dict[str, Any]:
    """evaluate_run's CIFAR-C part: the files' labels checked against the run's classes, a fixed subset."""
    from cropmix.evaluate import cifar_c_accuracy

    folder, limit = options.cifar_c, options.max_corruption_images
    if int(labels.max()) >= num_classes:
        raise ValueError(
            f"cifar_c {str(folder)!r} has labels up to {int(labels.max())}; the run has {num_classes} classes"
        )
    keep = None if limit is None else fixed_subset(len(labels), limit)
    summary = cifar_c_accuracy(model, folder, device, indices=keep, image_size=size, batch_size=options.batch_size,
                               progress=options.progress)  # fmt: skip
    return {"cifar_c_mean": summary["mean"], "cifar_c": summary}


def _imagenet_c_pass(
    model: torch.nn.Module, classes: list[str], size: int, options: EvalOptions, device: torch.device
) -> dict[str, Any]:
    """evaluate_run's ImageNet-C part: every severity folder (or a fixed subset of each), and mCE."""
    from cropmix.evaluate import imagenet_c_accuracy, output_classes

    summary = imagenet_c_accuracy(
        model, options.imagenet_c, device, output_classes(classes), image_size=size,
        batching=_folder_batching(options, device), max_images=options.max_corruption_images, progress=options.progress,
    )  # fmt: skip
    return {"imagenet_c_mean": summary["mean"], "imagenet_c_mce": summary["mce"], "imagenet_c": summary}


def _folder_batching(options: EvalOptions, device: torch.device) -> Batching:
    """How an image folder other than the run's own is read: options.batch_size, options.workers, pinned
    memory for a GPU."""
    return Batching(
        options.batch_size, workers=options.workers, pin_memory=device.type == "cuda", skip_bad=options.skip_bad
    )


def evaluate_ood(
    run_dir: str | os.PathLike,
    data: str | os.PathLike,
    options: EvalOptions | None = None,
    *,
    dataset: str = "imagefolder",
    class_subset: str | None = None,
) -> dict[str, Any]:
    """Top-1, ECE and RMS of a run's model on another labelled folder `data` (<class>/<images>), e.g.
    ImageNet-R or ImageNet-A (class_subset "imagenet-r" / "imagenet-a": the logits restricted to their 200
    ImageNet classes) or ImageNet-Sketch (all classes). Folder classes are matched to the model's by name
    (ImageNet wnids for a 1000-class model). Written to run_dir/ood_<folder name>.json (see
    `ood_result_path`; its name is returned as "file"). `options`: max_images, batch_size, device, progress,
    skip_bad (unreadable files are skipped and counted, "skipped_files") and run_data (where the run's own
    dataset is now, if it moved: its classes name the model's outputs); fgsm, corruptions, cifar_c and
    imagenet_c belong to `evaluate_run` and are refused here.
    """
    from cropmix.evaluate import CLASS_SUBSETS, class_mapping, ood_accuracy, output_classes

    from .distributed import resolve_device

    options = options_or_default(options)
    for name in ("fgsm", "corruptions", "cifar_c", "imagenet_c"):
        if getattr(options, name) not in (False, None):
            raise ValueError(f"options.{name} must be False or None for evaluate_ood, got {getattr(options, name)!r}; "
                             "it scores the run's test split (evaluate_run)")  # fmt: skip
    if dataset != "imagefolder":
        raise ValueError(f"dataset must be 'imagefolder' (a folder of <class>/<images>), got {dataset!r}")
    if class_subset is not None and class_subset not in CLASS_SUBSETS:
        raise ValueError(f"class_subset must be None or one of {CLASS_SUBSETS}, got {class_subset!r}")
    index = index_folder(data, progress=options.progress)
    run_dir = Path(run_dir)
    dev = resolve_device(options.device)
    run = _load_run(run_dir, dev, False, options.run_data, options.progress)
    model, source, size = run.model, run.source, run.size
    try:
        logit_indices, targets = class_mapping(index.classes, output_classes(source.classes), class_subset)
    except ValueError as error:
        splits = sorted(set(SPLIT_NAMES) & set(index.classes))
        example = os.path.join(data, splits[-1]) if splits else ""
        hint = f" (it holds the splits {splits}: give one of them, e.g. {example!r})" if splits else ""
        raise ValueError(f"--data {str(data)!r}{hint}: {error}") from error
    loader = make_loader(subset(index, options.max_images), eval_transform(size, False), _folder_batching(options, dev))
    results = {"data": os.path.realpath(data), "class_subset": class_subset}
    results.update(ood_accuracy(model, loader, dev, logit_indices, targets, progress=options.progress))
    if options.skip_bad:
        results["skipped_files"] = skipped_files(loader)
    path = ood_result_path(run_dir, data)
    results["file"] = path.name  # which ood_*.json holds them, as a folder of the same name may have one
    rf.write_json(path, results)
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
