"""The published ImageNet-C folders (`cropmix eval RUN --imagenet-c DIR`): found in both layouts, each
severity folder scored as the model scores its images, mCE by the paper's formula over AlexNet's errors
only when all 15 x 5 folders were scored in full, and layouts that are not ImageNet-C's named."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import SORTED_RUN_CLASSES, MeanColour
from PIL import Image

from cropmix.data import Batching, eval_transform
from cropmix.evaluate import CORRUPTIONS, predict
from cropmix.evaluate.imagenet_c import (
    ALEXNET_ERRORS,
    corruption_error,
    imagenet_c_accuracy,
    imagenet_c_folders,
    mean_corruption_error,
)
from cropmix.train import EvalOptions, evaluate_run

SCORED = ("gaussian_noise", "fog", "contrast")
CATEGORY = {"gaussian_noise": "noise", "fog": "weather", "contrast": "digital"}
ALL_CLASSES = tuple(f"c{i}" for i in range(SORTED_RUN_CLASSES))


def _tree(root: Path, run: Path, category: bool = False, names: tuple[str, ...] = SCORED) -> Path:
    """A small ImageNet-C folder from the run's own 8x8 test images (PNG), at severities 1 and 2:
    severity 1 holds every class, severity 2 only c5..c9 and darker images. `category`: the layout of
    the per-category archives (<category>/<corruption>/...)."""
    data = np.load(json.loads((run / "config.json").read_text())["data"])
    images, targets = data["x_test"], data["y_test"]
    for n, name in enumerate(names):
        base = root / CATEGORY[name] / name if category else root / name
        for severity, classes in ((1, ALL_CLASSES), (2, ALL_CLASSES[5:])):
            for c, cls in enumerate(ALL_CLASSES):
                if cls not in classes:
                    continue
                (base / str(severity) / cls).mkdir(parents=True)
                for i in np.flatnonzero(targets == c)[n : n + 2]:
                    pixels = images[i] // severity
                    Image.fromarray(pixels).save(base / str(severity) / cls / f"{i}.png")
    return root


def _direct_top1(model: torch.nn.Module, folder: Path) -> float:
    """Top-1 of `model` on the images of one severity folder, read and labelled here by hand."""
    pixels, labels = [], []
    for path in sorted(folder.glob("*/*.png")):
        pixels.append(np.asarray(Image.open(path)))
        labels.append(ALL_CLASSES.index(path.parent.name))
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float() / 255
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, torch.tensor(labels)), 7)
    logits, targets = predict(model, loader, "cpu", progress=False)
    return 100.0 * float((logits.argmax(1) == targets).float().mean())


def _options(folder: Path, **more) -> EvalOptions:
    return EvalOptions(imagenet_c=folder, device="cpu", progress=False, **more)


def test_each_severity_folder_is_scored_as_the_model_scores_its_images(sorted_run, tmp_path) -> None:
    from cropmix.train.report import load_run_model

    root = _tree(tmp_path / "ImageNet-C", sorted_run)
    results = evaluate_run(sorted_run, _options(root))
    summary = results["imagenet_c"]
    model, _ = load_run_model(sorted_run)
    for name in SCORED:
        expected = [_direct_top1(model, root / name / str(s)) for s in (1, 2)]
        assert summary["per_severity"][name] == pytest.approx(expected + [None] * 3)
        assert summary["per_corruption"][name] == pytest.approx(sum(expected) / 2)
    assert summary["mean"] == pytest.approx(sum(summary["per_corruption"].values()) / 3)
    assert summary["mean_error"] == pytest.approx(100 - summary["mean"])
    assert summary["images"] == 3 * (20 + 10) and summary["max_images"] is None
    # the 12 corruptions not downloaded are named, and without them there is no mCE, nor CE
    assert summary["missing"] == [n for n in CORRUPTIONS if n not in SCORED]
    assert summary["mce"] is None and summary["ce"] == {}
    assert "12 of the 15 corruptions are missing: shot_noise" in summary["mce_reason"]
    assert results["imagenet_c_mean"] == summary["mean"] and results["imagenet_c_mce"] is None
    final = json.loads((sorted_run / "final.json").read_text())
    assert final["imagenet_c"] == summary and "imagenet_c_mce" in final


def test_both_layouts_are_found_and_the_same(sorted_run, tmp_path) -> None:
    flat = imagenet_c_folders(_tree(tmp_path / "flat", sorted_run))
    by_category = imagenet_c_folders(_tree(tmp_path / "archives", sorted_run, category=True))
    assert list(flat) == list(by_category) == ["gaussian_noise", "fog", "contrast"]  # the reference's order
    assert by_category["gaussian_noise"][2] == tmp_path / "archives" / "noise" / "gaussian_noise" / "2"
    assert by_category["fog"] == {1: tmp_path / "archives/weather/fog/1", 2: tmp_path / "archives/weather/fog/2"}
    assert flat["contrast"] == {1: tmp_path / "flat/contrast/1", 2: tmp_path / "flat/contrast/2"}
    # scored alike from either
    a = evaluate_run(sorted_run, _options(tmp_path / "flat"))["imagenet_c"]
    b = evaluate_run(sorted_run, _options(tmp_path / "archives"))["imagenet_c"]
    assert a["per_severity"] == b["per_severity"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: (root / "gaussian-noise" / "1").mkdir(parents=True), r"holds none of the 15 corruptions"),
        (lambda root: (root / "fog").mkdir(parents=True), r"fog' has no severity folders"),
        (lambda root: (root / "fog" / "6").mkdir(parents=True), r"fog' has folders \['6'\] that are not severities"),
        (lambda root: [(root / p / "1").mkdir(parents=True) for p in ("fog", "weather/fog")], "holds fog twice"),
    ],
)
def test_a_layout_that_is_not_imagenet_c_is_named_in_one_line(tmp_path, make, message) -> None:
    root = tmp_path / "in-c"
    root.mkdir()
    make(root)
    with pytest.raises(ValueError, match=message) as raised:
        imagenet_c_folders(root)
    assert "\n" not in str(raised.value) and str(root) in str(raised.value)


@pytest.mark.parametrize("to", ["the corruption folder", "above the root", "the filesystem root"])
def test_a_severity_folder_link_to_its_corruption_folder_or_above_is_refused(tmp_path, to) -> None:
    """Indexing a severity folder linked to / (or above the data) would list the whole disk, as a split folder."""
    root = tmp_path / "in-c"
    (root / "fog" / "2" / "c0").mkdir(parents=True)
    target = {"the corruption folder": root / "fog", "above the root": tmp_path, "the filesystem root": Path("/")}[to]
    link = root / "fog" / "1"
    link.symlink_to(target, target_is_directory=True)
    with pytest.raises(ValueError, match=f"severity folder '{link}' links to '{target.resolve()}', which holds"):
        imagenet_c_folders(root)
    link.unlink()
    link.symlink_to(root / "fog" / "2", target_is_directory=True)  # a link elsewhere is followed
    assert imagenet_c_folders(root) == {"fog": {1: link, 2: root / "fog" / "2"}}


def test_a_missing_folder_is_named_with_its_option_before_the_run_is_read(tmp_path, capsys) -> None:
    from cropmix.cli import main

    (tmp_path / "file").write_text("")
    for path, what in ((tmp_path / "nowhere", "does not exist"), (tmp_path / "file", "is a file")):
        with pytest.raises(FileNotFoundError, match=rf"imagenet_c \(--imagenet-c\): .*{what}"):
            EvalOptions(imagenet_c=path)
        assert main(["eval", str(tmp_path / "no_run"), "--imagenet-c", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "--imagenet-c" in err and what in err and "no_run" not in err, err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds none of the 15 corruptions"):  # before the missing run is read
        evaluate_run(tmp_path / "no_run", _options(empty))


def _full_tree(root: Path) -> dict[str, list[float]]:
    """All 15 x 5 folders, 4 images each (2 dark, 2 bright: MeanColour's classes), some made wrong;
    the top-1 errors (percent) MeanColour makes on each."""
    errors = {}
    for n, name in enumerate(CORRUPTIONS):
        errors[name] = []
        for severity in range(1, 6):
            wrong = (n + severity) % 4  # how many of the 4 images are the other class's colour
            for i in range(4):
                cls = ("dark", "bright")[i % 2]
                level = (5, 250)[(i % 2) ^ (i < wrong)]
                (root / name / str(severity) / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((8, 8, 3), level, np.uint8)).save(
                    root / name / str(severity) / cls / f"{i}.png"
                )
            errors[name].append(25.0 * wrong)
    return errors


def test_mce_needs_all_15_by_5_full_folders(tmp_path) -> None:
    errors = _full_tree(tmp_path / "full")
    score = dict(image_size=8, batching=Batching(4, workers=0), progress=False)
    summary = imagenet_c_accuracy(MeanColour(), tmp_path / "full", "cpu", ["dark", "bright"], **score)
    assert summary["per_severity"]["fog"] == pytest.approx([100 - e for e in errors["fog"]])
    assert summary["mce"] == pytest.approx(mean_corruption_error(errors)) and summary["mce_reason"] is None
    assert summary["ce"] == pytest.approx({n: corruption_error(n, e) for n, e in errors.items()})
    assert summary["mean_error"] == pytest.approx(np.mean(list(errors.values())))
    # a max_corruption_images that cuts the folders: scored on the subset, but no mCE (not comparable)
    cut = imagenet_c_accuracy(MeanColour(), tmp_path / "full", "cpu", ["dark", "bright"], max_images=2, **score)
    assert cut["images"] == 75 * 2 and cut["max_images"] == 2
    assert cut["mce"] is None and cut["ce"] == {} and "subset of 2 images per folder" in cut["mce_reason"]
    assert cut["mean"] is not None
    # one that takes every image is the full folders
    whole = imagenet_c_accuracy(MeanColour(), tmp_path / "full", "cpu", ["dark", "bright"], max_images=9, **score)
    assert whole["mce"] == pytest.approx(summary["mce"])
    # a severity missing: CE for the others, no mCE
    shutil.rmtree(tmp_path / "full" / "fog" / "5")
    partial = imagenet_c_accuracy(MeanColour(), tmp_path / "full", "cpu", ["dark", "bright"], **score)
    assert partial["per_severity"]["fog"][4] is None and "fog" not in partial["ce"] and "snow" in partial["ce"]
    assert partial["mce"] is None and "not every severity 1-5 is present for fog" in partial["mce_reason"]


def test_the_mce_formula_on_a_table_made_by_hand() -> None:
    alexnet = {name: [100 * e for e in row] for name, row in ALEXNET_ERRORS.items()}
    assert mean_corruption_error(alexnet) == pytest.approx(100.0)  # AlexNet itself: 100 by definition
    assert mean_corruption_error({n: [e / 2 for e in v] for n, v in alexnet.items()}) == pytest.approx(50.0)
    # CE sums over severities before dividing (not a mean of ratios): 150 / 2.82296 for brightness
    assert corruption_error("brightness", [10, 20, 30, 40, 50]) == pytest.approx(150 / 2.82296)
    errors = {**alexnet, "brightness": [10, 20, 30, 40, 50], "gaussian_noise": [0] * 5}
    assert mean_corruption_error(errors) == pytest.approx((13 * 100 + 150 / 2.82296 + 0) / 15)
    with pytest.raises(ValueError, match=r"lacks \['fog'\]"):
        mean_corruption_error({n: v for n, v in alexnet.items() if n != "fog"})
    with pytest.raises(ValueError, match="5 severities"):
        corruption_error("fog", [10, 20])


def test_alexnet_rows_agree_with_the_published_means() -> None:
    published = {  # the means the paper gives apart from the table
        "gaussian_noise": 0.886428, "shot_noise": 0.894468, "impulse_noise": 0.922640,
        "defocus_blur": 0.819880, "glass_blur": 0.826268, "motion_blur": 0.785948,
    }  # fmt: skip
    for name, mean in published.items():
        assert sum(ALEXNET_ERRORS[name]) / 5 == pytest.approx(mean, abs=1e-6), name
    assert list(ALEXNET_ERRORS) == list(CORRUPTIONS) and all(len(row) == 5 for row in ALEXNET_ERRORS.values())


def test_unreadable_files_fail_by_name_or_are_skipped_and_counted(tmp_path) -> None:
    _full_tree(tmp_path / "full")
    (tmp_path / "full" / "snow" / "3" / "dark" / "broken.png").write_bytes(b"not a png")

    def score(skip_bad: bool) -> dict:
        batching = Batching(8, workers=0, skip_bad=skip_bad)
        return imagenet_c_accuracy(MeanColour(), tmp_path / "full", "cpu", ["dark", "bright"], image_size=8,
                                   batching=batching, progress=False)  # fmt: skip

    with pytest.raises(ValueError, match="broken.png"):
        score(skip_bad=False)
    summary = score(skip_bad=True)
    assert summary["skipped_files"] == 1 and summary["images"] == 75 * 4


def test_other_image_sizes_are_resized_on_the_short_side_then_centre_cropped() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (8, 8, 3), dtype=np.uint8))
    as_is = eval_transform(8, False, crop_fraction=1.0)(image)
    assert torch.equal(as_is, torch.from_numpy(np.array(image)).permute(2, 0, 1))  # the reference: a crop only
    assert not torch.equal(eval_transform(8, False)(image), as_is)  # the run's own test transform enlarges first
    wide = Image.new("RGB", (20, 10))
    assert eval_transform(6, False, crop_fraction=1.0)(wide).shape == (3, 6, 6)
    with pytest.raises(ValueError, match="crop_fraction"):
        eval_transform(8, False, crop_fraction=0)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropmix", *args], capture_output=True, text=True, timeout=300)


def test_cli_eval_imagenet_c(sorted_run, tmp_path, capsys) -> None:
    from cropmix.cli import main

    root = str(_tree(tmp_path / "ImageNet-C", sorted_run))
    result = cli("eval", str(sorted_run), "--imagenet-c", root, "--no-progress", "--device", "cpu", "--json")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    summary = printed["imagenet_c"]
    assert list(summary["per_corruption"]) == ["gaussian_noise", "fog", "contrast"]  # the reference's order
    assert printed["imagenet_c_mean"] == summary["mean"] and printed["imagenet_c_mce"] is None
    assert main(["eval", str(sorted_run), "--imagenet-c", root, "--no-progress", "--device", "cpu"]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if "ImageNet-C" in line)
    worst = min(summary["per_corruption"], key=summary["per_corruption"].get)
    assert line.startswith(f"  ImageNet-C: mean {summary['mean']:.2f}% over 3; worst {worst} ")
    assert line.endswith("; no mCE (12 of the 15 corruptions are missing: " + ", ".join(summary["missing"]) + ")")
    subset = ["--imagenet-c", root, "--max-corruption-images", "4", "--no-progress", "--device", "cpu", "--json"]
    assert main(["eval", str(sorted_run), *subset]) == 0
    assert json.loads(capsys.readouterr().out)["imagenet_c"]["images"] == 3 * (4 + 4)
    assert main(["eval", str(sorted_run), *subset, "--skip-bad"]) == 0  # it applies to the ImageNet-C files


def test_imagenet_c_options_go_with_what_they_apply_to(sorted_run, tmp_path, capsys) -> None:
    from cropmix.cli import main
    from cropmix.train.report import evaluate_ood

    folder = tmp_path / "in-c"
    folder.mkdir()
    EvalOptions(imagenet_c=folder, max_corruption_images=5)  # picks each severity folder's subset
    with pytest.raises(ValueError, match=r"or with cifar_c \(--cifar-c\) or imagenet_c \(--imagenet-c\)"):
        EvalOptions(max_corruption_images=5)
    with pytest.raises(ValueError, match="options.imagenet_c"):
        evaluate_ood(sorted_run, folder, _options(folder))
    assert main(["eval", str(sorted_run), "--data", str(folder), "--imagenet-c", str(folder)]) == 2
    assert "--imagenet-c does not go with --data" in capsys.readouterr().err
