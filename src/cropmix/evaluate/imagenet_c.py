"""Accuracy and mCE on the published ImageNet-C folders (Hendrycks & Dietterich, ICLR 2019).

The folder holds DIR/<corruption>/<severity 1-5>/<wnid class folders>/<images> for the 15 standard
corruptions (`CORRUPTIONS`), or, as the per-category archives extract, DIR/<category>/<corruption>/...
(categories noise, blur, weather, digital); each corruption is looked for at either depth. Other
folders (the extra corruptions, say) are left unscored. A folder holding only some corruptions is
scored as it is: the result names the missing ones.

mCE normalises the model's top-1 error by AlexNet's (`ALEXNET_ERRORS`): CE_c = the sum over severities
of the model's error on corruption c over the sum of AlexNet's, mCE the mean of CE_c over the 15, in
percent. It is given only when all 15 x 5 folders were scored in full; otherwise it is None and
"mce_reason" says why. The unnormalised mean error and accuracy are given for whatever was scored.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn
from tqdm import tqdm

from cropmix.data import Batching, check_not_enclosing, eval_transform, index_folder, make_loader, skipped_files, subset

from .corruptions import CORRUPTIONS
from .ood import class_mapping, ood_accuracy
from .options import check_count

SEVERITIES = (1, 2, 3, 4, 5)
CATEGORIES = ("noise", "blur", "weather", "digital")  # the folders of the per-category archives
LAYOUT = "<corruption>/<severity 1-5>/<class>/<images>"

# AlexNet's top-1 error (a fraction) on each corruption at severities 1-5, the normaliser of mCE: from
# Hendrycks & Dietterich, "Benchmarking Neural Network Robustness to Common Corruptions and
# Perturbations", ICLR 2019 (the values its reference code normalises by).
ALEXNET_ERRORS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.69528, 0.82542, 0.93554, 0.98138, 0.99452),
    "shot_noise": (0.71224, 0.85108, 0.93574, 0.98182, 0.99146),
    "impulse_noise": (0.78374, 0.89808, 0.94870, 0.98720, 0.99548),
    "defocus_blur": (0.65624, 0.73202, 0.85036, 0.91364, 0.94714),
    "glass_blur": (0.64308, 0.75054, 0.88806, 0.91622, 0.93344),
    "motion_blur": (0.58430, 0.70048, 0.82108, 0.89750, 0.92638),
    "zoom_blur": (0.70008, 0.76992, 0.80784, 0.84198, 0.87198),
    "snow": (0.71726, 0.88392, 0.86468, 0.91870, 0.94952),
    "frost": (0.61390, 0.79734, 0.88790, 0.89942, 0.93430),
    "fog": (0.67474, 0.76050, 0.84378, 0.87260, 0.94500),
    "brightness": (0.45140, 0.48502, 0.54048, 0.62166, 0.72440),
    "contrast": (0.64548, 0.76150, 0.88874, 0.97760, 0.99270),
    "elastic_transform": (0.52596, 0.70116, 0.55686, 0.64076, 0.80554),
    "pixelate": (0.52218, 0.54620, 0.73728, 0.87092, 0.91262),
    "jpeg_compression": (0.51002, 0.54718, 0.57294, 0.65458, 0.74778),
}


def imagenet_c_folders(root: str | os.PathLike) -> dict[str, dict[int, Path]]:
    """The severity folders present under `root`: {corruption: {severity: folder}}, corruptions in the
    reference's order. Errors name `root` and what was expected: when it is not a folder, when no
    corruption is found, when a corruption is found at both depths, and when a corruption folder holds
    no severity folders or folders other than 1-5."""
    root = Path(root)
    if not root.is_dir():
        what = "is a file, not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"ImageNet-C folder {str(root)!r} {what}; expected {LAYOUT}")
    found = {}
    for name in CORRUPTIONS:
        places = [p for p in (root / name, *(root / c / name for c in CATEGORIES)) if p.is_dir()]
        if len(places) > 1:
            raise ValueError(f"ImageNet-C folder {str(root)!r} holds {name} twice: {[str(p) for p in places]}")
        if places:
            found[name] = _severity_folders(places[0])
    if not found:
        present = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
        raise ValueError(
            f"ImageNet-C folder {str(root)!r} holds none of the 15 corruptions: expected {LAYOUT} (or "
            f"<category>/{LAYOUT}, category one of {list(CATEGORIES)}), corruptions {list(CORRUPTIONS)}; "
            f"found folders {present}"
        )
    return found


def _severity_folders(folder: Path) -> dict[int, Path]:
    """{severity: folder} of one corruption folder; ValueError naming it when it has none or others, or when one
    links to the corruption folder or above it (its listing would list the whole disk)."""
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    known = [str(s) for s in SEVERITIES]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        said = f"has folders {unknown} that are not severities" if unknown else "has no severity folders"
        raise ValueError(f"ImageNet-C corruption folder {str(folder)!r} {said}: expected {known} (some or all)")
    for name in names:
        check_not_enclosing(folder / name, folder, "severity folder")
    return {int(n): folder / n for n in names}


def corruption_error(name: str, errors: Sequence[float]) -> float:
    """CE of corruption `name`, in percent: the model's top-1 errors (percent) at severities 1-5,
    summed, over AlexNet's summed (`ALEXNET_ERRORS`)."""
    if name not in ALEXNET_ERRORS:
        raise ValueError(f"corruption must be one of {list(ALEXNET_ERRORS)}, got {name!r}")
    if len(errors) != len(SEVERITIES):
        raise ValueError(f"{name}: CE needs the errors at the {len(SEVERITIES)} severities, got {list(errors)}")
    return sum(errors) / sum(ALEXNET_ERRORS[name])


def mean_corruption_error(errors: Mapping[str, Sequence[float]]) -> float:
    """mCE in percent: the mean over the 15 corruptions of `corruption_error`, from the model's top-1
    errors (percent) {corruption: [error at severity 1, ..., 5]}; ValueError naming any corruption missing."""
    missing = [name for name in CORRUPTIONS if name not in errors]
    if missing:
        raise ValueError(f"mCE needs all {len(CORRUPTIONS)} corruptions; errors lacks {missing}")
    return sum(corruption_error(name, errors[name]) for name in CORRUPTIONS) / len(CORRUPTIONS)


def imagenet_c_summary(per_severity: Mapping[str, Sequence[float | None]], subset_of: int | None = None) -> dict:
    """The result of `imagenet_c_accuracy` from top-1 accuracies (percent) {corruption: [severity 1..5,
    None where not scored]}: "mean" accuracy and "mean_error" over the corruptions scored (each the mean
    over its severities scored), "per_corruption", "per_severity", "ce" (for each corruption scored at
    all five severities), "mce" and "mce_reason" (None, or why there is no mCE), "missing". `subset_of`:
    the images scored per folder when a subset was (then no CE nor mCE: they compare full folders)."""
    per_corruption = {}
    for name, accuracies in per_severity.items():
        scored = [a for a in accuracies if a is not None]
        per_corruption[name] = sum(scored) / len(scored)
    mean = sum(per_corruption.values()) / len(per_corruption) if per_corruption else None
    complete = {n: v for n, v in per_severity.items() if None not in v and len(v) == len(SEVERITIES)}
    ce = {} if subset_of else {n: corruption_error(n, [100.0 - a for a in v]) for n, v in complete.items()}
    missing = [name for name in CORRUPTIONS if name not in per_severity]
    reason = None
    if subset_of:
        reason = f"scored on a subset of {subset_of} images per folder, not the full folders mCE compares"
    elif missing:
        reason = f"{len(missing)} of the {len(CORRUPTIONS)} corruptions are missing: {', '.join(missing)}"
    elif len(complete) < len(CORRUPTIONS):
        partial = [n for n in CORRUPTIONS if n not in complete]
        reason = f"not every severity 1-5 is present for {', '.join(partial)}"
    return {
        "mean": mean,
        "mean_error": None if mean is None else 100.0 - mean,
        "per_corruption": per_corruption,
        "per_severity": {n: list(v) for n, v in per_severity.items()},
        "ce": ce,
        "mce": None if reason else mean_corruption_error({n: [100.0 - a for a in v] for n, v in complete.items()}),
        "mce_reason": reason,
        "missing": missing,
    }


def imagenet_c_accuracy(
    model: nn.Module,
    root: str | os.PathLike,
    device: Any,
    model_classes: Sequence[str],
    *,
    image_size: int = 224,
    batching: Batching | None = None,
    max_images: int | None = None,
    progress: bool = True,
) -> dict:
    """Top-1 (percent) of `model` on every severity folder of the ImageNet-C folder `root` (see
    `imagenet_c_folders`), with mCE when all 15 x 5 were scored in full (`imagenet_c_summary`).

    Folder classes are matched to `model_classes` (the names of the model's outputs) by name. The
    images are read as the reference reads them: its files are 224 x 224 and it only centre-crops to
    224, so at image_size 224 they are scored as they are; for a model of another image_size the short
    side is resized to image_size and the centre taken. `batching`: batch size, workers and skip_bad
    (unreadable files are skipped and counted, "skipped_files"); `max_images`: a fixed random subset of
    that many images per severity folder (spread over its classes).
    """
    check_count(max_images, "max_images")
    folders = imagenet_c_folders(root)
    batching = Batching(512) if batching is None else batching
    transform = eval_transform(image_size, False, crop_fraction=1.0)
    jobs = [(name, severity, path) for name, by_severity in folders.items() for severity, path in by_severity.items()]
    per_severity: dict[str, list[float | None]] = {name: [None] * len(SEVERITIES) for name in folders}
    images = skipped = 0
    cut = False  # whether max_images left out images of any folder
    bar = tqdm(total=len(jobs), desc="imagenet-c", unit="folder", file=sys.stderr, disable=not progress, leave=False)
    try:
        for name, severity, path in jobs:
            index = index_folder(path, progress=False)  # one bar for all the folders, above
            try:
                logit_indices, targets = class_mapping(index.classes, model_classes)
            except ValueError as error:
                raise ValueError(f"{path}: {error}") from error
            kept = subset(index, max_images)
            cut = cut or len(kept) < len(index)
            loader = make_loader(kept, transform, batching)
            scored = ood_accuracy(
                model, loader, device, logit_indices, targets, progress=progress, desc=f"{name} {severity}"
            )
            per_severity[name][severity - 1] = scored["top1"]
            images += scored["images"]
            skipped += skipped_files(loader)
            bar.update()
    finally:
        bar.close()
    summary = imagenet_c_summary(per_severity, max_images if cut else None)
    summary.update(data=os.path.realpath(root), images=images, max_images=max_images)
    if batching.skip_bad:
        summary["skipped_files"] = skipped
    return summary
