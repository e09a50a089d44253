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
