"""The command, the transforms and training on folders work with torch and torchvision alone: each optional
package (kornia, timm, datasets, tensorboard, matplotlib, and the WebDataset libraries cropmix no longer needs) is made
unimportable in a fresh interpreter, and `cropmix --help` imports no subcommand module."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import make_folder

from cropmix.cli import SUBCOMMANDS

OPTIONAL = (
    "kornia", "kornia_rs", "timm", "datasets", "tensorboard", "braceexpand", "webdataset", "torchcodec", "matplotlib",
)  # fmt: skip
SRC = Path(__file__).resolve().parents[1] / "src"

# Loaded by `site` at start-up: every import of an optional package, or of one of its modules, fails.
BLOCKER = f"""
import importlib.abc
import sys

BLOCKED = {OPTIONAL!r}


class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}} (made unimportable by the test)", name=name)
        return None


sys.meta_path.insert(0, Blocker())
"""


@pytest.fixture
def run_bare(tmp_path):
    """Run `python ARGS...` with the optional packages unimportable; returns the completed process."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(SRC)]), "COLUMNS": "200"}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)

    return run


def test_the_blocker_blocks(run_bare) -> None:
    for name in OPTIONAL:
        done = run_bare("-c", f"import {name}")
        assert done.returncode != 0 and "made unimportable by the test" in done.stderr, name


def test_help_lists_every_command_and_imports_none_of_them(run_bare) -> None:
    done = run_bare("-m", "cropmix", "--help")
    assert done.returncode == 0, done.stderr
    for name, summary in SUBCOMMANDS.items():
        assert f"{name}  " in done.stdout and summary in done.stdout, name
    code = (
        "import sys; from cropmix.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit as exit:\n    assert exit.code == 0\n"
        "print(sorted(m for m in sys.modules if m.startswith('cropmix.cli.')))"
    )
    done = run_bare("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_each_command_and_the_transforms_work_without_the_optional_packages(run_bare) -> None:
    code = f"""
import sys
import torch
from cropmix import BatchCropMix, preset
from cropmix.cli import main

for name in {list(SUBCOMMANDS)!r}:
    try:
        main([name, "--help"])
    except SystemExit as exit:
        assert exit.code == 0, (name, exit.code)
images = [torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8) for _ in range(3)]
assert preset("imagenet", 24)(images[0]).shape == (3, 24, 24)
assert BatchCropMix.from_preset("imagenet", 24)(images).shape == (3, 3, 24, 24)
import cropmix.data.device_loader, cropmix.data.shards, cropmix.ssl, cropmix.train  # noqa: E401
print("loaded:", sorted(m for m in sys.modules if m.partition(".")[0] in {OPTIONAL!r}))
"""
    done = run_bare("-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "loaded: []"


def test_training_on_a_folder_without_the_optional_packages(run_bare, tmp_path) -> None:
    data = make_folder(tmp_path / "data", per_class=4, size=16)
    out = tmp_path / "run"
    tiny = ["--model", "fastnet", "--model-kwargs", '{"widths": [8, 8, 16, 16]}', "--image-size", "16"]
    args = ["--dataset", "imagefolder", "--data", str(data), "--out", str(out), *tiny, "--aug", "cropmix"]
    args += ["--epochs", "1", "--batch-size", "4", "--workers", "0", "--threads", "1", "--device", "cpu"]
    done = run_bare("-m", "cropmix", "train", *args, "--no-progress")
    assert done.returncode == 0, done.stderr
    assert (out / "final.json").is_file() and not (out / "curves.png").exists()  # the pictures need the extra
    assert f"{out / 'curves.png'} not drawn: pictures need matplotlib (pip install cropmix[plots])" in done.stderr


def test_a_picture_left_out_for_want_of_matplotlib_removes_an_earlier_one(tmp_path, caplog) -> None:
    """A comparison redone without matplotlib must not leave the earlier runs' curves.png looking current."""
    from cropmix.integrations import optional_picture

    def needs_matplotlib(path):
        raise ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib")

    earlier = tmp_path / "curves.png"
    earlier.write_bytes(b"the earlier comparison's picture")
    assert optional_picture(needs_matplotlib, earlier) is None
    assert not earlier.exists() and "not drawn (the earlier one there is removed)" in caplog.text
    assert optional_picture(needs_matplotlib, earlier) is None  # nothing there: nothing to remove


def test_an_option_that_needs_a_missing_package_says_so_by_its_name(run_bare, tmp_path) -> None:
    """--timm-aug without timm: the option, the package and the extra, not "refused by create_transform"."""
    data = make_folder(tmp_path / "data", per_class=2, size=16)
    args = ["train", "--dataset", "imagefolder", "--data", str(data), "--out", str(tmp_path / "run")]
    done = run_bare("-m", "cropmix", *args, "--aug", "cropmix", "--timm-aug", "{}", "--print-config")
    assert done.returncode == 2
    said = done.stderr.strip().splitlines()[-1]
    assert "--timm-aug" in said and "needs the 'timm' package" in said and "cropmix[timm]" in said, said
    assert "refused" not in said, said
