"""`cropmix eval`: options checked before any work, corruption subsets spread over all classes, --no-progress,
CIFAR-C files (--cifar-c) and other labelled folders (--data)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SORTED_RUN_CLASSES
from PIL import Image

import cropmix.evaluate.classifier as classifier
from cropmix.evaluate import CorruptionOptions
from cropmix.train import EvalOptions, evaluate_run


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropmix", *args], capture_output=True, text=True, timeout=300)


def test_corruption_subset_covers_all_classes_of_a_sorted_split(sorted_run, monkeypatch) -> None:
    real = classifier.corruption_accuracy
    seen: list[int] = []

    def spy(model, loader, device, *args, max_images=None, **kwargs):
        for _, targets in loader:  # the images the corruption pass scores (the first max_images when given)
            seen.extend(targets.tolist())
        if max_images is not None:
            del seen[max_images:]
        return real(
            model, loader, device, CorruptionOptions(("contrast",), (1,)), max_images=max_images, progress=False
        )

    monkeypatch.setattr(classifier, "corruption_accuracy", spy)
    options = EvalOptions(corruptions=True, max_corruption_images=30, device="cpu", progress=False)
    results = evaluate_run(sorted_run, options)
    assert len(seen) == 30
    assert len(set(seen)) >= 8, f"30 of 200 class-sorted images should span most of {SORTED_RUN_CLASSES} classes"
    assert set(results["corruption"]["per_corruption"]) == {"contrast"}
    # fixed: the same subset every time
    first = list(seen)
    seen.clear()
    evaluate_run(sorted_run, options)
    assert seen == first


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--max-corruption-images", "0", "--max-corruption-images: must be >= 1, got 0"),
        ("--max-images", "-3", "--max-images: must be >= 1, got -3"),
        ("--batch-size", "0", "--batch-size: must be >= 1, got 0"),
        ("--fgsm-eps", "8", "--fgsm-eps: must be in [0, 1]"),
    ],
)
def test_bad_options_are_named_and_refused_before_any_work(sorted_run, option, value, message) -> None:
    for name in ("reliability.png", "eval.json"):
        (sorted_run / name).unlink(missing_ok=True)
    result = cli("eval", str(sorted_run), "--corruptions", "--fgsm", option, value)
    assert result.returncode == 2
    assert message in result.stderr
    assert not (sorted_run / "reliability.png").exists() and not (sorted_run / "eval.json").exists()


def test_the_python_api_checks_its_options_before_loading(tmp_path) -> None:
    missing = tmp_path / "no_such_run"  # loading it would raise FileNotFoundError, so the check comes first
    with pytest.raises(ValueError, match="max_corruption_images must be None or an int >= 1, got 0"):
        evaluate_run(missing, EvalOptions(corruptions=True, max_corruption_images=0))
    with pytest.raises(ValueError, match="fgsm_eps"):
        evaluate_run(missing, EvalOptions(fgsm=True, fgsm_eps=2.0))
    with pytest.raises(ValueError, match="device"):
        evaluate_run(missing, EvalOptions(device="tpu"))


def test_no_progress_silences_the_bars(sorted_run) -> None:
    args = ("eval", str(sorted_run), "--corruptions", "--max-corruption-images", "10", "--max-images", "50")
    quiet = cli(*args, "--no-progress", "--device", "cpu")
    assert quiet.returncode == 0, quiet.stderr
    assert "corruptions" not in quiet.stderr and "predict" not in quiet.stderr
    assert "corruptions: mean " in quiet.stdout


def test_corruption_bar_advances_per_corruption_and_severity(monkeypatch) -> None:
    import cropmix.evaluate.robustness as robustness

    bars = []

    class Recorder(robustness.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(robustness, "tqdm", Recorder)
    images = torch.rand(12, 3, 8, 8)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.zeros(12, dtype=torch.long)), 5)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 2))
    robustness.corruption_accuracy(
        model, loader, "cpu", CorruptionOptions(("contrast", "brightness"), (1, 3, 5)), max_images=11
    )
    (bar,) = bars
    assert bar.total == 11 * 6 and bar.n == bar.total


def _image_folder(root, classes_and_colours: dict[str, tuple[int, int, int]], per_class: int = 3):
    rng = np.random.default_rng(0)
    for name, colour in classes_and_colours.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour)[None, None] + rng.integers(-20, 20, (8, 8, 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_cli_eval_data_scores_another_folder(sorted_run, tmp_path) -> None:
    from cropmix.train.report import evaluate_ood

    other = _image_folder(tmp_path / "other", {"c7": (200, 40, 40), "c2": (40, 200, 40)})
    result = cli("eval", str(sorted_run), "--data", str(other), "--no-progress", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["images"] == 6 and printed["classes"] == 10 and 0 <= printed["top1"] <= 100
    assert json.loads((sorted_run / "ood_other.json").read_text()) == printed
    # the same through the API; an unknown class is named; options that score the test split are refused
    on_cpu = EvalOptions(device="cpu", progress=False)
    assert evaluate_ood(sorted_run, other, on_cpu)["top1"] == printed["top1"]
    bad = _image_folder(tmp_path / "bad", {"c1": (0, 0, 0), "zebra": (9, 9, 9)})
    with pytest.raises(ValueError, match="zebra"):
        evaluate_ood(sorted_run, bad, on_cpu)
    with pytest.raises(ValueError, match="options.fgsm"):
        evaluate_ood(sorted_run, other, EvalOptions(fgsm=True))
    refused = cli("eval", str(sorted_run), "--data", str(other), "--fgsm")
    assert refused.returncode != 0 and "--fgsm" in refused.stderr
    no_data = cli("eval", str(sorted_run), "--class-subset", "imagenet-r")
    assert no_data.returncode != 0 and "--data" in no_data.stderr


def _write_cifar_c(folder: Path, run: Path, per_severity: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-C folder of the published layout from the run's own test images (32x32, upscaled from 8x8):
    contrast.npy, severity s = the clean images for s < 5, black for s = 5; brightness.npy all clean."""
    config = json.loads((run / "config.json").read_text())
    data = np.load(config["data"])
    keep = np.random.default_rng(1).choice(len(data["y_test"]), per_severity, replace=False)
    clean = data["x_test"][keep].repeat(4, axis=1).repeat(4, axis=2)  # (N, 32, 32, 3)
    labels = data["y_test"][keep]
    folder.mkdir()
    np.save(folder / "contrast.npy", np.concatenate([clean] * 4 + [np.zeros_like(clean)]))
    np.save(folder / "brightness.npy", np.concatenate([clean] * 5))
    np.save(folder / "labels.npy", np.tile(labels, 5).astype(np.uint8))
    return clean, labels


def test_cifar_c_folder_scores_every_corruption_and_severity(sorted_run, tmp_path) -> None:
    from cropmix.evaluate import predict
    from cropmix.train.report import load_run_model

    clean, labels = _write_cifar_c(tmp_path / "CIFAR-10-C", sorted_run)
    folder = str(tmp_path / "CIFAR-10-C")
    result = cli("eval", str(sorted_run), "--cifar-c", folder, "--no-progress", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)["cifar_c"]
    assert list(summary["per_severity"]) == ["brightness", "contrast"]  # the reference's order
    assert summary["images"] == 20 and all(len(v) == 5 for v in summary["per_severity"].values())
    # severities 1-4 of contrast and all of brightness are the clean images: the model's accuracy on them
    model, _ = load_run_model(sorted_run)
    images = torch.nn.functional.interpolate(torch.from_numpy(clean).permute(0, 3, 1, 2).float() / 255, size=8,
                                             mode="bilinear", antialias=True)  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.from_numpy(labels)), 8)
    logits, targets = predict(model, loader, "cpu", progress=False)
    expected = 100.0 * float((logits.argmax(1) == targets).float().mean())
    assert summary["per_severity"]["brightness"] == pytest.approx([expected] * 5)
    assert summary["per_severity"]["contrast"][:4] == pytest.approx([expected] * 4)
    assert json.loads(result.stdout)["cifar_c_mean"] == pytest.approx(summary["mean"])


def test_cifar_c_folder_errors_are_named(sorted_run, tmp_path) -> None:
    from cropmix.evaluate import cifar_c_files

    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate_run(sorted_run, EvalOptions(cifar_c=tmp_path / "missing", device="cpu", progress=False))
    folder = tmp_path / "bad"
    folder.mkdir()
    np.save(folder / "fog.npy", np.zeros((12, 32, 32, 3), np.uint8))
    np.save(folder / "labels.npy", np.zeros(12, np.uint8))
    with pytest.raises(ValueError, match="5 severities"):
        cifar_c_files(folder)
    np.save(folder / "fog.npy", np.zeros((10, 32, 32, 3), np.uint8))
    np.save(folder / "labels.npy", np.full(10, 99, np.uint8))
    assert cifar_c_files(folder)[0] == ["fog"]
    with pytest.raises(ValueError, match="labels up to 99"):
        evaluate_run(sorted_run, EvalOptions(cifar_c=folder, device="cpu", progress=False))


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--fgsm-eps", "0.1"], "--fgsm-eps"),
        (["--max-corruption-images", "5"], "--max-corruption-images"),
        (["--float-corruptions"], "--float-corruptions"),
        (["--dataset", "imagefolder"], "--dataset"),
        (["--class-subset", "imagenet-r"], "--class-subset"),
    ],
)
def test_eval_options_that_do_not_apply_are_usage_errors(tmp_path, capsys, extra, named) -> None:
    from cropmix.cli import main

    assert main(["eval", str(tmp_path / "run"), *extra]) == 2  # refused before the run folder is read
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and named in err and "does not exist" not in err, err


def test_eval_options_only_with_their_switch_through_the_api() -> None:
    with pytest.raises(ValueError, match=r"fgsm_eps \(--fgsm-eps\) only applies with fgsm \(--fgsm\)"):
        EvalOptions(fgsm_eps=0.1)
    with pytest.raises(ValueError, match=r"--float-corruptions\) only applies with corruptions"):
        EvalOptions(corruption_storage=False)
    EvalOptions(fgsm=True, fgsm_eps=0.1)
    EvalOptions(cifar_c="somewhere", max_corruption_images=5)  # picks the CIFAR-C files' subset
    EvalOptions(corruptions=True, max_corruption_images=5, corruption_storage=False)


def test_evaluation_opens_the_runs_data_once(sorted_run, tmp_path, monkeypatch) -> None:
    # A folder dataset is indexed when opened (minutes for ImageNet): evaluation must not open it twice.
    from cropmix.train import report

    real, opened = report.source_of, []

    def counting(*args, **kwargs):
        opened.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(report, "source_of", counting)
    evaluate_run(sorted_run, EvalOptions(device="cpu", progress=False, max_images=10))
    assert len(opened) == 1
    other = _image_folder(tmp_path / "other", {"c3": (20, 40, 200)}, per_class=1)
    report.evaluate_ood(sorted_run, other, EvalOptions(device="cpu", progress=False))
    assert len(opened) == 2


def test_workers_reading_other_folders_and_the_test_split_are_an_option(sorted_run, tmp_path, monkeypatch) -> None:
    from cropmix.train import report

    seen = []
    real_make, real_eval = report.make_loader, report.eval_loader
    monkeypatch.setattr(report, "make_loader", lambda *a, **k: seen.append(a[2].workers) or real_make(*a, **k))
    monkeypatch.setattr(report, "eval_loader", lambda *a, **k: seen.append(a[5]) or real_eval(*a, **k))
    other = _image_folder(tmp_path / "other", {"c3": (20, 40, 200)}, per_class=1)
    report.evaluate_ood(sorted_run, other, EvalOptions(device="cpu", progress=False, workers=0))
    evaluate_run(sorted_run, EvalOptions(device="cpu", progress=False, max_images=10, workers=3))
    assert seen == [0, 3]
    with pytest.raises(ValueError, match=r"workers \(--workers\) must be an int >= 0, got -1"):
        EvalOptions(workers=-1)


@pytest.mark.parametrize("option,what", [("--cifar-c", "CIFAR-C folder"), ("--data", "image folder")])
def test_a_file_given_for_a_folder_is_said_to_be_a_file(tmp_path, capsys, option, what) -> None:
    from helpers import trained

    from cropmix.cli import main

    _, run = trained(tmp_path)
    capsys.readouterr()
    (tmp_path / "file").write_text("x")
    assert main(["eval", str(run), option, str(tmp_path / "file")]) == 2
    assert f"{what} '{tmp_path / 'file'}' is a file, not a folder" in capsys.readouterr().err


def test_ctrl_c_during_eval_ends_in_one_line_with_the_shells_status(tmp_path, capsys, monkeypatch) -> None:
    from helpers import trained

    import cropmix.train.report as report
    from cropmix.cli import main

    _, run = trained(tmp_path)
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "_load_run", interrupted)
    assert main(["eval", str(run)]) == 130
    assert capsys.readouterr().err.strip() == "cropmix eval: interrupted"


def test_eval_takes_the_device_names_train_takes(sorted_run, capsys) -> None:
    from cropmix.cli import main

    code = main(["eval", str(sorted_run), "--device", "cuda:1", "--no-progress"])
    error = capsys.readouterr().err
    if torch.cuda.device_count() < 2:  # refused by the device check, not by the option parser
        assert code == 2 and "device 'cuda:1'" in error and "invalid choice" not in error, error
    else:
        assert code == 0, error
    assert main(["eval", str(sorted_run), "--device", "tpu"]) == 2
    assert "device must be one of ('auto', 'cpu', 'cuda', 'cuda:N'), got 'tpu'" in capsys.readouterr().err
