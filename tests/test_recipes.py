"""Recipes: every shipped recipe resolves to a valid configuration, --print-config prints what a
run writes to config.json, explicit options override a recipe, and bad requests are errors naming the choices."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_npz, skip_if_for_want_of_package

from cropmix.cli import main
from cropmix.recipes import COMMANDS, RUN_FIELDS, Recipe, _parse, list_recipes, load_recipe, recipe_names
from cropmix.ssl import PretrainConfig
from cropmix.train import TrainConfig

CROPMIX = [sys.executable, "-m", "cropmix"]
REQUIRED = {
    "cifar10-resnet18-paper",
    "cifar10-resnet18-paper-cropmix",
    "cifar100-resnet18-paper",
    "cifar100-resnet18-paper-cropmix",
    "imagenet-r1-resnet50",
    "imagenet-r1-resnet50-cropmix",
    "moco-v2",
    "moco-v2-cropmix",
    "mae-pretrain-mixup",
    "mae-pretrain-cutmix",
    "mae-finetune",
}
TINY_NET = ["--model", "fastnet", "--model-kwargs", '{"widths": [8, 8, 16, 16]}']
TINY_MOCO = ["--backbone", "fastnet", "--backbone-kwargs", '{"widths": [8, 8, 16, 16]}', "--image-size", "16"]
TINY_MOCO += ["--queue-size", "32", "--bn-splits", "2", "--knn-k", "5", "--probe-epochs", "1", "--device", "cpu"]


def data_for(settings: dict, tmp_path: Path) -> str:
    """A --data the recipe's dataset accepts without downloading or reading anything."""
    dataset = settings.get("dataset")
    if dataset == "imagefolder":
        for split in ("train", "val"):
            (tmp_path / "folder" / split).mkdir(parents=True, exist_ok=True)
        return str(tmp_path / "folder")
    return str(tmp_path / "not-downloaded")


def print_config(capsys, *args: str) -> dict:
    capsys.readouterr()
    code = main([*args, "--print-config"])
    printed = capsys.readouterr()
    if code != 0:
        skip_if_for_want_of_package(printed.err)
    assert code == 0, printed.err
    return json.loads(printed.out)


def test_the_paper_recipes_are_shipped_with_what_they_are_and_their_source():
    recipes = list_recipes()
    assert REQUIRED <= {r.name for r in recipes}
    for r in recipes:
        assert r.command in COMMANDS and r.description.strip() and r.source.strip()
        assert not set(r.settings) & set(RUN_FIELDS)  # no paths in recipes


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_resolves_to_a_valid_config(name, tmp_path, capsys):
    recipe = load_recipe(name)
    data = data_for(recipe.settings, tmp_path)
    if recipe.command == "train":
        printed = print_config(capsys, "train", "--recipe", name, "--data", data, "--out", str(tmp_path / "o"))
        config = TrainConfig.from_dict(printed)
        config.validate(cuda_available=False)
        resolved = config.to_dict()
    else:
        printed = print_config(capsys, "pretrain", "--recipe", name, "--data", data)
        resolved = PretrainConfig.from_dict(printed).to_dict()
    for key, value in recipe.settings.items():  # every setting arrives, as the config stores it
        assert json.loads(json.dumps(resolved[key])) == value, key
    assert printed["data"] == data


def test_the_cifar_recipes_are_the_authors_recipe(capsys, tmp_path):
    base = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    paper = print_config(capsys, *base, "--recipe", "cifar100-resnet18-paper")
    cropmix = print_config(capsys, *base, "--recipe", "cifar100-resnet18-paper-cropmix")
    expected = dict(dataset="cifar100", model="resnet18", epochs=300, batch_size=100, optimizer="sgd", lr=0.1)
    expected.update(momentum=0.9, weight_decay=1e-4, schedule="step", milestones=[100, 200], gamma=0.1)
    assert {k: paper[k] for k in expected} == expected
    assert paper["aug"] == "baseline" and cropmix["aug"] == "cropmix" and cropmix["preset"] == "cifar"
    assert {k: v for k, v in cropmix.items() if k != "aug"} == {k: v for k, v in paper.items() if k != "aug"}


def test_explicit_options_override_the_recipe_even_at_their_own_default(capsys, tmp_path):
    base = ["train", "--recipe", "cifar10-resnet18-paper", "--data", str(tmp_path), "--out", str(tmp_path / "o")]
    plain = print_config(capsys, *base)
    assert (plain["weight_decay"], plain["nesterov"], plain["epochs"]) == (1e-4, False, 300)
    # 5e-4 and --nesterov are the options' own defaults: given explicitly they still win over the recipe
    changed = print_config(capsys, *base, "--weight-decay", "5e-4", "--nesterov", "--epochs", "3", "--milestones", "1")
    assert (changed["weight_decay"], changed["nesterov"], changed["epochs"], changed["milestones"]) == (
        5e-4,
        True,
        3,
        [1],
    )
    assert changed["lr"] == plain["lr"] == 0.1
    moco = print_config(capsys, "pretrain", "--recipe", "moco-v2", "--data", "x", "--queue-size", "4096")
    assert (moco["queue_size"], moco["moco_momentum"], moco["method"]) == (4096, 0.999, "moco")
    # a recipe's conflicting setting is reported like an option's: the cifar recipe's milestones need --schedule step
    capsys.readouterr()
    assert main([*base, "--schedule", "cosine", "--print-config"]) == 2
    assert "milestones" in capsys.readouterr().err


def test_print_config_is_what_the_run_writes(tmp_path, capsys):
    data = make_npz(tmp_path / "d.npz")
    args = ["train", "--recipe", "cifar10-resnet18-paper-cropmix", "--dataset", "npz", "--data", str(data)]
    args += ["--out", str(tmp_path / "run"), *TINY_NET, "--epochs", "2", "--milestones", "1", "--batch-size", "16"]
    args += ["--workers", "0", "--threads", "1", "--device", "cpu", "--no-progress"]
    printed = print_config(capsys, *args)
    assert not (tmp_path / "run").exists()  # nothing ran
    assert main(args) == 0
    assert printed["image_size"] is None  # resolved from the data by the run, then recorded
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == {**printed, "image_size": 16}
    args = ["pretrain", "--recipe", "moco-v2-cropmix", "--dataset", "npz", "--data", str(data), *TINY_MOCO]
    args += ["--out", str(tmp_path / "ssl"), "--steps", "2", "--batch-size", "16", "--threads", "1", "--no-progress"]
    printed = print_config(capsys, *args)
    assert not (tmp_path / "ssl").exists()
    assert main(args) == 0
    written = json.loads((tmp_path / "ssl" / "config.json").read_text())
    assert {k: v for k, v in written.items() if k not in ("world_size", "train_images")} == printed


def test_unknown_recipe_and_wrong_command_are_errors_naming_the_choices():
    run = subprocess.run(
        [*CROPMIX, "train", "--recipe", "no-such", "--data", "d", "--out", "o"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "no-such" in run.stderr and "cifar10-resnet18-paper" in run.stderr
    run = subprocess.run(
        [*CROPMIX, "train", "--recipe", "moco-v2", "--data", "d", "--out", "o"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "cropmix pretrain" in run.stderr and "cropmix train" in run.stderr
    run = subprocess.run(
        [*CROPMIX, "pretrain", "--recipe", "mae-finetune", "--print-config"], capture_output=True, text=True
    )
    assert run.returncode == 2 and "cropmix train" in run.stderr and "cropmix pretrain" in run.stderr
    run = subprocess.run([*CROPMIX, "pretrain", "--print-config"], capture_output=True, text=True)
    assert run.returncode == 2 and "--method" in run.stderr
    run = subprocess.run([*CROPMIX, "recipes", ""], capture_output=True, text=True)  # not "list them all"
    assert run.returncode == 2 and "unknown recipe ''" in run.stderr


def test_recipes_command_lists_every_recipe_and_shows_one():
    run = subprocess.run([*CROPMIX, "recipes"], capture_output=True, text=True, check=True)
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines] == recipe_names()
    for line, recipe in zip(lines, list_recipes(), strict=True):
        assert recipe.command in line and recipe.description in line and recipe.source in line
    run = subprocess.run([*CROPMIX, "recipes", "mae-pretrain-mixup"], capture_output=True, text=True, check=True)
    shown = json.loads(run.stdout)
    assert shown["settings"]["aug"] == "mae-mixup" and shown["settings"]["subset"] == 0.1 and shown["note"]


def test_a_recipe_setting_that_is_no_config_field_is_an_error(monkeypatch, capsys, tmp_path):
    import cropmix.recipes

    bad = Recipe("bad", "train", "d", "s", {"epochs": 2, "learning_rate": 0.1})
    monkeypatch.setattr(cropmix.recipes, "load_recipe", lambda name, command=None: bad)
    assert main(["train", "--recipe", "bad", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, message",
    [
        ('command = "train"\ndescription = "d"\nsource = "s"\nepochs = 3\n', "unknown keys"),
        ('command = "eval"\ndescription = "d"\nsource = "s"\n', "command must be one of"),
        ('command = "train"\ndescription = "d"\n', "'source'"),
        ('command = "train"\ndescription = "d"\nsource = "s"\n[settings]\ndata = "x"\n', "data"),
        ("command = train", "not valid TOML"),
    ],
)
def test_malformed_recipe_files_are_errors_naming_the_file_and_key(text, message):
    with pytest.raises(ValueError, match=message) as error:
        _parse("broken", text)
    assert "broken.toml" in str(error.value)
