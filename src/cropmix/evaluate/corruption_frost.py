"""The frost layer of the `frost` corruption: the reference's frost photographs when the `imagecorruptions`
package is installed (`pip install cropmix[robustness]`; read from its folder at run time, never copied
here), otherwise a procedural ice texture.

With the photographs the layer is the reference's (make_imagenet_c.py, make_cifar_c.py): one of the
first five of its six photographs (the reference draws randint(5), so frost6 is never used), for the
CIFAR table shrunk to 0.2 of its size by OpenCV's bilinear resize (at that factor: every fifth pixel,
from the third), then a window of the image's size cropped at randint(0, rows - h), randint(0, cols - w).
`imagecorruptions`' own `frost` first enlarges every photograph by 1.1 (bicubic); the published sets do not.
A photograph not larger than the image (only outside the reference's sizes) is enlarged bicubically to
1.1 times the size that covers the image, as `imagecorruptions` does.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.image_files import image_size, open_image
from . import corruption_ops as ops
from .corruption_constants import CIFAR

PHOTOGRAPHS = "imagecorruptions"  # frost source: the reference's photographs, from that package
PROCEDURAL = "procedural"  # frost source: the procedural texture
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg")  # the ones the reference draws
MAX_PHOTO_SIDE = 4096  # the shipped photographs are at most 900 px a side
CIFAR_SHRINK = 5  # make_cifar_c.py: cv2.resize(frost, fx=0.2, fy=0.2)

Draw = Callable[..., Tensor]  # (kind, shape, **kw) -> numbers on the images' device, as corruptions._draw


def photo_folder() -> Path | None:
    """The installed `imagecorruptions` package's frost folder, if it holds the five photographs; the package
    is located, not imported (its import needs OpenCV and scikit-image)."""
    try:
        spec = importlib.util.find_spec("imagecorruptions")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "frost"
        if all((folder / name).is_file() for name in FROST_FILES):
            return folder
    return None


def frost_source() -> str:
    """Which frost layer `frost` uses by default: PHOTOGRAPHS when they are installed, else PROCEDURAL."""
    return PROCEDURAL if photo_folder() is None else PHOTOGRAPHS


@functools.lru_cache(maxsize=2)
def _photos(folder: Path) -> tuple[Tensor, ...]:
    """The five photographs as uint8 RGB (3, H, W), decoded once per folder (alpha dropped, as cv2.imread does)."""
    photos = []
    for name in FROST_FILES:
        width, height = image_size(folder / name)
        if max(width, height) > MAX_PHOTO_SIDE:
            raise ValueError(
                f"{folder / name}: {width}x{height} pixels; a frost photograph must have sides <= {MAX_PHOTO_SIDE}"
            )
        array = np.asarray(open_image(folder / name))
        photos.append(torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous())
    return tuple(photos)


def _fitted(photo: Tensor, table: str, h: int, w: int) -> Tensor:
    """The photograph the crop is taken from: shrunk for the CIFAR table, enlarged when not larger than the image."""
    if table == CIFAR:
        rows, cols = round(photo.shape[1] / CIFAR_SHRINK), round(photo.shape[2] / CIFAR_SHRINK)
        pick_rows = (torch.arange(rows) * CIFAR_SHRINK + CIFAR_SHRINK // 2).clamp(max=photo.shape[1] - 1)
        pick_cols = (torch.arange(cols) * CIFAR_SHRINK + CIFAR_SHRINK // 2).clamp(max=photo.shape[2] - 1)
        photo = photo.index_select(1, pick_rows).index_select(2, pick_cols)
    if photo.shape[1] > h and photo.shape[2] > w:
        return photo
    factor = 1.1 * max(h / photo.shape[1], w / photo.shape[2], 1.0)
    size = (math.ceil(photo.shape[1] * factor), math.ceil(photo.shape[2] * factor))
    grown = F.interpolate(photo[None].double(), size=size, mode="bicubic", align_corners=False)[0]
    return grown.round().clamp(0, 255).to(torch.uint8)


def photo_layer(shape: tuple[int, int, int, int], table: str, draw: Draw, like: Tensor) -> Tensor:
    """The reference's frost layer (B, C, H, W) in [0, 1]: per image, a photograph and a crop drawn in the
    reference's order (index, row offset, column offset); 1 channel: its luma (scikit-image's rgb2gray)."""
    folder = photo_folder()
    if folder is None:
        raise ModuleNotFoundError("the frost photographs need imagecorruptions: pip install cropmix[robustness]")
    photos = _photos(folder)
    b, c, h, w = shape
    layers = []
    for _ in range(b):
        photo = _fitted(photos[int(draw("randint", (1,), low=0, high=len(FROST_FILES)))], table, h, w)
        top = int(draw("randint", (1,), low=0, high=photo.shape[1] - h))
        left = int(draw("randint", (1,), low=0, high=photo.shape[2] - w))
        layers.append(photo[:, top : top + h, left : left + w])
    layer = torch.stack(layers).to(like.device, torch.float64) / 255
    if c != 3:
        luma = torch.tensor([0.2125, 0.7154, 0.0721], dtype=torch.float64, device=like.device).view(1, 3, 1, 1)
        layer = (layer * luma).sum(1, keepdim=True).expand(b, c, h, w)
    return layer.to(like.dtype)


def frost_texture(shape: tuple[int, int, int, int], draw: Draw, like: Tensor) -> Tensor:
    """A procedural frost layer (B, C, H, W) in [0, 1]: ridged multi-scale noise (thin bright crystal
    edges) on a bluish white whose brightness varies per image like the reference's six photographs
    (channel means 0.3..0.84, spread about 0.1). Not the reference's photographs: about 17-27% milder."""
    b, c, h, w = shape

    def normal(size: tuple[int, ...]) -> Tensor:
        return draw("randn", size)

    veins = torch.zeros(b, 1, h, w, device=like.device)
    for octave, cells in enumerate((3, 6, 12, 24)):
        noise = ops.smooth_noise((b, 1, h, w), min(cells, max(2, max(h, w) // 2)), normal)
        veins += (1 - noise.abs().clamp(max=1)) ** 8 * 0.7**octave
    veins = veins / veins.amax(dim=(2, 3), keepdim=True).clamp_min(1e-6)
    level = 0.5 + 0.3 * draw("rand", (b, 1, 1, 1))
    tint = torch.tensor([0.82, 0.93, 1.0], device=like.device)
    tint = tint.view(1, 3, 1, 1) if c == 3 else tint.mean().view(1, 1, 1, 1).expand(1, c, 1, 1)
    return (level * tint * (0.8 + 0.6 * veins)).clamp(0, 1).to(like.dtype)
