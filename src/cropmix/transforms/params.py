"""Sampling of CropMix parameters: one sampler for `CropMix` and `BatchCropMix`.

Everything random about CropMix is drawn here, for a whole batch at once, from
torch's RNG (or a given `torch.Generator`), so DataLoader worker seeding and
`torch.manual_seed` work as users expect. The raw draws are turned into crop
boxes, mixing orders, lambdas, cut boxes and channel permutations with numpy,
which is cheap for the handful of numbers one image needs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

MIX_OPS = ("mixup", "cutmix")
RRC_TRIES = 10
_GAMMA_CANDIDATES = 8


@dataclass(frozen=True)
class CropMixConfig:
    """Validated settings of CropMix (see `make_config` for the meaning of each)."""

    size: tuple[int, int]
    scale: tuple[float, float]
    ratio: tuple[float, float]
    num_crops: tuple[int, ...]
    mix: tuple[str, ...]
    alpha: float
    channel_permute: bool
    p: float


def _pair(name: str, value: object) -> tuple[float, float]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (low, high) of numbers, got {value!r}")
    low, high = value
    for v in (low, high):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise TypeError(f"{name} must hold finite numbers, got {value!r}")
    return float(low), float(high)


def _size(value: object) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise TypeError(f"size must be an int or a (height, width) pair of ints, got {value!r}")
    if min(value) < 1:
        raise ValueError(f"size must be >= 1 on both sides, got {tuple(value)!r}")
    return int(value[0]), int(value[1])


def make_config(
    size: int | Sequence[int],
    scale: Sequence[float] = (0.01, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    num_crops: int | Sequence[int] = (2, 3, 4),
    mix: str | Sequence[str] = "mixup",
    alpha: float = 0.4,
    channel_permute: bool = True,
    p: float = 1.0,
) -> CropMixConfig:
    """Check CropMix's arguments and return them normalised.

    Raises ValueError or TypeError naming the argument, the bad value and what
    is accepted.
    """
    scale_pair = _pair("scale", scale)
    if not (0.0 < scale_pair[0] <= scale_pair[1] <= 1.0):
        raise ValueError(f"scale must satisfy 0 < low <= high <= 1, got {tuple(scale)!r}")
    ratio_pair = _pair("ratio", ratio)
    if not (0.0 < ratio_pair[0] <= ratio_pair[1]):
        raise ValueError(f"ratio must satisfy 0 < low <= high, got {tuple(ratio)!r}")

    crops = (num_crops,) if isinstance(num_crops, int) else num_crops
    if (
        not isinstance(crops, Sequence)
        or len(crops) == 0
        or not all(isinstance(n, int) and not isinstance(n, bool) for n in crops)
    ):
        raise TypeError(f"num_crops must be an int or a non-empty sequence of ints, got {num_crops!r}")
    if min(crops) < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops!r}")

    mixes = (mix,) if isinstance(mix, str) else mix
    if not isinstance(mixes, Sequence) or len(mixes) == 0:
        raise TypeError(f"mix must be one of {MIX_OPS} or a non-empty sequence of them, got {mix!r}")
    for m in mixes:
        if m not in MIX_OPS:
            raise ValueError(f"mix must be one of {MIX_OPS} or a sequence of them, got {mix!r}")

    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number > 0, got {alpha!r}")
    if not (alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    if not isinstance(channel_permute, bool):
        raise TypeError(f"channel_permute must be a bool, got {channel_permute!r}")
    if isinstance(p, bool) or not isinstance(p, (int, float)):
        raise TypeError(f"p must be a number in [0, 1], got {p!r}")
    if not (0.0 <= p <= 1.0):
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    return CropMixConfig(
        size=_size(size),
        scale=scale_pair,
        ratio=ratio_pair,
        num_crops=tuple(int(n) for n in crops),
        mix=tuple(mixes),
        alpha=float(alpha),
        channel_permute=channel_permute,
        p=float(p),
    )


@dataclass(frozen=True)
class Crop:
    """One crop box in source pixels."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class MixStep:
    """One mixing step: `running mix` (a) with the next view in `order` (b).

    op: "mixup" or "cutmix".
    lam: Mixup: the weight of a (the output is lam*a + (1-lam)*b), drawn from
        Beta(alpha/N, alpha/N). CutMix: the drawn lam ~ U(0, 1); the cut box
        has sides sqrt(1-lam) times the output's before clipping.
    box: CutMix only: (top, left, height, width) of the cut box in output pixels.
    pasted: CutMix only: "new" (b's box is pasted onto a) or "mix" (a's box
        is pasted onto b).
    permuted: which view gets `channel_perm` before mixing: "mix" (a) or
        "new" (b); None when no permutation is applied.
    channel_perm: the channel order given to that view (`view[channel_perm]`);
        an alpha channel always stays in place.
    """

    op: str
    lam: float
    box: tuple[int, int, int, int] | None
    pasted: str | None
    permuted: str | None
    channel_perm: tuple[int, ...] | None


@dataclass(frozen=True)
class CropMixParams:
    """Everything random about one CropMix output; replay it with `transform`.

    crops are in band order (crops[i] comes from the i-th scale band, small to
    large); order lists crop indices in mixing order; steps[k] mixes the
    running image with crops[order[k + 1]]. One crop and no steps is a plain
    RandomResizedCrop.
    """

    image_size: tuple[int, int]
    output_size: tuple[int, int]
    crops: tuple[Crop, ...]
    order: tuple[int, ...]
    steps: tuple[MixStep, ...]


@dataclass(frozen=True)
class BatchParams:
    """Parameters of B images as numpy arrays (M = max crops, S = M - 1 steps).

    Rows beyond an image's own N (crops, order) or N - 1 (steps) are unused.
    """

    n: np.ndarray  # (B,) crops per image
    crops: np.ndarray  # (B, M, 4) top, left, height, width in source pixels
    order: np.ndarray  # (B, M) mixing order
    cutmix: np.ndarray  # (B, S) True where the step is CutMix
    lam: np.ndarray  # (B, S)
    box: np.ndarray  # (B, S, 4) cut box top, left, height, width
    paste_new: np.ndarray  # (B, S) CutMix: True if the new view is pasted
    permute_new: np.ndarray  # (B, S) True if the new view gets the permutation
    perm: np.ndarray | None  # (B, S, C) channel permutations, None if none apply

    def __len__(self) -> int:
        return int(self.n.shape[0])

    def image(self, i: int, image_size: tuple[int, int], output_size: tuple[int, int]) -> CropMixParams:
        """The parameters of image i as a `CropMixParams`."""
        n = int(self.n[i])
        crops = tuple(Crop(*(int(v) for v in self.crops[i, j])) for j in range(n))
        steps = []
        for k in range(n - 1):
            is_cut = bool(self.cutmix[i, k])
            perm = None if self.perm is None else tuple(int(c) for c in self.perm[i, k])
            steps.append(
                MixStep(
                    op="cutmix" if is_cut else "mixup",
                    lam=float(self.lam[i, k]),
                    box=tuple(int(v) for v in self.box[i, k]) if is_cut else None,
                    pasted=("new" if self.paste_new[i, k] else "mix") if is_cut else None,
                    permuted=None if perm is None else ("new" if self.permute_new[i, k] else "mix"),
                    channel_perm=perm,
                )
            )
        return CropMixParams(
            image_size=image_size,
            output_size=output_size,
            crops=crops,
            order=tuple(int(v) for v in self.order[i, :n]),
            steps=tuple(steps),
        )


def _log_gamma(shape: np.ndarray, normals: np.ndarray, uniforms: np.ndarray, boost: np.ndarray) -> np.ndarray:
    """log of Gamma(shape, 1) draws by Marsaglia and Tsang, from given randoms.

    normals, uniforms: (..., K) candidates; the first accepted one is used.
    Shapes below 1 use Gamma(a) = Gamma(a + 1) * U**(1/a), kept in log space so
    tiny shapes (alpha/N = 0.1) cannot underflow. Returns NaN where all K
    candidates were rejected (probability < 1e-10); the caller redraws.
    """
    a = np.where(shape < 1.0, shape + 1.0, shape)[..., None]
    d = a - 1.0 / 3.0
    c = 1.0 / np.sqrt(9.0 * d)
    v = (1.0 + c * normals) ** 3
    with np.errstate(invalid="ignore", divide="ignore"):
        log_v = np.log(v)
        accept = (v > 0) & (np.log1p(-uniforms) < 0.5 * normals**2 + d - d * v + d * log_v)
    first = np.argmax(accept, axis=-1)
    chosen = np.take_along_axis(np.log(d) + log_v, first[..., None], axis=-1)[..., 0]
    chosen = np.where(accept.any(axis=-1), chosen, np.nan)
    return np.where(shape < 1.0, chosen + np.log1p(-boost) / shape, chosen)


def sample_beta(a: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
    """Beta(a, a) draws, elementwise, from torch's RNG."""
    a = np.asarray(a, dtype=np.float64)
    out = np.full(a.shape, np.nan)
    todo = np.ones(a.shape, dtype=bool)
    while todo.any():
        shape = a[todo]
        normals = torch.randn((2, *shape.shape, _GAMMA_CANDIDATES), dtype=torch.float64, generator=generator)
        uniforms = torch.rand((2, *shape.shape, _GAMMA_CANDIDATES + 1), dtype=torch.float64, generator=generator)
        normals, uniforms = normals.numpy(), uniforms.numpy()
        g = [_log_gamma(shape, normals[j], uniforms[j, ..., :-1], uniforms[j, ..., -1]) for j in range(2)]
        lam = 1.0 / (1.0 + np.exp(g[1] - g[0]))
        out[todo] = lam
        todo = np.isnan(out)
    return out


def _rrc_boxes(
    heights: np.ndarray, widths: np.ndarray, lo: np.ndarray, hi: np.ndarray, ratio: tuple[float, float], u: np.ndarray
) -> np.ndarray:
    """RandomResizedCrop boxes with scale in [lo, hi], exactly as torchvision draws them.

    heights, widths: (B,); lo, hi: (B, M); u: (B, M, RRC_TRIES, 4) uniforms.
    Returns (B, M, 4) int64 boxes (top, left, height, width).
    """
    H = heights[:, None, None].astype(np.float64)
    W = widths[:, None, None].astype(np.float64)
    area = H * W * (lo[..., None] + (hi - lo)[..., None] * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    aspect = np.exp(log_r)
    w = np.rint(np.sqrt(area * aspect))
    h = np.rint(np.sqrt(area / aspect))
    valid = (w > 0) & (w <= W) & (h > 0) & (h <= H)
    top = np.floor(u[..., 2] * (H - h + 1))
    left = np.floor(u[..., 3] * (W - w + 1))
    first = np.argmax(valid, axis=-1)[..., None]
    pick = lambda x: np.take_along_axis(x, first, axis=-1)[..., 0]  # noqa: E731
    box = np.stack([pick(top), pick(left), pick(h), pick(w)], axis=-1)

    # torchvision's fallback after RRC_TRIES misses: a centre crop clamped to the ratio range.
    Hf, Wf = H[..., 0], W[..., 0]
    in_ratio = Wf / Hf
    fw = np.where(in_ratio < ratio[0], Wf, np.where(in_ratio > ratio[1], np.rint(Hf * ratio[1]), Wf))
    fh = np.where(in_ratio < ratio[0], np.rint(Wf / ratio[0]), Hf)
    fw, fh = np.clip(fw, 1, Wf), np.clip(fh, 1, Hf)
    fallback = np.stack([(Hf - fh) // 2, (Wf - fw) // 2, fh, fw], axis=-1)
    fallback = np.broadcast_to(fallback, box.shape)
    box = np.where(valid.any(axis=-1)[..., None], box, fallback)
    return box.astype(np.int64)


def sample_batch(
    config: CropMixConfig,
    heights: Sequence[int] | np.ndarray,
    widths: Sequence[int] | np.ndarray,
    colour_channels: int,
    num_channels: int,
    generator: torch.Generator | None = None,
) -> BatchParams:
    """Draw the CropMix parameters of a batch of images.

    heights, widths: each image's size in pixels. colour_channels of the
    num_channels are permuted (the rest, an alpha channel, stays in place).
    """
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    B = heights.shape[0]
    M = max(config.num_crops)
    S = max(M - 1, 1)
    out_h, out_w = config.size
    C = num_channels

    # One draw of all uniforms keeps the stream layout fixed and the call cheap.
    n_u = 3 + M * RRC_TRIES * 4 + M + S * 4 + S * C
    u = torch.rand((B, n_u), dtype=torch.float64, generator=generator).numpy()
    cursor = 0

    def take(*shape: int) -> np.ndarray:
        nonlocal cursor
        size = int(np.prod(shape))
        block = u[:, cursor : cursor + size].reshape(B, *shape)
        cursor += size
        return block

    u_n, u_mix, u_p = take(1)[:, 0], take(1)[:, 0], take(1)[:, 0]
    choices = np.asarray(config.num_crops)
    n = choices[np.minimum((u_n * len(choices)).astype(np.int64), len(choices) - 1)]
    n = np.where(u_p < config.p, n, 1)  # without CropMix: one RRC over the whole scale range

    s_min, s_max = config.scale
    band = np.arange(M)[None, :]
    width_band = (s_max - s_min) / n[:, None]
    lo = s_min + band * width_band
    hi = np.minimum(lo + width_band, s_max)
    lo = np.minimum(lo, s_max)
    crops = _rrc_boxes(heights, widths, lo, hi, config.ratio, take(M, RRC_TRIES, 4))
    crops[band >= n[:, None]] = 0

    order_keys = take(M)
    order_keys = np.where(band < n[:, None], order_keys, np.inf)
    order = np.argsort(order_keys, axis=1, kind="stable")

    mixes = np.asarray([m == "cutmix" for m in config.mix])
    cut_per_image = mixes[np.minimum((u_mix * len(mixes)).astype(np.int64), len(mixes) - 1)]
    cutmix = np.broadcast_to(cut_per_image[:, None], (B, S)).copy()
    u_lam, u_cy, u_cx, u_paste = (take(S) for _ in range(4))

    lam = u_lam.copy()
    mixup = ~cutmix
    if mixup.any():
        a = np.broadcast_to((config.alpha / n)[:, None], (B, S))
        lam[mixup] = sample_beta(a[mixup], generator)

    cut = np.sqrt(1.0 - lam)
    ch, cw = np.rint(out_h * cut), np.rint(out_w * cut)
    cy, cx = np.floor(u_cy * out_h), np.floor(u_cx * out_w)
    y1, x1 = cy - ch // 2, cx - cw // 2
    y2, x2 = np.clip(y1 + ch, 0, out_h), np.clip(x1 + cw, 0, out_w)
    y1, x1 = np.clip(y1, 0, out_h), np.clip(x1, 0, out_w)
    box = np.stack([y1, x1, y2 - y1, x2 - x1], axis=-1).astype(np.int64)
    paste_new = u_paste < 0.5
    # Mixup permutes the view weighing <= 0.5; CutMix permutes the pasted view.
    permute_new = np.where(cutmix, paste_new, lam > 0.5)

    perm_keys = take(S, C)
    perm = None
    if config.channel_permute and colour_channels > 1:
        perm_keys[..., colour_channels:] = np.inf
        perm = np.argsort(perm_keys, axis=-1, kind="stable")
    return BatchParams(
        n=n,
        crops=crops,
        order=order,
        cutmix=cutmix,
        lam=lam,
        box=box,
        paste_new=paste_new,
        permute_new=permute_new,
        perm=perm,
    )
