"""Compare finished runs side by side (`compare_runs`): a table of mean ± sd over seeds and plots.

Training runs (`cropmix train`) are compared on their test metrics, pre-training runs (`cropmix
pretrain`) on theirs (kNN and linear-probe accuracy, final loss); the two kinds are not mixed.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from pathlib import Path
from typing import Any

from cropmix.data.safe_files import FileError

from . import run_files as rf
from .config import TrainConfig
from .run_files import is_pretrain_run

log = logging.getLogger("cropmix.train")

# Columns of the comparison table, in order (those present in some run), for each kind of run.
TABLE_METRICS = (
    "top1", "top5", "ece", "rms", "fgsm_top1", "corruption_mean", "cifar_c_mean", "imagenet_c_mean", "imagenet_c_mce",
    "seconds_per_epoch",
)  # fmt: skip
PRETRAIN_METRICS = ("knn_acc", "probe_acc", "final_loss")
# The metrics drawn in bars.png, for each kind of run.
BAR_METRICS = ("top1", "ece", "rms", "fgsm_top1", "corruption_mean")
# Decimals shown in the table (default 2): the pre-training accuracies are fractions, not percentages.
DECIMALS = {"knn_acc": 3, "probe_acc": 3, "final_loss": 3}
# Config fields that do not make two runs different arms of a comparison.
NOT_ARM_FIELDS = {
    "out", "seed", "progress", "workers", "threads", "device", "eval_batch_size", "resume", "log", "log_every",
    "checkpoint_every",
}  # fmt: skip


def _data_key(config: dict[str, Any]) -> Any:
    """The run's data as config.json names it, a path that exists here resolved (so two spellings of one
    folder or file are the same data)."""
    data = config.get("data")
    if isinstance(data, str) and data and os.path.exists(data):
        return os.path.realpath(data)
    return data


def _arm_key(config: dict[str, Any]) -> str:
    """The settings that make an arm. Fields missing from an older config.json take today's defaults,
    so runs from before a field was added group with new runs that leave it at its default."""
    if is_pretrain_run(config):
        settings = dict(config)
    else:
        settings = {**TrainConfig().to_dict(), **config}
    settings["data"] = _data_key(config)
    return json.dumps({k: v for k, v in sorted(settings.items()) if k not in NOT_ARM_FIELDS}, sort_keys=True)


def unique_runs(run_dirs: list[str | os.PathLike]) -> list[Path]:
    """The run folders in order, each once: a folder given twice (in any spelling of its path) is one run,
    not two seeds; a warning names it. TypeError for one path (a str, bytes or PathLike), which would be
    read as a sequence of characters."""
    if isinstance(run_dirs, (str, bytes, os.PathLike)) or not hasattr(run_dirs, "__iter__"):
        raise TypeError(
            f"run_dirs must be a list of run folders, got the {type(run_dirs).__name__} {run_dirs!r}: pass "
            f"[{str(run_dirs)!r}, ...] (compare_runs(run_dirs, out) takes the output folder second)"
        )
    spellings: dict[str, list[str]] = {}
    for run_dir in run_dirs:
        spellings.setdefault(os.path.realpath(run_dir), []).append(str(run_dir))
    for names in spellings.values():
        if len(names) > 1:
            log.warning("run folder %s was given %d times (%s); counted once", names[0], len(names), ", ".join(names))
    return [Path(names[0]) for names in spellings.values()]


def _check_one_kind(runs: list[tuple[Path, dict[str, Any]]]) -> bool:
    """True when every run is a pre-training run, False when none is; a ValueError naming a folder of
    each kind when they are mixed (their metrics have nothing in common)."""
    pretrain = [path for path, config in runs if is_pretrain_run(config)]
    if not pretrain or len(pretrain) == len(runs):
        return bool(pretrain)
    trained = next(path for path, config in runs if not is_pretrain_run(config))
    raise ValueError(
        f"{str(pretrain[0])!r} is a `cropmix pretrain` run ({', '.join(PRETRAIN_METRICS)}) and {str(trained)!r} "
        f"a `cropmix train` run ({', '.join(TABLE_METRICS[:4])}, ...); compare each kind on its own"
    )


def _warn_different_data(runs: list[tuple[Path, dict[str, Any], dict[str, Any]]]) -> None:
    """One warning line naming the runs and their datasets when the runs are not all on the same data."""
    by_data: dict[str, tuple[str, list[str]]] = {}
    for path, config, final in runs:
        classes = final.get("num_classes", config.get("num_classes"))
        data = f"{config.get('dataset')} {config.get('data')!r}" + (f" ({classes} classes)" if classes else "")
        key = json.dumps([config.get("dataset"), _data_key(config), classes], default=str)
        by_data.setdefault(key, (data, []))[1].append(str(path))
    if len(by_data) > 1:
        groups = "; ".join(f"{', '.join(paths)} on {data}" for data, paths in by_data.values())
        log.warning("the runs are on different datasets, so their metrics do not compare: %s", groups)


def _number(value: Any, path: Path, metric: str) -> float | None:
    """A metric of final.json as a float (None when absent), or a ValueError naming the file and key."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path / rf.FINAL}: {metric} must be a number, got {value!r}")
    return float(value)


def summarise_runs(run_dirs: list[str | os.PathLike]) -> list[dict[str, Any]]:
    """One row per arm (runs that differ only in seed are grouped): label, n, <metric>_mean, <metric>_std
    (std None below two values). Training runs give TABLE_METRICS, pre-training runs PRETRAIN_METRICS."""
    paths = unique_runs(run_dirs)
    for path in paths:
        rf.check_run_folder(path, finished=True)
    runs = [(path, rf.read_json(path / rf.CONFIG), rf.read_json(path / rf.FINAL)) for path in paths]
    pretrain = _check_one_kind([(path, config) for path, config, _ in runs])
    _warn_different_data(runs)
    groups: dict[str, dict[str, Any]] = {}
    for path, config, final in runs:
        default_aug = "standard" if pretrain else TrainConfig().aug.name
        aug = config.get("aug") or default_aug  # an older or partial config.json
        label = str(config.get("name") or (f"{config['method']} {aug}" if pretrain else aug))  # a JSON list too
        group = groups.setdefault(_arm_key(config), {"label": label, "finals": [], "runs": [], "rows": []})
        group["finals"].append((path, final))
        group["runs"].append(str(path))
        group["rows"].append(rf.read_metrics(path))
    labels = [g["label"] for g in groups.values()]
    names = [Path(g["runs"][0]).name for g in groups.values()]
    table = []
    for group, name in zip(groups.values(), names, strict=True):
        label = group["label"]
        if labels.count(label) > 1:  # same aug, different settings: say which run (by its path if names repeat)
            label = f"{label} ({name if names.count(name) == 1 else group['runs'][0]})"
        row: dict[str, Any] = {"label": label, "n": len(group["finals"]), "runs": group["runs"], "rows": group["rows"]}
        row["kind"] = "pretrain" if pretrain else "train"
        for metric in PRETRAIN_METRICS if pretrain else TABLE_METRICS:
            values = [_number(final.get(metric), path, metric) for path, final in group["finals"]]
            values = [v for v in values if v is not None]
            row[f"{metric}_mean"] = statistics.fmean(values) if values else None
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        table.append(row)
    return table


def format_table(table: list[dict[str, Any]]) -> str:
    """A Markdown table: mean ± std over seeds (std omitted where a metric has a single value)."""
    known = TABLE_METRICS + PRETRAIN_METRICS
    metrics = [m for m in known if any(row.get(f"{m}_mean") is not None for row in table)]
    lines = ["| run | n | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for row in table:
        cells = []
        for m in metrics:
            mean, std, digits = row.get(f"{m}_mean"), row.get(f"{m}_std"), DECIMALS.get(m, 2)
            spread = "" if std is None else f" ± {std:.{digits}f}"
            cells.append("-" if mean is None else f"{mean:.{digits}f}{spread}")
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
    """Write out/comparison.md, comparison.json, curves.png (per epoch: test top-1 and loss, or the
    pre-training loss) and bars.png (final metrics; error bars only where there are seeds)."""
    from cropmix.integrations import optional_picture
    from cropmix.viz.curves import CURVE_PANELS, PRETRAIN_PANELS, save_comparison_bars, save_comparison_curves

    if not run_dirs:
        raise ValueError("compare_runs needs at least one run folder, got none")
    out = Path(out)
    rf.check_out_folder(out)
    if (out / rf.CONFIG).exists():  # its curves.png would be replaced by the comparison's
        raise ValueError(f"--out {out} is a run folder (it holds {rf.CONFIG}): choose another --out for the comparison")
    table = summarise_runs(run_dirs)  # every folder is read before anything is written
    pretrain = table[0]["kind"] == "pretrain"
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise FileError(error.errno, f"cannot create --out {out} ({error.strerror}): choose another --out") from error
    rf.write_text_atomic(out / "comparison.md", format_table(table))
    rf.write_json(out / "comparison.json", {"arms": [{k: v for k, v in r.items() if k != "rows"} for r in table]})
    curves = {}
    for row in table:
        for i, rows in enumerate(row["rows"]):
            curves[row["label"] if row["n"] == 1 else f"{row['label']} #{i + 1}"] = rows
    panels = PRETRAIN_PANELS if pretrain else CURVE_PANELS
    optional_picture(save_comparison_curves, out / "curves.png", curves, panels=panels)
    optional_picture(save_comparison_bars, out / "bars.png", table, list(PRETRAIN_METRICS if pretrain else BAR_METRICS))
    return out
