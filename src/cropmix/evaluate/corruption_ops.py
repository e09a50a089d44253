"""Building blocks of the standard corruptions (`corruptions.py`), batched in torch.

Each block re-implements one step of Hendrycks & Dietterich's reference code (make_cifar_c.py /
make_imagenet_c.py) with the same arithmetic: OpenCV's and SciPy's border rules, SciPy's linear
zoom, Pillow's BOX resampling, the diamond-square plasma fractal, ImageMagick's motion blur.
Images are (B, C, H, W) floats; per-image randomness comes in as tensors drawn by the caller.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

Uniform = Callable[[tuple[int, ...]], Tensor]  # shape -> uniform [0, 1) float64 numbers


def fold_index(index: Tensor, size: int, mode: str) -> Tensor:
    """Map integer positions outside 0..size-1 inside it by a border rule.

    "edge": repeat the border pixel (SciPy "nearest", ImageMagick's default); "reflect101":
    mirror without repeating it (OpenCV's default BORDER_REFLECT_101, numpy "reflect");
    "symmetric": mirror repeating it (SciPy and scikit-image "reflect").
    """
    if mode == "edge" or size == 1:
        return index.clamp(0, size - 1)
    if mode == "reflect101":
        period = 2 * (size - 1)
        index = index.remainder(period)
        return torch.where(index >= size, period - index, index)
    if mode == "symmetric":
        period = 2 * size
        index = index.remainder(period)
        return torch.where(index >= size, period - 1 - index, index)
    raise ValueError(f"mode must be 'edge', 'reflect101' or 'symmetric', got {mode!r}")


def pad(images: Tensor, amount: int, mode: str) -> Tensor:
    """Pad the last two dimensions by `amount` on every side (any amount, unlike F.pad's reflect)."""
    h, w = images.shape[-2:]
    rows = fold_index(torch.arange(-amount, h + amount, device=images.device), h, mode)
    cols = fold_index(torch.arange(-amount, w + amount, device=images.device), w, mode)
    return images.index_select(-2, rows).index_select(-1, cols)


def correlate(images: Tensor, kernel: Tensor, mode: str) -> Tensor:
    """Every channel correlated with one odd square kernel (k, k) (cv2.filter2D with a border rule)."""
    b, c, h, w = images.shape
    k = kernel.shape[-1]
    weight = kernel.to(images).expand(c, 1, k, k)
    return F.conv2d(pad(images, k // 2, mode), weight, groups=c)


def filter_matrix(size: int, taps: Tensor, mode: str) -> Tensor:
    """Correlation of a length-`size` signal with odd 1-D taps and border rule `mode`, as a (size, size)
    matrix (any kernel length: the border folds back as often as needed)."""
    k = taps.numel()
    rows = torch.arange(size).repeat_interleave(k)
    cols = fold_index(torch.arange(size)[:, None] + torch.arange(k)[None, :] - k // 2, size, mode).reshape(-1)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    matrix.index_put_((rows, cols), taps.double().repeat(size), accumulate=True)
    return matrix


def separable(images: Tensor, taps: Tensor, mode: str) -> Tensor:
    """Correlate rows and columns with the same odd 1-D taps."""
    h, w = images.shape[-2:]
    rows = filter_matrix(h, taps, mode).to(images)
    cols = filter_matrix(w, taps, mode).to(images)
    return rows @ images @ cols.T


def gaussian_taps(sigma: float, radius: int) -> Tensor:
    """Normalised Gaussian taps at -radius..radius (float64)."""
    if sigma <= 0:
        return torch.ones(1, dtype=torch.float64)
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (t / sigma) ** 2)
    return g / g.sum()


def gaussian_blur(images: Tensor, sigma: float, mode: str = "edge", truncate: float = 4.0) -> Tensor:
    """scikit-image's `gaussian` (SciPy's gaussian_filter per channel): radius int(truncate * sigma + 0.5)."""
    radius = int(truncate * sigma + 0.5)
    return separable(images, gaussian_taps(sigma, radius), mode)


def disk_kernel(radius: float, alias_blur: float) -> Tensor:
    """The reference's defocus disk: a 17x17 (or wider) binary disk, normalised, then Gaussian-smoothed
    with a 3x3 (or 5x5) cv2.GaussianBlur of sigma alias_blur (OpenCV's reflect-101 border)."""
    if radius <= 8:
        coords, ksize = torch.arange(-8, 9, dtype=torch.float64), 3
    else:
        coords, ksize = torch.arange(-radius, radius + 1, dtype=torch.float64), 5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    disk = (xx**2 + yy**2 <= radius**2).double()
    disk = disk / disk.sum()
    return separable(disk[None, None], gaussian_taps(alias_blur, ksize // 2), "reflect101")[0, 0]


def shift_gather(images: Tensor, dy: Tensor, dx: Tensor) -> Tensor:
    """out[b, :, y, x] = images[b, :, clamp(y + dy[b]), clamp(x + dx[b])] (edge pixels repeated)."""
    b, c, h, w = images.shape
    rows = (torch.arange(h, device=images.device)[None] + dy[:, None]).clamp(0, h - 1)
    cols = (torch.arange(w, device=images.device)[None] + dx[:, None]).clamp(0, w - 1)
    index = (rows[:, :, None] * w + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return images.reshape(b, c, h * w).gather(2, index).view(b, c, h, w)


def motion_blur(images: Tensor, radius: int, sigma: float, angles: Tensor) -> Tensor:
    """ImageMagick's MotionBlurImage, re-implemented: a one-sided Gaussian of 2*radius+1 taps along the
    direction angles[b] (degrees), sampled at integer offsets ceil(i*cos - 0.5), ceil(i*sin - 0.5) with
    edge pixels repeated; taps that would leave the image are dropped (as the imagecorruptions port does)."""
    width = 2 * int(radius) + 1
    taps = gaussian_taps(sigma, width)[width : 2 * width]  # exp(-i^2 / 2 sigma^2), i = 0..width-1, renormalised below
    taps = (taps / taps.sum()).tolist()
    h, w = images.shape[-2:]
    theta = torch.deg2rad(angles.double())
    out = torch.zeros_like(images)
    for i, tap in enumerate(taps):
        dy = torch.ceil(i * torch.sin(theta) - 0.5).long().to(images.device)
        dx = torch.ceil(i * torch.cos(theta) - 0.5).long().to(images.device)
        inside = ((dy.abs() < h) & (dx.abs() < w)).to(images.dtype).view(-1, 1, 1, 1)
        out += tap * inside * shift_gather(images, dy, dx)
    return out


def zoom_matrix(size: int, zoom: float, device: torch.device | str = "cpu") -> Tensor:
    """The reference's `clipped_zoom` along one axis as a (size, size) matrix: the central ceil(size/zoom)
    pixels, scipy.ndimage.zoom(order=1) to round(crop*zoom) pixels, the central `size` of them kept."""
    crop = math.ceil(size / zoom)
    top = (size - crop) // 2
    out_size = int(round(crop * zoom))
    trim = (out_size - size) // 2
    step = (crop - 1) / (out_size - 1) if out_size > 1 else 0.0
    coords = torch.arange(trim, trim + size, dtype=torch.float64) * step
    low = coords.floor().clamp(max=crop - 1)
    frac = coords - low
    high = (low + 1).clamp(max=crop - 1)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    rows = torch.arange(size)
    matrix.index_put_((rows, top + low.long()), 1 - frac, accumulate=True)
    matrix.index_put_((rows, top + high.long()), frac, accumulate=True)
    return matrix.to(device)


def clipped_zoom(images: Tensor, zoom: float) -> Tensor:
    """Zoom into the centre of every image by `zoom` (>= 1), keeping the size."""
    h, w = images.shape[-2:]
    rows = zoom_matrix(h, zoom, images.device).to(images.dtype)
    cols = zoom_matrix(w, zoom, images.device).to(images.dtype)
    return rows @ images @ cols.T


PILLOW_PRECISION_BITS = 22  # Pillow's fixed point for 8-bit resampling (32 - 8 - 2 bits)


@functools.lru_cache(maxsize=64)
def box_windows(in_size: int, out_size: int) -> tuple[Tensor, Tensor]:
    """Pillow's BOX resampling windows along one axis: output i averages inputs low[i] .. high[i] - 1,
    as its precompute_coeffs picks them (box filter (-0.5, 0.5] at (x - centre + 0.5) / filterscale)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support, inverse = 0.5 * filterscale, 1.0 / filterscale
    lows, highs = [], []
    for out in range(out_size):
        center = (out + 0.5) * scale
        start = max(int(center - support + 0.5), 0)
        stop = min(int(center + support + 0.5), in_size)
        inside = [x for x in range(start, stop) if -0.5 < (x - center + 0.5) * inverse <= 0.5]
        lows.append(inside[0])
        highs.append(inside[-1] + 1)
    return torch.tensor(lows), torch.tensor(highs)


def _box_pass_8bit(levels: Tensor, out_size: int, dim: int) -> Tensor:
    """One Pillow BOX pass along `dim` (-1 or -2) on integer levels (int64): each output the window's sum
    times Pillow's rounded 22-bit coefficient 1/n, plus a half, shifted back and clipped to 0..255."""
    low, high = (t.to(levels.device) for t in box_windows(levels.shape[dim], out_size))
    sums = F.pad(levels.cumsum(dim), (1, 0) if dim == -1 else (0, 0, 1, 0))
    window = sums.index_select(dim, high) - sums.index_select(dim, low)
    one = 1 << PILLOW_PRECISION_BITS
    coefficient = ((1.0 / (high - low).double()) * one + 0.5).floor().long()
    coefficient = coefficient if dim == -1 else coefficient[:, None]
    return ((window * coefficient + one // 2) >> PILLOW_PRECISION_BITS).clamp(0, 255)


def box_resize_8bit(levels: Tensor, height: int, width: int) -> Tensor:
    """Pillow's `Image.resize(size, BOX)` of 8-bit images: (B, C, H, W) integer levels 0..255 (any dtype) to
    (height, width) int64 levels, horizontal pass first, each pass rounded to 8 bits as Pillow does."""
    out = levels.long()
    if width != out.shape[-1]:
        out = _box_pass_8bit(out, width, -1)
    if height != out.shape[-2]:
        out = _box_pass_8bit(out, height, -2)
    return out


def plasma_fractal(batch: int, mapsize: int, decay: float, uniform: Uniform) -> Tensor:
    """Diamond-square height maps (batch, mapsize, mapsize) in [0, 1], float64, as the reference's
    `plasma_fractal`: the same steps, the same uniform(-wibble, wibble) * wibble perturbations drawn in
    the same order (squares, then the two diamond sets, per level)."""
    if mapsize < 2 or mapsize & (mapsize - 1):
        raise ValueError(f"mapsize must be a power of two >= 2, got {mapsize}")
    grid = torch.zeros(batch, mapsize, mapsize, dtype=torch.float64)
    step, wibble = mapsize, 100.0

    def wibbled(total: Tensor) -> Tensor:
        return total / 4 + wibble * (uniform(tuple(total.shape)).to(total) * 2 * wibble - wibble)

    while step >= 2:
        half = step // 2
        corners = grid[:, 0::step, 0::step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        grid[:, half::step, half::step] = wibbled(squares)
        centres, corners = grid[:, half::step, half::step], grid[:, 0::step, 0::step]
        left = centres + centres.roll(1, 1) + corners + corners.roll(-1, 2)
        grid[:, 0::step, half::step] = wibbled(left)
        top = centres + centres.roll(1, 2) + corners + corners.roll(-1, 1)
        grid[:, half::step, 0::step] = wibbled(top)
        step //= 2
        wibble /= decay
    grid = grid - grid.amin(dim=(1, 2), keepdim=True)
    return grid / grid.amax(dim=(1, 2), keepdim=True)


def bilinear_sample(images: Tensor, ys: Tensor, xs: Tensor, mode: str) -> Tensor:
    """Sample every channel of image b at (ys[b], xs[b]) (each (B, H', W')), bilinear, border rule `mode`."""
    b, c, h, w = images.shape
    y0, x0 = ys.floor(), xs.floor()
    wy, wx = (ys - y0).to(images.dtype), (xs - x0).to(images.dtype)
    rows = [fold_index(y0.long() + dy, h, mode) * w for dy in (0, 1)]  # folded once per neighbour row
    columns = [fold_index(x0.long() + dx, w, mode) for dx in (0, 1)]
    flat = images.reshape(b, c, h * w)
    out = torch.zeros(b, c, *ys.shape[1:], device=images.device, dtype=images.dtype)
    for dy in (0, 1):
        for dx in (0, 1):
            index = (rows[dy] + columns[dx]).view(b, 1, -1).expand(b, c, -1)
            weight = (wy if dy else 1 - wy) * (wx if dx else 1 - wx)
            out += weight[:, None] * flat.gather(2, index).view_as(out)
    return out


def local_shuffle(images: Tensor, delta: int, iterations: int, offsets: Tensor) -> Tensor:
    """The reference glass blur's pixel moves, in its order: for each iteration, for h from H-delta down to
    delta+1, for w likewise, pixel (h, w) takes the current value of (h + dy, w + dx); offsets
    (iterations, positions, B, 2) hold (dx, dy) in [-delta, delta). The reference writes this as a swap,
    `x[h, w], x[h', w'] = x[h', w'], x[h, w]`, but on an (H, W, 3) array the right side holds views, so the
    second assignment writes (h', w')'s own value back: a copy, not a swap. Reproduced as it ran.

    The moves are sequential (a move reads what earlier moves wrote) but resolve without a loop over
    pixels: a pixel whose partner already moved in this iteration ends with that partner's final value,
    so each follows its chain of already-moved partners to the first one that had not moved, and takes
    that one's partner's value from before the iteration (`_chain_ends`). Runs on the CPU, all images at once.
    """
    b, c, h, w = images.shape
    ys, xs = torch.arange(h - delta, delta, -1), torch.arange(w - delta, delta, -1)
    anchors = (ys[:, None] * w + xs[None, :]).reshape(-1)  # the positions, in the order they move
    positions = len(anchors)
    if offsets.shape != (iterations, positions, b, 2):
        raise ValueError(f"offsets must have shape {(iterations, positions, b, 2)}, got {tuple(offsets.shape)}")
    turn = torch.full((h * w,), positions, dtype=torch.long)  # when each position moves; positions: never
    turn[anchors] = torch.arange(positions)
    partners = anchors.view(1, -1, 1) + offsets[..., 1].cpu() * w + offsets[..., 0].cpu()  # (iterations, P, B)
    source = torch.arange(h * w).repeat(b, 1)  # source[b, p]: the original pixel now at p
    for it in range(iterations):
        ends = _chain_ends(partners[it], turn)
        source[:, anchors] = source.gather(1, ends.t())
    index = source.to(images.device).view(b, 1, -1).expand(b, c, -1)
    return images.reshape(b, c, h * w).gather(2, index).view_as(images)


def _chain_ends(partners: Tensor, turn: Tensor) -> Tensor:
    """For the k-th move of one iteration (partners (P, B) positions, turn[position] its move's index):
    the position whose value before the iteration the k-th moved pixel ends with. Pointer doubling: at
    most log2(P) passes."""
    moves, b = partners.shape
    own = torch.arange(moves)[:, None].expand(moves, b)
    partner_turn = turn[partners]
    link = torch.where(partner_turn < own, partner_turn, own)  # to the partner's move if it came earlier
    columns = torch.arange(b)[None, :].expand(moves, b)
    while True:
        jumped = link[link, columns]
        if torch.equal(jumped, link):
            return partners[link, columns]
        link = jumped


def smooth_noise(shape: tuple[int, int, int, int], cells: int, normal: Callable[[tuple[int, ...]], Tensor]) -> Tensor:
    """Gaussian noise on a cells x cells grid, bicubically upsampled to shape (B, C, H, W)."""
    b, c, h, w = shape
    coarse = normal((b, c, cells, cells))
    return F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
