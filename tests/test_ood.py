"""Out-of-distribution evaluation: the class lists, class mapping by name, the 200-class restriction, and
`cropmix eval RUN --data OTHER` on a tiny generated ImageFolder."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cropmix.evaluate import CLASS_SUBSETS, class_mapping, ood_accuracy, wnids

torch.set_num_threads(2)


def test_class_lists_are_unique_wnids_and_the_200_lists_are_subsets_of_the_1000() -> None:
    imagenet = wnids("imagenet")
    assert len(imagenet) == len(set(imagenet)) == 1000
    assert imagenet == sorted(imagenet)  # ImageNet's index order is the sorted wnid order
    assert imagenet[0] == "n01440764" and imagenet[-1] == "n15075141"
    for name in CLASS_SUBSETS:
        subset = wnids(name)
        assert len(subset) == len(set(subset)) == 200
        assert set(subset) <= set(imagenet)
        assert all(w.startswith("n") and len(w) == 9 and w[1:].isdigit() for w in subset)
    # the first ImageNet indices of each list, as hendrycks/imagenet-r and natural-adv-examples eval.py list them
    position = {w: i for i, w in enumerate(imagenet)}
    assert sorted(position[w] for w in wnids("imagenet-r"))[:10] == [1, 2, 4, 6, 8, 9, 11, 13, 22, 23]
    assert sorted(position[w] for w in wnids("imagenet-a"))[:10] == [6, 11, 13, 15, 17, 22, 23, 27, 30, 37]
    with pytest.raises(ValueError, match="class list"):
        wnids("imagenet-b")


def test_class_mapping_by_name_and_unknown_classes_named() -> None:
    model_classes = [f"c{i}" for i in range(10)]
    logits, targets = class_mapping(["c3", "c7"], model_classes)
    assert logits.tolist() == list(range(10)) and targets.tolist() == [3, 7]
    with pytest.raises(ValueError, match=r"zebra"):
        class_mapping(["c3", "zebra"], model_classes)
    with pytest.raises(ValueError, match="wnid"):
        class_mapping(["c3"], model_classes, "imagenet-r")
    with pytest.raises(ValueError, match="class_subset"):
        class_mapping(["c3"], model_classes, "imagenet-x")


class Brightness(nn.Module):
    """Logits peaking at class round(10 * mean brightness): a model whose answers a test can predict."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.classes = classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = x.mean(dim=(1, 2, 3)) * 10
        return -(level[:, None] - torch.arange(self.classes, device=x.device)).abs()


def _loader(levels: list[int], folder_targets: list[int]) -> DataLoader:
    images = torch.stack([torch.full((3, 4, 4), level / 10) for level in levels])
    return DataLoader(TensorDataset(images, torch.tensor(folder_targets)), batch_size=3)


def test_ood_accuracy_maps_folder_targets_to_the_models_classes() -> None:
    logit_indices, targets = class_mapping(["c3", "c7"], [f"c{i}" for i in range(10)])
    # folder target 0 is c3, 1 is c7; the images look like classes 3, 7, 7, 2 (the last one wrong)
    result = ood_accuracy(Brightness(), _loader([3, 7, 7, 2], [0, 1, 1, 0]), "cpu", logit_indices, targets,
                          progress=False)  # fmt: skip
    assert result["top1"] == 75.0 and result["images"] == 4 and result["classes"] == 10
    assert 0 <= result["ece"] <= 100


def test_the_200_class_restriction_changes_the_prediction() -> None:
    imagenet = wnids("imagenet")
    r_classes = wnids("imagenet-r")
    inside = imagenet.index(r_classes[0])  # an ImageNet-R class
    outside = next(i for i, w in enumerate(imagenet) if w not in set(r_classes))

    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            logits = torch.zeros(len(x), 1000)
            logits[:, outside] = 5.0  # the best logit overall is not an ImageNet-R class
            logits[:, inside] = 3.0
            return logits

    loader = _loader([0, 0], [0, 0])
    folder_classes = [r_classes[0]]
    restricted = ood_accuracy(Fixed(), loader, "cpu", *class_mapping(folder_classes, imagenet, "imagenet-r"),
                              progress=False)  # fmt: skip
    full = ood_accuracy(Fixed(), loader, "cpu", *class_mapping(folder_classes, imagenet), progress=False)
    assert restricted["top1"] == 100.0 and restricted["classes"] == 200
    assert full["top1"] == 0.0 and full["classes"] == 1000
