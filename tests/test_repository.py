"""The repository speaks of the software only: no tracker numbers, no paths of one machine."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = (".py", ".md", ".toml", ".sh", ".yml", ".cff", ".txt")
FORBIDDEN = re.compile(r"\bissue #?\d+|/work/main|/work/shared|\.\./shared/", re.IGNORECASE)


def test_no_tracker_numbers_or_machine_paths():
    files = [ROOT / "README.md", ROOT / "Makefile", ROOT / "mkdocs.yml", ROOT / "pyproject.toml"]
    for folder in ("src", "tests", "benchmarks", "docs", "examples"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in TEXT and "egg-info" not in str(p)]
    found = []
    for path in files:
        if path == Path(__file__).resolve() or path.name == "test_scripts.py":
            continue  # these name the patterns they look for
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:80]}")
    assert not found, "\n".join(found)


def _figures_and_code(path: Path) -> tuple[list[str], list[str]]:
    text = path.read_text()
    return re.findall(r"\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?x\b", text), re.findall(r"```.*?```", text, re.DOTALL)


def test_the_site_front_page_states_what_the_readme_states():
    """docs/index.md is the README on the site (with the site's links): the same figures and code blocks."""
    readme, site = _figures_and_code(ROOT / "README.md"), _figures_and_code(ROOT / "docs" / "index.md")
    assert site[0] == readme[0], "figures differ between README.md and docs/index.md"
    assert site[1] == readme[1], "code blocks differ between README.md and docs/index.md"
