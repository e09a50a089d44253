"""The scripts in benchmarks/ and examples/: importable names, and data defaults that exist in a clone."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for folder in ("benchmarks", "examples") for p in (ROOT / folder).rglob("*.py"))


def run_script(script: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CROPMIX_RESULTS_DIR": str(cwd / "results")}  # never the repository's figures
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


def test_no_script_shadows_a_standard_library_module() -> None:
    # `python benchmarks/x.py` puts benchmarks/ first on sys.path: a benchmarks/ssl.py was imported by torch as `ssl`.
    assert SCRIPTS, "no scripts found"
    clashes = [str(p.relative_to(ROOT)) for p in SCRIPTS if p.stem in sys.stdlib_module_names]
    assert not clashes, f"scripts named like standard-library modules: {clashes}"


def code_strings(path: Path) -> list[str]:
    """The string constants of a script's code (docstrings, which may show example paths, left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings
    ]


def test_no_script_defaults_to_a_path_of_the_development_machine() -> None:
    def machine_path(text: str) -> bool:
        return text.startswith("/work/") or text == "shared" or "shared/data" in text

    found = {str(p.relative_to(ROOT)): [t for t in code_strings(p) if machine_path(t)] for p in SCRIPTS}
    offenders = {script: texts for script, texts in found.items() if texts}
    assert not offenders, f"scripts reaching for data outside the repo: {offenders}"


def test_throughput_runs_on_the_shipped_data(tmp_path) -> None:
    result = run_script(
        ROOT / "benchmarks" / "throughput.py", "--rounds", "1", "--photo-repeats", "1", "--cifar-images", "12",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"photos from {ROOT / 'examples' / 'photos'}" in result.stdout
    assert "12 CIFAR-10 JPEGs" in result.stdout and "(c) CropMix" in result.stdout
    written = (tmp_path / "results" / "per_image_throughput.md").read_text()
    command = next(line for line in written.splitlines() if line.startswith("- command: `"))  # env vars first
    assert "python benchmarks/throughput.py --rounds 1" in command and "(c) CropMix" in written


@pytest.mark.parametrize(
    ("script", "args", "option"),
    [
        ("examples/cifar10_subset/make_subset.py", ("--out", "x.npz"), "--src"),
        ("benchmarks/ssl_pretrain.py", ("--out", "ssl"), "--data"),
    ],
)
def test_cifar_scripts_name_the_missing_option_and_the_data(tmp_path, script, args, option) -> None:
    result = run_script(ROOT / script, *args, cwd=tmp_path)
    assert result.returncode != 0
    assert f"{option} is required" in result.stderr and "train/<class>/*.jpg" in result.stderr
    bad = run_script(ROOT / script, *args, option, str(tmp_path / "nowhere"), cwd=tmp_path)
    assert bad.returncode != 0 and "nowhere" in bad.stderr
