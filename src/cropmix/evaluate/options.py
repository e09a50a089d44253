"""What an evaluation measures, stated once: `CorruptionOptions` (shared by `corruption_accuracy`,
`cifar_c_accuracy` and `evaluate_classifier`) and `ClassifierEval` (what `evaluate_classifier` scores).

Both are frozen and check their fields when made, so a bad option fails before any image is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from .fgsm import check_eps


def check_count(value: object, name: str, *, optional: bool = True) -> None:
    """ValueError naming `name` unless `value` is an int >= 1 (or None, when `optional`)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        accepted = "None or an int" if optional else "an int"
        raise ValueError(f"{name} must be {accepted} >= 1, got {value!r}")


def check_flag(value: object, name: str) -> None:
    """TypeError naming `name` unless `value` is True or False."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True)
class CorruptionOptions:
    """Which corrupted copies to score.

    names: corruptions to score (default: the 15 standard ones; for `cifar_c_accuracy`, every file of
    the folder). severities: of 1..5. storage and seed apply to corruptions generated on the fly
    (`corruption_accuracy`); published files are stored already. storage=True scores the images as the
    published sets hold them (uint8, plus JPEG q85 above 64 px), False the float outputs; each
    (corruption, severity) pair draws from its own generator seeded from `seed`.
    """

    names: tuple[str, ...] | None = None
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    storage: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.names is not None:
            if isinstance(self.names, str) or not all(isinstance(n, str) for n in self.names):
                raise TypeError(f"names must be None or a sequence of corruption names, got {self.names!r}")
            object.__setattr__(self, "names", tuple(self.names))
        severities = self.severities
        if isinstance(severities, (int, str)) or not severities:
            raise ValueError(f"severities must be a non-empty sequence of ints in 1..5, got {severities!r}")
        if any(isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= 5 for s in severities):
            raise ValueError(f"severities must be a non-empty sequence of ints in 1..5, got {list(severities)!r}")
        object.__setattr__(self, "severities", tuple(severities))
        check_flag(self.storage, "storage")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int, got {self.seed!r}")


@dataclass(frozen=True)
class ClassifierEval:
    """What `evaluate_classifier` scores besides clean top-1/top-5 and calibration.

    fgsm: FGSM top-1 at budget fgsm_eps (in [0, 1] pixel units). corruptions: the corruption pass, with
    these options (None: none). n_bins: calibration bins. amp: predict under autocast. progress: bars.
    """

    fgsm: bool = False
    fgsm_eps: float = 8 / 255
    corruptions: CorruptionOptions | None = None
    n_bins: int = 15
    amp: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("fgsm", "amp", "progress"):
            check_flag(getattr(self, name), name)
        check_eps(self.fgsm_eps, "fgsm_eps")
        if self.corruptions is not None and not isinstance(self.corruptions, CorruptionOptions):
            raise TypeError(f"corruptions must be None or a CorruptionOptions, got {self.corruptions!r}")
        check_count(self.n_bins, "n_bins", optional=False)
