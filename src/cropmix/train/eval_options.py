"""`EvalOptions`: what `evaluate_run` measures on a finished run and how (`evaluate_ood` uses its data
and device part), checked when made, so a bad option fails before any data or model is loaded."""

from __future__ import annotations

import os
from dataclasses import dataclass

from cropmix.evaluate import ClassifierEval, CorruptionOptions
from cropmix.evaluate.imagenet_c import LAYOUT as IMAGENET_C_LAYOUT
from cropmix.evaluate.options import check_count, check_flag

from .distributed import check_device_name
from .settings import OnlyWith, check_only_with, setting

WITH_FGSM = OnlyWith("fgsm", lambda fgsm: fgsm is True, "on")
WITH_CORRUPTIONS = OnlyWith("corruptions", lambda corruptions: corruptions is True, "on")


@dataclass(frozen=True)
class EvalOptions:
    """Options of `evaluate_run` (all) and `evaluate_ood` (max_images and the last five).

    fgsm: FGSM top-1 at budget fgsm_eps (in [0, 1] pixel units). corruptions: accuracy under the 15
    standard corruptions generated on the fly, stored as the published sets store them (uint8, plus
    JPEG q85 above 64 px) unless corruption_storage is False (then float). cifar_c: a folder of
    published CIFAR-10-C / CIFAR-100-C files to score too; imagenet_c: the published ImageNet-C folders
    (an existing folder, checked when made). max_images and max_corruption_images pick fixed random
    subsets (the same for every run, spread over all classes even when the split is sorted by class):
    the first for every metric, the second, taken from the first, for the corruption pass only; with
    cifar_c, max_corruption_images picks a fixed random subset of the files' test images, with
    imagenet_c of each severity folder's images (and then no mCE: it compares full folders).
    skip_bad: unreadable files are skipped and counted ("skipped_files") instead of an error.
    run_data: where the run's dataset is now, if it moved since training.
    """

    fgsm: bool = setting(False, "FGSM top-1")
    fgsm_eps: float = setting(
        8 / 255,
        "FGSM step in [0, 1]",
        cli={"type": "unit_float", "meaning_doc": "8/255"},
        only_with=WITH_FGSM,
    )
    corruptions: bool = setting(False, "accuracy under the 15 standard corruptions x 5 severities")
    corruption_storage: bool = setting(
        True, "score --corruptions on the float outputs, not stored as the published sets are (uint8, and JPEG "
        "q85 above 64 px); such scores do not compare with published ones", flag="--float-corruptions",
        cli={"action": "store_false"}, only_with=WITH_CORRUPTIONS,
    )  # fmt: skip
    cifar_c: str | os.PathLike | None = setting(
        None, "score the published CIFAR-10-C / CIFAR-100-C files in PATH (<corruption>.npy, labels.npy)",
        cli={"metavar": "PATH"},
    )  # fmt: skip
    imagenet_c: str | os.PathLike | None = setting(
        None, "score the published ImageNet-C folders in PATH (<corruption>/<severity>/<class>/<images>)",
        cli={"metavar": "PATH"},
    )  # fmt: skip
    max_images: int | None = setting(
        None, "evaluate on a fixed random subset of the test split", cli={"type": "positive_int"}
    )
    max_corruption_images: int | None = setting(
        None, "corrupt a fixed random subset of this many test images, all classes (with --imagenet-c: of "
        "each severity folder's images)", meaning="all", cli={"type": "positive_int"},
        only_with=OnlyWith("corruptions", WITH_CORRUPTIONS.applies, "on", ("cifar_c", "imagenet_c")),
    )  # fmt: skip
    batch_size: int = setting(512, "images per evaluation batch", cli={"type": "positive_int"})
    workers: int = setting(2, "DataLoader workers reading image files or shards")
    device: str = setting("auto", "where the model runs: auto | cpu | cuda | cuda:N (auto: CUDA if present)")
    progress: bool = setting(True, "no progress bars", flag="--no-progress", cli={"action": "store_false"})
    skip_bad: bool = setting(False, "count, log and skip unreadable image files")
    run_data: str | os.PathLike | None = setting(
        None, "where the run's own dataset is now, if it moved since training", meaning="the path in config.json",
        cli={"metavar": "PATH"},
    )  # fmt: skip

    def __post_init__(self) -> None:
        check_count(self.max_corruption_images, "max_corruption_images")
        check_count(self.max_images, "max_images")
        check_count(self.batch_size, "batch_size", optional=False)
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 0:
            raise ValueError(f"workers (--workers) must be an int >= 0, got {self.workers!r}")
        for name in ("corruptions", "corruption_storage", "skip_bad"):
            check_flag(getattr(self, name), name)
        self.classifier_eval()  # fgsm, fgsm_eps, corruption_storage and progress, checked where they are used
        check_device_name(self.device)
        check_only_with(self)  # --fgsm-eps without --fgsm, --max-corruption-images without corruptions, ...
        if self.imagenet_c is not None:
            _check_imagenet_c(self.imagenet_c)

    def classifier_eval(self) -> ClassifierEval:
        """What `evaluate_classifier` scores on the run's test split."""
        corruptions = CorruptionOptions(storage=self.corruption_storage) if self.corruptions else None
        return ClassifierEval(fgsm=self.fgsm, fgsm_eps=self.fgsm_eps, corruptions=corruptions, progress=self.progress)


def _check_imagenet_c(path: object) -> None:
    """An error naming imagenet_c (--imagenet-c) unless `path` is a path to an existing folder (its
    layout is read before the model is loaded, by `evaluate_run`)."""
    label = "imagenet_c (--imagenet-c)"
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{label} must be a path (str or os.PathLike), got {path!r}")
    if not os.path.isdir(path):
        what = "is a file, not a folder" if os.path.exists(path) else "does not exist"
        raise FileNotFoundError(f"{label}: {os.fspath(path)!r} {what}; give the folder of {IMAGENET_C_LAYOUT}")


def options_or_default(options: EvalOptions | None) -> EvalOptions:
    """`options`, or the default EvalOptions() for None; TypeError for anything else (a dict, say)."""
    if options is None:
        return EvalOptions()
    if not isinstance(options, EvalOptions):
        shown = f"EvalOptions(**{options!r})" if isinstance(options, dict) else "EvalOptions(...)"
        raise TypeError(f"options must be an EvalOptions, got a {type(options).__name__}: pass {shown}")
    return options
