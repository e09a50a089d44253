"""`cropmix show`: writes a PNG with one row per image; bad files are named in the error."""

from __future__ import annotations

import numpy as np
import PIL.Image

from cropmix.cli import main


def test_show_writes_a_png(tmp_path, capsys):
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate([(90, 120), (60, 40)]):
        path = tmp_path / f"img{i}.png"
        PIL.Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    out = tmp_path / "grid.png"
    assert main(["show", *paths, "--preset", "cifar", "-n", "3", "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    grid = PIL.Image.open(out)
    assert grid.format == "PNG" and grid.height > 2 * 160


def test_show_names_a_missing_or_corrupt_file(tmp_path, capsys):
    assert main(["show", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "g.png")]) == 2
    assert "nope.jpg" in capsys.readouterr().err
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["show", str(bad), "--out", str(tmp_path / "g.png")]) == 2
    assert "bad.jpg" in capsys.readouterr().err
