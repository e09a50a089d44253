"""`cropmix compare`: warns on different datasets, counts a folder once, documents its output folder,
compares pre-training runs on their own metrics (and refuses a mix), no error bars for single runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cropmix.cli import main
from cropmix.train import TrainConfig, compare_runs, summarise_runs

ROOT = Path(__file__).resolve().parents[1]


def train_run(folder: Path, seed: int = 0, top1: float = 50.0, **config) -> Path:
    """A finished `cropmix train` run folder, written by hand: config.json, final.json, metrics.jsonl."""
    folder.mkdir(parents=True)
    values = {
        **TrainConfig.from_dict(dict(dataset="npz", data="d.npz", aug="cropmix", epochs=2, seed=seed)).to_dict(),
        **config,
    }
    (folder / "config.json").write_text(json.dumps(values))
    (folder / "final.json").write_text(json.dumps({"top1": top1, "ece": 3.0, "rms": 4.0, "epochs": 2}))
    rows = [{"epoch": e, "train_loss": 2.0 / e, "test_top1": top1 - 2 + e, "lr": 0.1 / e} for e in (1, 2)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def pretrain_run(folder: Path, aug: str = "standard", seed: int = 0, knn: float = 0.4) -> Path:
    """A finished `cropmix pretrain` run folder, written by hand."""
    folder.mkdir(parents=True)
    config = {"method": "moco", "aug": aug, "dataset": "npz", "data": "d.npz", "seed": seed, "steps": 4}
    (folder / "config.json").write_text(json.dumps({**config, "out": str(folder), "world_size": 1}))
    final = {"steps": 4, "final_loss": 5.5, "knn_acc": knn, "probe_acc": knn + 0.1, "probe_train_acc": 0.9}
    (folder / "final.json").write_text(json.dumps(final))
    rows = [{"step": s, "epoch": s / 2, "loss": 6.0 - s / 4, "lr": 0.01} for s in (2, 4)]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_runs_on_different_datasets_warn_in_one_line(tmp_path, capsys) -> None:
    a = train_run(tmp_path / "a")
    b = train_run(tmp_path / "b", dataset="cifar10", data="data/cifar10")
    assert main(["compare", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "different datasets" in line]
    assert len(warnings) == 1, warnings
    assert all(name in warnings[0] for name in (str(a), str(b), "'d.npz'", "'data/cifar10'"))


def test_runs_on_the_same_data_do_not_warn(tmp_path, monkeypatch, caplog) -> None:
    (tmp_path / "d.npz").write_bytes(b"")
    same = [train_run(tmp_path / "a", data=str(tmp_path / "d.npz")), train_run(tmp_path / "b", seed=1)]
    monkeypatch.chdir(tmp_path)  # "d.npz" in b's config.json is the same file as a's absolute path
    with caplog.at_level(logging.WARNING, logger="cropmix"):
        table = summarise_runs(same)
    assert not caplog.records and len(table) == 1 and table[0]["n"] == 2


def test_a_folder_given_twice_counts_once(tmp_path, caplog) -> None:
    a = train_run(tmp_path / "runs" / "a")
    other_spelling = tmp_path / "runs" / "." / ".." / "runs" / "a"
    with caplog.at_level(logging.WARNING, logger="cropmix"):
        (row,) = summarise_runs([a, other_spelling, str(a) + "/"])
    assert row["n"] == 1 and row["top1_std"] is None and row["runs"] == [str(a)]
    assert any("given 3 times" in r.getMessage() and str(a) in r.getMessage() for r in caplog.records)
    compare_runs([a, a], tmp_path / "cmp")
    assert "±" not in (tmp_path / "cmp" / "comparison.md").read_text()


def test_seeds_still_group(tmp_path) -> None:
    runs = [train_run(tmp_path / f"s{seed}", seed=seed, top1=50.0 + seed) for seed in (0, 1)]
    (row,) = summarise_runs(runs)
    assert row["n"] == 2 and row["top1_mean"] == pytest.approx(50.5) and row["top1_std"] > 0


def test_the_default_output_folder_is_documented(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    assert "default: runs/compare" in " ".join(capsys.readouterr().out.split())
    training = (ROOT / "docs" / "training.md").read_text()
    assert "runs/compare" in training and "knn_acc" in training


def test_pretrain_runs_compare_on_their_own_metrics(tmp_path, capsys) -> None:
    runs = [pretrain_run(tmp_path / f"moco{seed}", seed=seed, knn=0.4 + seed / 10) for seed in (0, 1)]
    runs.append(pretrain_run(tmp_path / "moco-cm", aug="cropmix", knn=0.55))
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    table = capsys.readouterr().out
    assert "| run | n | knn_acc | probe_acc | final_loss |" in table
    assert "| moco standard | 2 | 0.450 ± 0.071 | 0.550 ± 0.071 | 5.500 ± 0.000 |" in table
    assert "| moco cropmix | 1 | 0.550 | 0.650 | 5.500 |" in table
    assert "| - " not in table
    assert {"curves.png", "bars.png"} <= {p.name for p in (tmp_path / "cmp").iterdir()}


def test_a_mix_of_pretrain_and_train_runs_is_refused_in_one_line(tmp_path, capsys) -> None:
    moco, trained = pretrain_run(tmp_path / "moco"), train_run(tmp_path / "cls")
    assert main(["compare", str(trained), str(moco), "--out", str(tmp_path / "cmp")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(moco) in error and "pretrain" in error
    assert not (tmp_path / "cmp").exists(), "nothing is written"


def bars_axes(monkeypatch, table: list[dict], tmp_path: Path) -> list:
    """The axes of bars.png for `table`, kept open by catching the figure before it is saved."""
    import cropmix.viz.curves as curves

    figures = []
    monkeypatch.setattr(curves, "_save_png", lambda plt, fig, path: figures.append(fig) or path)
    curves.save_comparison_bars(table, ["top1", "ece"], tmp_path / "bars.png")
    return figures[0].axes


def error_bar_artists(ax) -> int:
    """Error-bar lines and caps drawn on `ax` (a bar chart has no other lines or collections)."""
    return len(ax.lines) + len(ax.collections)


def test_no_error_bars_for_single_runs(tmp_path, monkeypatch) -> None:
    single = summarise_runs([train_run(tmp_path / "a"), train_run(tmp_path / "b", aug="baseline", top1=40.0)])
    assert all(error_bar_artists(ax) == 0 for ax in bars_axes(monkeypatch, single, tmp_path))
    seeded = summarise_runs([train_run(tmp_path / f"s{seed}", seed=seed, top1=50.0 + seed) for seed in (0, 1)])
    seeded += single
    top1_ax = bars_axes(monkeypatch, seeded, tmp_path)[0]
    assert error_bar_artists(top1_ax) > 0, "an arm with seeds keeps its error bar"


def test_a_config_without_aug_takes_the_default_label(tmp_path) -> None:
    run = train_run(tmp_path / "a")
    config = json.loads((run / "config.json").read_text())
    del config["aug"]
    (run / "config.json").write_text(json.dumps(config))
    assert [row["label"] for row in summarise_runs([run])] == [TrainConfig().aug.name]


def test_a_missing_metric_is_marked_not_drawn_as_zero(tmp_path, monkeypatch) -> None:
    table = [
        {"label": "a", "n": 1, "top1_mean": 60.0, "ece_mean": 5.0},
        {"label": "b", "n": 1, "top1_mean": 62.0, "ece_mean": None},
    ]
    top1_ax, ece_ax = bars_axes(monkeypatch, table, tmp_path)
    assert len(top1_ax.patches) == 2 and not top1_ax.texts
    assert [bar.get_height() for bar in ece_ax.patches] == [5.0], "no zero-height bar for the missing run"
    assert [text.get_text() for text in ece_ax.texts] == ["n/a"]


def test_imagenet_c_mean_and_mce_are_columns_when_scored(tmp_path) -> None:
    plain = train_run(tmp_path / "a")
    scored = train_run(tmp_path / "b", aug="baseline")
    final = json.loads((scored / "final.json").read_text())
    final.update(imagenet_c_mean=41.5, imagenet_c_mce=72.25)
    (scored / "final.json").write_text(json.dumps(final))
    compare_runs([plain, scored], tmp_path / "cmp")
    header, _, first, second = (tmp_path / "cmp" / "comparison.md").read_text().splitlines()
    assert "| imagenet_c_mean | imagenet_c_mce |" in header
    assert first.endswith("| - | - |") and second.endswith("| 41.50 | 72.25 |")
    compare_runs([plain], tmp_path / "cmp1")
    assert "imagenet_c" not in (tmp_path / "cmp1" / "comparison.md").read_text()


def test_what_is_not_a_finished_run_is_said_to_be_what_it_is(tmp_path, capsys) -> None:
    done, stopped = train_run(tmp_path / "done"), train_run(tmp_path / "stopped")
    (stopped / "final.json").unlink()
    for given, said in (
        (tmp_path, "is not a run folder (no config.json)"),
        (stopped, "has not finished (no final.json): resume it"),
        (tmp_path / "nowhere", "does not exist"),
    ):
        assert main(["compare", str(done), str(given), "--out", str(tmp_path / "cmp")]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and said in error, error
    assert not (tmp_path / "cmp").exists(), "nothing is written"


def test_run_names_from_config_files_are_drawn_as_plain_text(tmp_path, capsys) -> None:
    pytest.importorskip("matplotlib")
    maths = "$" + "{" * 50 + "x" + "}" * 50 + "$"  # matplotlib's maths parser recurses past Python's limit
    runs = [
        train_run(tmp_path / "a", name=maths),
        train_run(tmp_path / "b", aug="baseline", name=["not", "a", "string"]),
        train_run(tmp_path / "c", aug="rrc", name="x" * 5000),
    ]
    assert main(["compare", *map(str, runs), "--out", str(tmp_path / "cmp")]) == 0, capsys.readouterr().err
    table = capsys.readouterr().out
    assert "['not', 'a', 'string']" in table
    assert {"curves.png", "bars.png"} <= {p.name for p in (tmp_path / "cmp").iterdir()}


def test_a_label_is_escaped_and_cut_for_matplotlib() -> None:
    from cropmix.viz.curves import MAX_LABEL_CHARS, plain_label

    assert plain_label("a $x$ b") == r"a \$x\$ b"
    assert plain_label("y" * 500) == "y" * (MAX_LABEL_CHARS - 1) + "…"


def test_a_run_named_with_a_leading_underscore_is_in_the_legend(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from cropmix.viz.curves import save_comparison_curves

    shown = []
    legend = plt.Axes.legend

    def recorded(ax, *args, **kwargs):
        shown.extend(text.get_text() for text in legend(ax, *args, **kwargs).get_texts())

    rows = [{"epoch": 1, "train_loss": 1.0, "test_top1": 50.0}, {"epoch": 2, "train_loss": 0.5, "test_top1": 60.0}]
    monkeypatch.setattr(plt.Axes, "legend", recorded)
    save_comparison_curves({"_ablation": rows, "baseline": rows}, tmp_path / "curves.png")
    assert [text.strip() for text in shown] == ["_ablation", "baseline"]


def test_metrics_that_are_not_numbers_are_not_drawn(tmp_path, monkeypatch) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from cropmix.viz.curves import save_training_curves

    drawn = []
    plot = plt.Axes.plot

    def recorded(ax, *args, **kwargs):
        drawn.append([list(values) for values in args])
        return plot(ax, *args, **kwargs)

    # A planted metrics.jsonl: strings would be drawn as categories, a tick label each (minutes for thousands).
    rows = [{"epoch": f"e{i}", "train_loss": 1.0, "test_top1": f"v{i}", "train_top1": True} for i in range(300)]
    rows += [{"epoch": 1, "train_loss": 0.5, "test_top1": 60.0, "train_top1": 70.0}, {"train_loss": 0.4}]
    monkeypatch.setattr(plt.Axes, "plot", recorded)
    save_training_curves(rows, tmp_path / "curves.png")
    assert drawn == [[[1], [0.5]], [[1], [60.0]], [[1], [70.0]]]


def test_a_file_as_out_is_refused_in_one_line(tmp_path, capsys) -> None:
    run = train_run(tmp_path / "cls")
    (tmp_path / "file").write_text("x")
    assert main(["compare", str(run), "--out", str(tmp_path / "file")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "is a file, not a folder: choose another --out" in error, error
    assert main(["compare", str(run), "--out", str(tmp_path / "file" / "cmp")]) == 2
    assert "choose another --out" in capsys.readouterr().err
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert main(["compare", str(run), "--out", str(tmp_path / "dangling")]) == 2
    assert "is a link to nothing, not a folder: choose another --out" in capsys.readouterr().err


def test_a_run_folder_as_out_is_refused_and_keeps_its_curves(tmp_path, capsys) -> None:
    a, b = train_run(tmp_path / "a"), train_run(tmp_path / "b", seed=1)
    (a / "curves.png").write_bytes(b"the run's own")
    assert main(["compare", str(a), str(b), "--out", str(a)]) == 2
    assert f"--out {a} is a run folder (it holds config.json)" in capsys.readouterr().err
    assert (a / "curves.png").read_bytes() == b"the run's own" and not (a / "comparison.md").exists()


def test_arms_of_one_label_in_folders_of_one_name_keep_a_curve_each(tmp_path, monkeypatch) -> None:
    import cropmix.viz.curves as curves

    drawn: dict = {}
    monkeypatch.setattr(curves, "save_comparison_curves", lambda runs, path, panels: drawn.update(runs))
    runs = [train_run(tmp_path / "a" / "run", lr=0.1), train_run(tmp_path / "b" / "run", lr=0.05, top1=40.0)]
    compare_runs(runs, tmp_path / "cmp")
    assert len(drawn) == 2 and [rows[-1]["test_top1"] for rows in drawn.values()] == [50.0, 40.0], list(drawn)
    assert [row["label"] for row in summarise_runs(runs)] == [f"cropmix ({run})" for run in runs]
