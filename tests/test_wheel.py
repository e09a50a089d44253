"""The wheel holds the package and its data (recipes, class lists), and works without the source tree."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_CHECK = """
import cropmix, sys
from pathlib import Path
assert Path(cropmix.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), cropmix.__file__
from cropmix.recipes import load_recipe, recipe_names
from cropmix.evaluate.ood import wnids
names = recipe_names()
assert "cifar10-resnet18-paper-cropmix" in names, names
load_recipe("imagenet-r1-resnet50-cropmix")
assert len(wnids("imagenet-r")) == 200 and len(wnids("imagenet-a")) == 200
print(cropmix.__version__)
"""


def _setuptools_major() -> int:
    try:
        return int(importlib.metadata.version("setuptools").split(".")[0])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return 0


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    needed = re.search(r'"setuptools>=(\d+)"', (ROOT / "pyproject.toml").read_text())
    if needed and _setuptools_major() < int(needed.group(1)):  # the build runs without isolation, on this one
        pytest.skip(f"the installed setuptools is older than pyproject's build requirement {needed.group(0)}")
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(ROOT)]
    done = subprocess.run(build, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    (path,) = out.glob("cropmix-*.whl")
    return path


def test_the_wheel_holds_the_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert any(n.startswith("cropmix/recipes/") and n.endswith(".toml") for n in names)
    assert "cropmix/evaluate/data/imagenet_r_wnids.txt" in names
    assert not any(n.startswith(("tests/", "benchmarks/", "docs/")) for n in names)


def test_the_installed_wheel_imports_and_reads_its_data(wheel, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    done = subprocess.run(
        [sys.executable, "-c", _CHECK, str(tmp_path / "site")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    import cropmix

    assert done.stdout.strip() == cropmix.__version__


def test_the_core_install_needs_only_what_the_transform_uses(wheel):
    """`pip install cropmix` brings torch, torchvision, numpy, Pillow and tqdm; plots, timm, TensorBoard,
    Hugging Face datasets and the reference frost images are extras."""
    (metadata,) = [n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".dist-info/METADATA")]
    lines = zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
    requires = [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]
    core = {
        r.split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for r in requires
        if "extra ==" not in r
    }
    assert core == {"torch", "torchvision", "numpy", "pillow", "tqdm", "tomli"}, core
    extras = {line.split(":", 1)[1].strip() for line in lines if line.startswith("Provides-Extra:")}
    assert {"plots", "timm", "tensorboard", "hf", "robustness", "docs", "all"} <= extras
