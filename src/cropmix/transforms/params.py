"""Sampling of CropMix parameters: `sample_batch` for `BatchCropMix`, the reference sampler.

Everything random about CropMix is drawn here, for a whole batch at once, from
torch's RNG (or a given `torch.Generator`), so DataLoader worker seeding and
`torch.manual_seed` work as users expect. The raw draws are turned into crop
boxes, mixing orders, lambdas, cut boxes and channel permutations with numpy.
`sample_one.py` is the same computation for one image in plain Python (what
`CropMix` uses); tests/test_fast_paths.py checks the two agree draw for draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

MIX_OPS = ("mixup", "cutmix")
RRC_TRIES = 10
GAMMA_CANDIDATES = 6
BETA_UNIFORMS = 2 * (3 * GAMMA_CANDIDATES + 1)  # per Beta draw: two gammas


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


def _first_index(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the first True along the last axis of mask (the first position where none is)."""
    last = mask.shape[-1]
    return np.arange(mask.size // last) * last + np.argmax(mask, axis=-1).ravel()


def _take(values: np.ndarray, flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(values).reshape(-1)[flat].reshape(shape)


def _beta_from_uniforms(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Beta(a, a) draws from uniforms u of shape (*a.shape, 2, 3 * GAMMA_CANDIDATES + 1).

    Beta(a, a) = X / (X + Y) with X, Y ~ Gamma(a). Each Gamma uses Marsaglia
    and Tsang's method with Box-Muller normals: the first of GAMMA_CANDIDATES
    accepted candidates is taken. Shapes below 1 use Gamma(a) = Gamma(a + 1) *
    U**(1/a), kept in log space so tiny shapes (alpha/N = 0.1) cannot
    underflow. NaN where every candidate was rejected (probability < 1e-7); the
    caller redraws those.
    """
    K = GAMMA_CANDIDATES
    shape = a[..., None]  # broadcast over the two gammas
    boosted = np.where(shape < 1.0, shape + 1.0, shape)
    d = (boosted - 1.0 / 3.0)[..., None]
    c = 1.0 / np.sqrt(9.0 * d)
    normal = np.sqrt(-2.0 * np.log1p(-u[..., :K])) * np.cos(2.0 * math.pi * u[..., K : 2 * K])
    v = (1.0 + c * normal) ** 3
    log_v = np.log(np.maximum(v, 1e-300))
    accept = (v > 0) & (np.log1p(-u[..., 2 * K : 3 * K]) < 0.5 * normal**2 + d - d * v + d * log_v)
    log_gamma = _take(log_v, _first_index(accept), accept.shape[:-1]) + np.log(d[..., 0])
    log_gamma = np.where(accept.any(axis=-1), log_gamma, np.nan)
    log_gamma = np.where(shape < 1.0, log_gamma + np.log1p(-u[..., 3 * K]) / shape, log_gamma)
    return 1.0 / (1.0 + np.exp(log_gamma[..., 1] - log_gamma[..., 0]))


def sample_beta(a: np.ndarray, u: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
    """Beta(a, a) draws, elementwise, from uniforms u (see `_beta_from_uniforms`); rare misses are redrawn."""
    lam = _beta_from_uniforms(a, u)
    missing = np.isnan(lam)
    while missing.any():
        extra = torch.rand((int(missing.sum()), 2, BETA_UNIFORMS // 2), dtype=torch.float64, generator=generator)
        lam[missing] = _beta_from_uniforms(a[missing], extra.numpy())
        missing = np.isnan(lam)
    return lam


def _rrc_boxes(
    heights: np.ndarray, widths: np.ndarray, lo: np.ndarray, hi: np.ndarray, ratio: tuple[float, float], u: np.ndarray
) -> np.ndarray:
    """RandomResizedCrop boxes with scale in [lo, hi], exactly as torchvision draws them.

    heights, widths: (B,); lo, hi: (B, M); u: (B, M, 4, RRC_TRIES) uniforms
    (area, log-ratio, top, left). Returns (B, M, 4) int64 (top, left, height, width).
    """
    H = heights[:, None].astype(np.float64)
    W = widths[:, None].astype(np.float64)
    area = (H * W)[..., None] * (lo[..., None] + (hi - lo)[..., None] * u[:, :, 0])
    aspect = np.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, :, 1])
    w = np.rint(np.sqrt(area * aspect))
    h = np.rint(np.sqrt(area / aspect))
    valid = (w > 0) & (w <= W[..., None]) & (h > 0) & (h <= H[..., None])
    first, shape = _first_index(valid), valid.shape[:-1]
    h, w = _take(h, first, shape), _take(w, first, shape)
    box = np.empty((*shape, 4))
    box[..., 0] = np.floor(_take(u[:, :, 2], first, shape) * (H - h + 1))
    box[..., 1] = np.floor(_take(u[:, :, 3], first, shape) * (W - w + 1))
    box[..., 2], box[..., 3] = h, w
    found = valid.any(axis=-1)
    if not found.all():
        # torchvision's fallback after RRC_TRIES misses: a centre crop clamped to the ratio range.
        in_ratio = W / H
        fw = np.where(in_ratio > ratio[1], np.rint(H * ratio[1]), W)
        fh = np.where(in_ratio < ratio[0], np.rint(W / ratio[0]), H)
        fw, fh = np.clip(fw, 1, W), np.clip(fh, 1, H)
        fallback = np.stack(np.broadcast_arrays((H - fh) // 2, (W - fw) // 2, fh, fw), axis=-1)
        box = np.where(found[..., None], box, fallback)
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
    All randomness is one draw of uniforms from torch's RNG (or `generator`),
    laid out per image; Beta draws that reject every candidate draw again.
    """
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    B = heights.shape[0]
    M = max(config.num_crops)
    S = max(M - 1, 1)
    C = num_channels
    out_h, out_w = config.size

    sizes = {"n": 1, "mix": 1, "p": 1, "crop": M * 4 * RRC_TRIES, "order": M, "step": S * 4, "perm": S * C}
    sizes["beta"] = S * BETA_UNIFORMS
    u = torch.rand((B, sum(sizes.values())), dtype=torch.float64, generator=generator).numpy()
    block, start = {}, 0
    for name, size in sizes.items():
        block[name], start = u[:, start : start + size], start + size

    choices = np.asarray(config.num_crops)
    n = choices[(block["n"][:, 0] * len(choices)).astype(np.int64)]
    n = np.where(block["p"][:, 0] < config.p, n, 1)  # without CropMix: one RRC over the whole scale range

    s_min, s_max = config.scale
    band = np.arange(M)
    width_band = (s_max - s_min) / n[:, None]
    lo = np.minimum(s_min + band * width_band, s_max)
    hi = np.minimum(lo + width_band, s_max)
    crops = _rrc_boxes(heights, widths, lo, hi, config.ratio, block["crop"].reshape(B, M, 4, RRC_TRIES))
    unused = band >= n[:, None]
    crops[unused] = 0
    order = np.argsort(np.where(unused, 2.0, block["order"]), axis=1, kind="stable")

    mixes = np.asarray([m == "cutmix" for m in config.mix])
    cutmix = np.repeat(mixes[(block["mix"] * len(mixes)).astype(np.int64)], S, axis=1)
    u_lam, u_cy, u_cx, u_paste = block["step"].reshape(B, 4, S).transpose(1, 0, 2)
    lam = u_lam.copy()
    u_beta = block["beta"].reshape(B, S, 2, BETA_UNIFORMS // 2)
    if not cutmix.any():
        lam = sample_beta(np.repeat((config.alpha / n)[:, None], S, axis=1), u_beta, generator)
    elif not cutmix.all():
        alpha = np.repeat((config.alpha / n)[:, None], S, axis=1)
        lam[~cutmix] = sample_beta(alpha[~cutmix], u_beta[~cutmix], generator)

    box = np.zeros((B, S, 4), dtype=np.int64)
    if cutmix.any():
        side = np.sqrt(1.0 - lam)
        ch, cw = np.rint(out_h * side), np.rint(out_w * side)
        y1 = np.floor(u_cy * out_h) - ch // 2
        x1 = np.floor(u_cx * out_w) - cw // 2
        y2, x2 = np.clip(y1 + ch, 0, out_h), np.clip(x1 + cw, 0, out_w)
        y1, x1 = np.clip(y1, 0, out_h), np.clip(x1, 0, out_w)
        box = np.where(cutmix[..., None], np.stack([y1, x1, y2 - y1, x2 - x1], axis=-1), 0).astype(np.int64)
    paste_new = u_paste < 0.5
    # Mixup permutes the view weighing <= 0.5; CutMix permutes the pasted view.
    permute_new = np.where(cutmix, paste_new, lam > 0.5)

    perm = None
    if config.channel_permute and colour_channels > 1:
        keys = block["perm"].reshape(B, S, C).copy()
        keys[..., colour_channels:] = 2.0  # alpha sorts last and stays in place
        perm = np.argsort(keys, axis=-1, kind="stable")
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
