"""`EvalOptions`: what `evaluate_run` measures on a finished run and how (`evaluate_ood` uses its data
and device part), checked when made, so a bad option fails before any data or model is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cropmix.evaluate import ClassifierEval, CorruptionOptions
from cropmix.evaluate.options import check_count, check_flag

from .distributed import check_device_name


@dataclass(frozen=True)
class EvalOptions:
    """Options of `evaluate_run` (all) and `evaluate_ood` (max_images and the last five).

    fgsm: FGSM top-1 at budget fgsm_eps (in [0, 1] pixel units). corruptions: accuracy under the 15
    standard corruptions generated on the fly, stored as the published sets store them (uint8, plus
    JPEG q85 above 64 px) unless corruption_storage is False (then float). cifar_c: a folder of
    published CIFAR-10-C / CIFAR-100-C files to score too. max_images and max_corruption_images pick
    fixed random subsets (the same for every run, spread over all classes even when the split is sorted
    by class): the first for every metric, the second, taken from the first, for the corruption pass
    only; with cifar_c, max_corruption_images picks a fixed random subset of the files' test images.
    skip_bad: unreadable files are skipped and counted ("skipped_files") instead of an error.
    run_data: where the run's dataset is now, if it moved since training.
    """

    fgsm: bool = False
    fgsm_eps: float = 8 / 255
    corruptions: bool = False
    corruption_storage: bool = True
    cifar_c: str | os.PathLike | None = None
    max_images: int | None = None
    max_corruption_images: int | None = None
    batch_size: int = 512
    device: str = "auto"
    progress: bool = True
    skip_bad: bool = False
    run_data: str | os.PathLike | None = None

    def __post_init__(self) -> None:
        check_count(self.max_corruption_images, "max_corruption_images")
        check_count(self.max_images, "max_images")
        check_count(self.batch_size, "batch_size", optional=False)
        for name in ("corruptions", "corruption_storage", "skip_bad"):
            check_flag(getattr(self, name), name)
        self.classifier_eval()  # fgsm, fgsm_eps, corruption_storage and progress, checked where they are used
        check_device_name(self.device)

    def classifier_eval(self) -> ClassifierEval:
        """What `evaluate_classifier` scores on the run's test split."""
        corruptions = CorruptionOptions(storage=self.corruption_storage) if self.corruptions else None
        return ClassifierEval(fgsm=self.fgsm, fgsm_eps=self.fgsm_eps, corruptions=corruptions, progress=self.progress)
