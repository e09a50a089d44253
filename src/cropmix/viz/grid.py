"""The picture behind `cropmix show`: crops drawn on each image, CropMix outputs beside RandomResizedCrop's."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import torch
from torchvision.transforms import v2

from cropmix.transforms import CropMix, preset

# Band colours from the smallest scale band (blue) to the largest (red).
BAND_COLOURS = [(40, 90, 230), (20, 170, 80), (240, 170, 0), (220, 40, 40)]
HEADER = 28
GAP = 12


def band_colour(band: int, num_bands: int) -> tuple[int, int, int]:
    """Colour of scale band `band` of `num_bands`, spread over BAND_COLOURS."""
    if num_bands == 1:
        return BAND_COLOURS[-1]
    return BAND_COLOURS[round(band * (len(BAND_COLOURS) - 1) / (num_bands - 1))]


def open_rgb(path: str | Path) -> PIL.Image.Image:
    """An image file as RGB, or a FileNotFoundError / ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    try:
        with PIL.Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, PIL.Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read image file {str(path)!r}: {error}") from error


def show_row(image: PIL.Image.Image, cropmix: CropMix, rrc: v2.RandomResizedCrop, n: int, cell: int) -> PIL.Image.Image:
    """One row: the image with the crop boxes of its n CropMix outputs, the outputs, then n RRC outputs."""
    params = [cropmix.make_params([image]) for _ in range(n)]
    outputs = [cropmix.transform(image, p) for p in params]
    baseline = [rrc(image) for _ in range(n)]

    scale = cell / image.height
    shown = image.resize((max(1, round(image.width * scale)), cell), PIL.Image.BILINEAR)
    draw = PIL.ImageDraw.Draw(shown)
    for p in params:
        for band, crop in enumerate(p.crops):
            left, top = crop.left * scale, crop.top * scale
            box = [left, top, left + crop.width * scale, top + crop.height * scale]
            draw.rectangle(box, outline=band_colour(band, len(p.crops)), width=2)

    def cells(images: Sequence[PIL.Image.Image]) -> list[PIL.Image.Image]:
        return [im.resize((round(cell * im.width / im.height), cell), PIL.Image.BILINEAR) for im in images]

    out_cells, rrc_cells = cells(outputs), cells(baseline)
    width = shown.width + GAP + sum(c.width for c in out_cells) + GAP + sum(c.width for c in rrc_cells)
    row = PIL.Image.new("RGB", (width, cell), "white")
    x = 0
    for part in [shown, None, *out_cells, None, *rrc_cells]:
        if part is None:
            x += GAP
            continue
        row.paste(part, (x, 0))
        x += part.width
    return row


def save_show_grid(
    paths: Sequence[str | Path],
    out: str | Path,
    preset_name: str = "imagenet",
    n: int = 8,
    size: int | None = None,
    seed: int = 0,
    cell: int = 160,
) -> Path:
    """Write a PNG with one row per image (see `show_row`) and return its path."""
    if not paths:
        raise ValueError("paths must name at least one image file")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    torch.manual_seed(seed)
    cropmix = preset(preset_name, size)
    rrc = v2.RandomResizedCrop(cropmix.size, scale=cropmix.scale, antialias=True)
    rows = [show_row(open_rgb(p), cropmix, rrc, n, cell) for p in paths]
    width = max(r.width for r in rows)
    grid = PIL.Image.new("RGB", (width, HEADER + sum(r.height + GAP for r in rows)), "white")
    draw = PIL.ImageDraw.Draw(grid)
    title = (
        f"left: crop boxes of the {n} CropMix outputs (blue = smallest scale band ... red = largest);"
        f"  then {n} CropMix ({preset_name!r}) outputs;  then {n} RandomResizedCrop outputs (same scale range)"
    )
    draw.text((4, 8), title, fill="black")
    y = HEADER
    for row in rows:
        grid.paste(row, (0, y))
        y += row.height + GAP
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    return out
