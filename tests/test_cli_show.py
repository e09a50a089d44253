"""`cropmix show`: one row per CropMix output with only that output's crop boxes, aligned blocks; bad files named."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import PIL.Image
import PIL.ImageDraw
import pytest
import torch
from torchvision.transforms import v2

from cropmix.transforms import preset
from cropmix.transforms.params import Crop
from cropmix.viz.grid import BAND_COLOURS, crop_thumbnail, image_block, save_show_grid


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cropmix", *args], capture_output=True, text=True, timeout=300)


def noise_images(tmp_path, sizes=((90, 120), (60, 40))) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"img{i}.png"
        PIL.Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def colour_pixels(image: PIL.Image.Image, colour: tuple[int, int, int]) -> int:
    return int((np.asarray(image) == np.array(colour, dtype=np.uint8)).all(axis=-1).sum())


def test_show_command_writes_a_png(tmp_path) -> None:
    out = tmp_path / "grid.png"
    result = cli("show", *noise_images(tmp_path), "--preset", "cifar", "-n", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    with PIL.Image.open(out) as grid:
        assert grid.format == "PNG" and grid.height > 3 * 160


def test_a_thumbnail_carries_only_its_own_outputs_boxes() -> None:
    grey = PIL.Image.new("RGB", (200, 100), (128, 128, 128))
    two = [Crop(top=10, left=10, height=30, width=40), Crop(top=0, left=0, height=100, width=200)]
    thumb = crop_thumbnail(grey, two, (150, 100), 12)
    assert thumb.size == (150, 100)
    blue, green, orange, red = (colour_pixels(thumb, c) for c in BAND_COLOURS)
    assert blue > 0 and red > 0, "two crops: the smallest band blue, the largest red"
    assert green == 0 and orange == 0, "no boxes of other outputs"
    four = two + [Crop(top=20, left=60, height=50, width=60), Crop(top=5, left=100, height=60, width=90)]
    assert all(colour_pixels(crop_thumbnail(grey, four, (150, 100), 12), c) > 0 for c in BAND_COLOURS)


def test_one_row_per_output_and_blocks_of_any_aspect_align(tmp_path) -> None:
    torch.manual_seed(0)
    cropmix = preset("imagenet", 64)
    rrc = v2.RandomResizedCrop(64, scale=cropmix.scale, antialias=True)
    wide, tall = PIL.Image.new("RGB", (300, 100), "grey"), PIL.Image.new("RGB", (80, 240), "grey")
    blocks = {n: image_block(wide, "wide.jpg", cropmix, rrc, n, 64) for n in (1, 4)}
    assert blocks[4].height - blocks[1].height >= 3 * 64, "each output gets a row of its own"
    assert image_block(tall, "tall.jpg", cropmix, rrc, 4, 64).size == blocks[4].size
    paths = noise_images(tmp_path)
    heights = [PIL.Image.open(save_show_grid(paths, tmp_path / f"g{n}.png", n=n, cell=64)).height for n in (2, 5)]
    assert heights[1] - heights[0] >= 3 * 64


def test_show_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="n must be"):
        save_show_grid(noise_images(tmp_path), tmp_path / "g.png", n=0)
    with pytest.raises(ValueError, match="cell"):
        save_show_grid(noise_images(tmp_path), tmp_path / "g.png", cell=8)


def test_show_names_a_missing_or_corrupt_file(tmp_path) -> None:
    missing = cli("show", str(tmp_path / "nope.jpg"), "--out", str(tmp_path / "g.png"))
    assert missing.returncode == 2 and "nope.jpg" in missing.stderr
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    corrupt = cli("show", *noise_images(tmp_path), str(bad), "--out", str(tmp_path / "g.png"))
    assert corrupt.returncode == 2 and "bad.jpg" in corrupt.stderr
    assert not (tmp_path / "g.png").exists(), "files are checked before anything is drawn"


@pytest.mark.parametrize("count", [1, 2, 6, 12])
def test_every_text_lies_inside_its_picture(tmp_path, monkeypatch, count) -> None:
    """Title, legend, names and headings fit for any number of images: the ink box of every text, as
    Pillow measures it, lies inside the picture it is drawn on (text past an edge would be cut off)."""
    drawn = []
    draw_text = PIL.ImageDraw.ImageDraw.text

    def recording_text(self, xy, text, *args, **kwargs):
        drawn.append((text, self.textbbox(xy, text, font=kwargs.get("font")), self.im.size))
        return draw_text(self, xy, text, *args, **kwargs)

    monkeypatch.setattr(PIL.ImageDraw.ImageDraw, "text", recording_text)
    sizes = [(40 + 7 * i, 70 - 3 * i) for i in range(count)]
    paths = noise_images(tmp_path, sizes)
    if count == 1:
        long_name = tmp_path / ("a_photo_with_a_very_long_name_" * 4 + ".png")
        PIL.Image.open(paths[0]).save(long_name)
        paths = [str(long_name)]
    save_show_grid(paths, tmp_path / "grid.png", n=1)
    outside = [
        (text, box, size)
        for text, box, size in drawn
        if box[0] < 0 or box[1] < 0 or box[2] > size[0] or box[3] > size[1]
    ]
    assert not outside, outside
    words = " ".join(text for text, _, _ in drawn)
    assert "RandomResizedCrop (RRC), both over crop scales (0.01, 1.0)" in words, "the whole title is drawn"
    assert "N = largest (N = crops in that output)" in words, "the whole legend is drawn"


def test_show_replaces_a_planted_link_instead_of_writing_through_it(tmp_path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "grid.png").symlink_to(victim)
    out = save_show_grid(noise_images(tmp_path), tmp_path / "grid.png", n=1, cell=64)
    assert victim.read_text() == "keep me"
    assert not out.is_symlink() and PIL.Image.open(out).format == "PNG"
    with pytest.raises(ValueError, match=r"out must end in an image extension.*grid\.txt"):
        save_show_grid(noise_images(tmp_path), tmp_path / "grid.txt", n=1, cell=64)


def test_show_of_a_folder_says_it_is_a_folder(tmp_path, capsys) -> None:
    from cropmix.cli import main

    (tmp_path / "emptydir").mkdir()
    assert main(["show", str(tmp_path / "emptydir"), "--out", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "is a folder, not a file" in err and "FIFO" not in err, err


@pytest.mark.parametrize("option", ["-n", "--size"])
def test_a_count_below_one_is_refused_naming_its_option(tmp_path, option) -> None:
    result = cli("show", *noise_images(tmp_path), option, "0", "--out", str(tmp_path / "grid.png"))
    assert result.returncode == 2 and f"argument {option}: must be >= 1, got 0" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "grid.png").exists()


def test_an_out_below_a_file_is_named_in_one_line(tmp_path, capsys) -> None:
    from cropmix.cli import main

    (tmp_path / "file").write_text("x")
    (image,) = noise_images(tmp_path)[:1]
    for out in (tmp_path / "file" / "show.png", tmp_path / "file" / "deeper" / "show.png"):
        assert main(["show", image, "-n", "1", "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "a file stands where one of its folders should be" in error, error


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--preset", "foo"], "--preset must be one of ['cifar', 'imagenet', 'mae-cutmix', 'mae-mixup'], got 'foo'"),
        (["--out", "grid"], "--out must end in an image extension such as .png or .jpg, got"),
        (["--size", "5000"], "--size must be an int from 8 to 1024, got 5000"),
        (["-n", "100000"], "-n (100000) outputs for each of 1 images make a picture of over"),
    ],
)
def test_bad_show_options_are_named_as_options_before_any_drawing(tmp_path, capsys, monkeypatch, args, said) -> None:
    """-n 100000 (or --size 5000) would allocate tens of GB; each is refused before an image is drawn."""
    from cropmix.cli import main
    from cropmix.viz import grid

    monkeypatch.setattr(grid, "image_block", lambda *a, **k: pytest.fail("drew before checking"))
    (image,) = noise_images(tmp_path)[:1]
    out = ["--out", str(tmp_path / "grid.png")] if "--out" not in args else []
    assert main(["show", image, *args, *out]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and said in error, error
