"""Out-of-distribution test sets scored with a model's own classes: ImageNet-R and ImageNet-A (200 ImageNet
classes each: the logits restricted to those 200, as in hendrycks/imagenet-r and natural-adv-examples
eval.py), ImageNet-Sketch (all 1000), or any labelled folder whose class names the model knows.

Class lists (package data, evaluate/data/): the 1000 ImageNet WordNet IDs in the standard index order
(sorted, as torchvision's ImageFolder orders ImageNet's train folder), and the 200 of ImageNet-R and of
ImageNet-A (sorted, which is their folders' order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib import resources

import torch
from torch import Tensor, nn

from .metrics import calibration_errors
from .predict import batches

CLASS_LISTS = {
    "imagenet": "imagenet_wnids.txt",
    "imagenet-r": "imagenet_r_wnids.txt",
    "imagenet-a": "imagenet_a_wnids.txt",
}
CLASS_SUBSETS = ("imagenet-r", "imagenet-a")


def wnids(name: str) -> list[str]:
    """The WordNet IDs of "imagenet" (1000, index order), "imagenet-r" or "imagenet-a" (200, sorted)."""
    if name not in CLASS_LISTS:
        raise ValueError(f"class list must be one of {sorted(CLASS_LISTS)}, got {name!r}")
    text = resources.files("cropmix.evaluate").joinpath("data", CLASS_LISTS[name]).read_text()
    return text.split()


def output_classes(classes: Sequence[str]) -> list[str]:
    """The names of a model's outputs: the classes of the data it was trained on, or for a 1000-class
    model whose classes are not ImageNet's wnids, those wnids in ImageNet's index order."""
    classes = list(classes)
    if len(classes) == 1000 and not set(wnids("imagenet")) <= set(classes):
        return wnids("imagenet")
    return classes


def class_mapping(
    folder_classes: Sequence[str], model_classes: Sequence[str], class_subset: str | None = None
) -> tuple[Tensor, Tensor]:
    """How to score a folder's classes with a model's outputs: (logit_indices, targets).

    logit_indices: the model outputs the prediction chooses among (the 200 of `class_subset` when given,
    else all of them); targets[k]: the position, in logit_indices, of folder class k (matched by name).
    A folder class the model (or the subset) lacks is an error naming it.
    """
    model_classes = list(model_classes)
    position = {name: i for i, name in enumerate(model_classes)}
    if class_subset is None:
        allowed = model_classes
    elif class_subset in CLASS_SUBSETS:
        allowed = wnids(class_subset)
        unknown = [w for w in allowed if w not in position]
        if unknown:
            raise ValueError(
                f"class_subset {class_subset!r} needs a model with ImageNet's wnid classes; "
                f"the model lacks {len(unknown)} of its 200 classes, e.g. {unknown[:5]}"
            )
    else:
        raise ValueError(f"class_subset must be None or one of {CLASS_SUBSETS}, got {class_subset!r}")
    within = {name: i for i, name in enumerate(allowed)}
    missing = [name for name in folder_classes if name not in within]
    if missing:
        where = f"the {class_subset} classes" if class_subset else "the model's classes"
        raise ValueError(f"the folder has classes that are not among {where}: {missing}")
    logit_indices = torch.tensor([position[name] for name in allowed])
    targets = torch.tensor([within[name] for name in folder_classes])
    return logit_indices, targets


@torch.no_grad()
def ood_accuracy(
    model: nn.Module,
    loader: Iterable,
    device: torch.device | str,
    logit_indices: Tensor,
    targets: Tensor,
    *,
    progress: bool = True,
    desc: str = "ood",
) -> dict[str, float | int]:
    """Top-1 (percent), ECE and RMS calibration error of `model` on a folder's loader, predicting among
    `logit_indices` only, the folder's target k counting as class targets[k] (see `class_mapping`).
    desc: the progress bar's label."""
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    chosen, mapped = logit_indices.to(device), targets.to(device)
    all_probs, all_targets = [], []
    try:
        for images, folder_targets in batches(loader, device, desc=desc, progress=progress):
            logits = model(images).float()[:, chosen]
            all_probs.append(logits.softmax(dim=1).cpu())
            all_targets.append(mapped[folder_targets].cpu())
    finally:
        model.train(was_training)
    if not all_probs:
        raise ValueError("the loader yielded no images")
    probs, labels = torch.cat(all_probs), torch.cat(all_targets)
    top1 = 100.0 * float((probs.argmax(dim=1) == labels).double().mean())  # float32 prints 33.33333432674408
    return {"top1": top1, **calibration_errors(probs, labels), "images": len(labels), "classes": len(chosen)}
