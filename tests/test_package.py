"""The public API: every exported name resolves, and importing the transforms stays light."""

from __future__ import annotations

import subprocess
import sys

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
# TrainConfig(epochs=0) fails validation naming `epochs` (before any work), which only the real function reaches.
_CALL = """
from cropmix import TrainConfig, train, evaluate_run, compare_runs
try:
    train(TrainConfig(epochs=0), resume=False)
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
