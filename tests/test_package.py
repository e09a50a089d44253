"""The public API: every exported name resolves, and importing the transforms stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import cropmix


def test_every_exported_name_resolves():
    for name in cropmix.__all__:
        assert getattr(cropmix, name) is not None, name


def test_importing_cropmix_does_not_import_the_recipes():
    heavy = ("cropmix.train", "cropmix.ssl", "matplotlib")
    code = f"import sys, cropmix; print(sorted(m for m in sys.modules if m.startswith({heavy!r})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# The README's line, then a call: `train` must be the training function however the package was imported.
# A config of epochs=0 fails validation naming `epochs` (before any work), which only the real function reaches.
_CALL = """
from cropmix import TrainConfig, train, evaluate_run, compare_runs
try:
    train(TrainConfig.from_dict(dict(epochs=0)), resume=False)
except ValueError as error:
    print("reached:", error)
"""


def _run(prefix: str) -> str:
    done = subprocess.run([sys.executable, "-c", prefix + _CALL], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_documented_train_is_callable_in_a_fresh_interpreter():
    assert "reached: epochs (--epochs) must be" in _run("")


def test_documented_train_is_callable_after_importing_the_subpackage():
    assert "reached: epochs (--epochs) must be" in _run("import cropmix.train.loop\n")


def test_every_public_name_resolves():
    import cropmix

    assert "evaluate_ood" in cropmix.__all__
    for name in cropmix.__all__:
        assert getattr(cropmix, name) is not None, name


def test_import_help_and_recipes_load_no_torch():
    """`import cropmix`, `cropmix --help`, `--version` and `cropmix recipes` answer without importing torch
    (the import that takes seconds): what they print needs none of it."""
    probe = (
        "import contextlib, io, sys\n"
        "import cropmix\n"
        "from cropmix.cli import main\n"
        "for argv in (['--help'], ['--version'], ['recipes']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
        "        main(argv)\n"
        "    assert out.getvalue(), argv\n"
        "print(sorted(m for m in ('torch', 'torchvision', 'numpy', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_version_option_reads_the_package_version(capsys):
    import cropmix
    from cropmix.cli import main

    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"cropmix {cropmix.__version__}"


def test_all_lists_every_lazy_name_once():
    assert sorted(cropmix.__all__) == sorted({"__version__", *cropmix._LAZY}) and len(set(cropmix.__all__)) == len(
        cropmix.__all__
    )
