"""The picture behind `cropmix show`: for each image, one row per CropMix output with the crop boxes
behind that output (numbered by scale band) on a thumbnail of the image, the output, and a
RandomResizedCrop output over the same scale range beside it."""

from __future__ import annotations

import errno
import math
from collections.abc import Sequence
from pathlib import Path

import PIL.Image
import PIL.ImageDraw
import PIL.ImageFont
import torch
from torchvision.transforms import v2

from cropmix.data.image_files import open_image
from cropmix.data.image_limits import MAX_IMAGE_PIXELS, MAX_OUTPUT_SIDE, MIN_IMAGE_SIDE
from cropmix.data.safe_files import FileError, atomic_writer
from cropmix.transforms import CropMix, preset

# Band colours from the smallest scale band (blue) to the largest (red).
BAND_COLOURS = [(40, 90, 230), (20, 170, 80), (240, 150, 0), (220, 40, 40)]
GAP = 10  # between the cells of a row and between rows
BLOCK_GAP = 40  # between the blocks of two images
MARGIN = 16
THUMB_ASPECT = 1.5  # the thumbnail slot is this many cells wide, one cell high
Font = PIL.ImageFont.ImageFont | PIL.ImageFont.FreeTypeFont


def band_colour(band: int, num_bands: int) -> tuple[int, int, int]:
    """Colour of scale band `band` (0 = smallest) of `num_bands`, spread over BAND_COLOURS."""
    if num_bands == 1:
        return BAND_COLOURS[-1]
    return BAND_COLOURS[round(band * (len(BAND_COLOURS) - 1) / (num_bands - 1))]


def font(size: int) -> Font:
    """Pillow's bundled scalable font at `size` pixels (Pillow 10.1 and later)."""
    return PIL.ImageFont.load_default(size=size)


def open_rgb(path: str | Path) -> PIL.Image.Image:
    """An image file as 8-bit RGB (16-bit scaled, limits checked), or a FileNotFoundError / ValueError naming it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file {str(path)!r} does not exist")
    return open_image(path)


def crop_thumbnail(image: PIL.Image.Image, crops: Sequence, slot: tuple[int, int], label_size: int) -> PIL.Image.Image:
    """`image` fitted into a white slot (width, height) with the boxes of `crops` (one output's crops, smallest
    scale band first), each outlined in its band colour and numbered 1..N from the smallest band."""
    scale = min(slot[0] / image.width, slot[1] / image.height)
    shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), PIL.Image.BILINEAR)
    out = PIL.Image.new("RGB", slot, "white")
    x0, y0 = (slot[0] - shown.width) // 2, (slot[1] - shown.height) // 2
    out.paste(shown, (x0, y0))
    draw = PIL.ImageDraw.Draw(out)
    label_font = font(label_size)
    for band, crop in enumerate(crops):
        colour = band_colour(band, len(crops))
        left, top = x0 + crop.left * scale, y0 + crop.top * scale
        right, bottom = left + crop.width * scale - 1, top + crop.height * scale - 1
        draw.rectangle([left, top, right, bottom], outline=colour, width=3)
        tag_x, tag_y = min(left, slot[0] - label_size - 3), min(top, slot[1] - label_size - 5)  # inside the slot
        draw.rectangle([tag_x, tag_y, tag_x + label_size + 2, tag_y + label_size + 4], fill=colour)
        draw.text((tag_x + 3, tag_y + 1), str(band + 1), fill="white", font=label_font)
    return out


def image_block(
    image: PIL.Image.Image, name: str, cropmix: CropMix, rrc: v2.RandomResizedCrop, n: int, cell: int
) -> PIL.Image.Image:
    """One image's block: its name, then n rows of (row number, the crop boxes of CropMix output k on the
    image, CropMix output k, RandomResizedCrop output k). Every block has the same width, so columns align."""
    params = [cropmix.make_params([image]) for _ in range(n)]
    outputs = [cropmix.transform(image, p).resize((cell, cell), PIL.Image.BILINEAR) for p in params]
    baseline = [rrc(image).resize((cell, cell), PIL.Image.BILINEAR) for _ in range(n)]
    sizes = {"name": max(16, cell // 7), "head": max(14, cell // 9), "label": max(12, cell // 11)}
    number_width = sizes["head"] * 3
    slot = (round(THUMB_ASPECT * cell), cell)
    columns = [number_width, number_width + slot[0] + GAP, number_width + slot[0] + cell + 3 * GAP]
    top = sizes["name"] + sizes["head"] + 3 * GAP
    block = PIL.Image.new("RGB", (columns[2] + cell, top + n * (cell + GAP) - GAP), "white")
    draw = PIL.ImageDraw.Draw(block)
    name_font = font(sizes["name"])
    draw.text((0, 0), shorten(draw, name, name_font, block.width), fill="black", font=name_font)
    head_y = sizes["name"] + 2 * GAP
    ends = [columns[1] - GAP, columns[2] - GAP, block.width]
    for x, end, text in zip(columns, ends, ("crop boxes of the output", "CropMix", "RRC"), strict=True):
        head_font = fitting_font(draw, text, sizes["head"], end - x)
        draw.text((x, head_y), shorten(draw, text, head_font, end - x), fill=(70, 70, 70), font=head_font)
    for k in range(n):
        y = top + k * (cell + GAP)
        draw.text((0, y + cell // 2 - sizes["head"] // 2), f"#{k + 1}", fill="black", font=font(sizes["head"]))
        block.paste(crop_thumbnail(image, params[k].crops, slot, sizes["label"]), (columns[0], y))
        block.paste(outputs[k], (columns[1], y))
        block.paste(baseline[k], (columns[2], y))
    return block


def text_width(draw: PIL.ImageDraw.ImageDraw, text: str, text_font: Font) -> float:
    """How far right of its origin `text` reaches in `text_font`, in pixels (its ink, not only its advance)."""
    return draw.textbbox((0, 0), text, font=text_font)[2] if text else 0


def shorten(draw: PIL.ImageDraw.ImageDraw, text: str, text_font: Font, width: float) -> str:
    """`text`, or its start and end around "..." when it is wider than `width` pixels (a long file name
    keeps its extension)."""
    if text_width(draw, text, text_font) <= width:
        return text
    for keep in range(len(text) - 1, 0, -1):
        short = text[: (keep + 1) // 2] + "..." + text[len(text) - keep // 2 :]
        if text_width(draw, short, text_font) <= width:
            return short
    return ""


def fitting_font(draw: PIL.ImageDraw.ImageDraw, text: str, size: int, width: float) -> Font:
    """The font at `size` pixels, or smaller (down to 8) until `text` fits in `width` pixels."""
    while size > 8 and text_width(draw, text, font(size)) > width:
        size -= 1
    return font(size)


def flow(draw: PIL.ImageDraw.ImageDraw, units: Sequence[tuple], text_font: Font, swatch: int, width: float) -> list:
    """Place `units` ((colour or None, text): a colour swatch `swatch` pixels wide before the text) left to
    right in lines at most `width` pixels wide: a list of lines of (x, colour, text). A unit too wide for a
    line of its own is split at its spaces, and a word too wide for one is shortened."""
    pieces: list[tuple] = []
    for colour, text in units:
        own = (swatch + GAP // 2 if colour else 0) + text_width(draw, text, text_font)
        words = [text] if own <= width else text.split() or [""]
        for i, word in enumerate(words):
            pad = swatch + GAP // 2 if colour and i == 0 else 0
            pieces.append((colour if i == 0 else None, shorten(draw, word, text_font, width - pad), pad))
    space = draw.textlength(" ", font=text_font)
    lines: list[list[tuple]] = [[]]
    x = 0.0
    for colour, text, pad in pieces:
        size, gap = pad + text_width(draw, text, text_font), space + (GAP // 2 if colour else 0)
        if lines[-1] and x + gap + size > width:
            lines.append([])
            x = 0.0
        elif lines[-1]:
            x += gap
        lines[-1].append((x, colour, text))
        x += size
    return lines


def draw_lines(draw: PIL.ImageDraw.ImageDraw, lines: list, top: int, step: int, text_font: Font, swatch: int) -> None:
    """Draw the lines of `flow` from `top` down, `step` pixels apart: each colour as a square swatch."""
    for row, line in enumerate(lines):
        y = top + row * step
        for x, colour, text in line:
            if colour is not None:
                draw.rectangle([x, y, x + swatch, y + swatch], fill=colour)
                x += swatch + GAP // 2
            draw.text((x, y), text, fill="black", font=text_font)


def header(width: int, preset_name: str, cropmix: CropMix, cell: int) -> PIL.Image.Image:
    """The title and the legend of the box colours, in as many lines as `width` pixels need."""
    title_size, text_size = max(18, cell // 6), max(14, cell // 9)
    title_font, text_font = font(title_size), font(text_size)
    scale = tuple(round(s, 3) for s in cropmix.scale)
    title = f"CropMix ({preset_name!r} preset) beside RandomResizedCrop (RRC), both over crop scales {scale}"
    legend = [(None, "crop boxes, numbered by scale band:"), (BAND_COLOURS[0], "1 = smallest")]
    legend += [(BAND_COLOURS[1], ""), (BAND_COLOURS[2], ""), (BAND_COLOURS[3], "N = largest")]
    legend.append((None, "(N = crops in that output)"))
    measure = PIL.ImageDraw.Draw(PIL.Image.new("RGB", (1, 1)))
    title_lines = flow(measure, [(None, word) for word in title.split()], title_font, 0, width)
    legend_lines = flow(measure, legend, text_font, text_size, width)
    title_step, text_step = round(title_size * 1.3), round(text_size * 1.5)
    legend_y = len(title_lines) * title_step + GAP
    out = PIL.Image.new("RGB", (width, legend_y + len(legend_lines) * text_step + GAP), "white")
    draw = PIL.ImageDraw.Draw(out)
    draw_lines(draw, title_lines, 0, title_step, title_font, title_size)
    draw_lines(draw, legend_lines, legend_y, text_step, text_font, text_size)
    return out


def save_show_grid(
    paths: Sequence[str | Path],
    out: str | Path,
    preset_name: str = "imagenet",
    n: int = 8,
    size: int | None = None,
    seed: int = 0,
    cell: int = 160,
) -> Path:
    """Write a PNG with one block per image (see `image_block`), blocks in a near-square grid, and return its path."""
    if not paths:
        raise ValueError("paths must name at least one image file")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(cell, bool) or not isinstance(cell, int) or cell < 32:
        raise ValueError(f"cell must be an int >= 32 (pixels), got {cell!r}")
    if size is not None and not MIN_IMAGE_SIDE <= size <= MAX_OUTPUT_SIDE:
        raise ValueError(f"size must be an int from {MIN_IMAGE_SIDE} to {MAX_OUTPUT_SIDE}, got {size!r}")
    cells = len(paths) * n * 3  # each output beside its boxes and an RRC output
    if cells * cell * cell > MAX_IMAGE_PIXELS:
        raise ValueError(
            f"n ({n}) outputs for each of {len(paths)} images make a picture of over {cells * cell * cell} pixels, "
            f"more than the limit of {MAX_IMAGE_PIXELS}: ask for fewer outputs or images"
        )
    out = Path(out)
    picture_format = PIL.Image.registered_extensions().get(out.suffix.lower())
    if picture_format is None:
        raise ValueError(f"out must end in an image extension such as .png or .jpg, got {str(out)!r}")
    images = [open_rgb(p) for p in paths]  # every file is checked before any drawing
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:  # a file where a folder of `out` should be
        message = f"out {out}: a file stands where one of its folders should be: choose another out"
        raise FileError(errno.ENOTDIR, message) from error
    torch.manual_seed(seed)
    cropmix = preset(preset_name, size)
    rrc = v2.RandomResizedCrop(cropmix.size, scale=cropmix.scale, antialias=True)
    blocks = [image_block(im, Path(p).name, cropmix, rrc, n, cell) for im, p in zip(images, paths, strict=True)]
    columns = math.ceil(math.sqrt(len(blocks)))
    rows = math.ceil(len(blocks) / columns)
    block_w, block_h = blocks[0].width, max(b.height for b in blocks)
    width = 2 * MARGIN + columns * block_w + (columns - 1) * BLOCK_GAP
    top = header(width - 2 * MARGIN, preset_name, cropmix, cell)
    first_y = MARGIN + top.height + GAP
    grid = PIL.Image.new("RGB", (width, first_y + rows * (block_h + BLOCK_GAP) - BLOCK_GAP + MARGIN), "white")
    grid.paste(top, (MARGIN, MARGIN))
    for i, block in enumerate(blocks):
        row, column = divmod(i, columns)
        grid.paste(block, (MARGIN + column * (block_w + BLOCK_GAP), first_y + row * (block_h + BLOCK_GAP)))
    with atomic_writer(out, "wb") as handle:  # a link planted at `out` is replaced, never written through
        grid.save(handle, format=picture_format)
    return out
