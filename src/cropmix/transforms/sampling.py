"""Drawing CropMix's parameters: the draw layout, declared once, and two samplers that read it.

Everything random about an image is one row of float64 uniforms from torch's RNG (or a given
`torch.Generator`), so DataLoader worker seeding and `torch.manual_seed` work as users expect.
`draw_layout` says which uniforms go where. Two samplers turn a row into parameters with the
same formulas, side by side below:

- `sample_one`: one image in plain Python (`math`), what `CropMix` uses: for a 32x32 image,
  numpy's per-call cost would exceed the resize itself.
- `sample_batch`: B images at once with numpy, what `BatchCropMix` uses.

For the same RNG state both return the same parameters and consume the same draws
(tests/test_fast_paths.py checks it draw for draw), so a batch is its images drawn one after
another. Change both together.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch

from .config import CropMixConfig
from .mixops import MIX_OPS, op_index
from .params import BatchParams, Crop, CropMixParams, MixStep

RRC_TRIES = 10
GAMMA_CANDIDATES = 6
# One Gamma draw: GAMMA_CANDIDATES Box-Muller radii, as many angles, as many acceptance tests, one boost.
GAMMA_UNIFORMS = 3 * GAMMA_CANDIDATES + 1
BETA_UNIFORMS = 2 * GAMMA_UNIFORMS  # Beta(a, a) = X / (X + Y): two gammas
# Fields of a crop's block (each RRC_TRIES long) and of the step block (each S long).
AREA, LOG_RATIO, TOP, LEFT = range(4)
LAM, CUT_Y, CUT_X, PASTE = range(4)
# Below this log-odds the logistic is exact in float64; above it, exp would overflow and the value is 0.
_MAX_LOG_ODDS = 709.0


@lru_cache(maxsize=64)
def draw_layout(max_crops: int, num_channels: int) -> tuple[int, dict[str, tuple[int, tuple[int, ...]]]]:
    """The uniforms of one image: (total, {block: (offset, shape)}), blocks in row order.

    n, mix, p: one each (N, the mixing op, CropMix or one RRC). crop: (M, 4, RRC_TRIES),
    per band the area, log-ratio, top and left of each try. order: (M,) sort keys of the
    mixing order. step: (4, S), per step lam, cut-box centre y, x and the paste coin. perm:
    (S, C) sort keys of the channel permutations. beta: (S, 2, GAMMA_UNIFORMS), per step
    two gammas. Steps S = max(M - 1, 1), all drawn even where an image has fewer.
    """
    M, C = max_crops, num_channels
    S = max(M - 1, 1)
    shapes = {
        "n": (1,),
        "mix": (1,),
        "p": (1,),
        "crop": (M, 4, RRC_TRIES),
        "order": (M,),
        "step": (4, S),
        "perm": (S, C),
        "beta": (S, 2, GAMMA_UNIFORMS),
    }
    blocks, offset = {}, 0
    for name, shape in shapes.items():
        blocks[name] = (offset, shape)
        offset += math.prod(shape)
    return offset, blocks


def logistic(log_odds: float) -> float:
    """1 / (1 + exp(log_odds)) without overflow: Beta(a, a) = X / (X + Y) from log X - log Y."""
    return 0.0 if log_odds >= _MAX_LOG_ODDS else 1.0 / (1.0 + math.exp(log_odds))


def logistic_array(log_odds: np.ndarray) -> np.ndarray:
    """`logistic` elementwise (NaN stays NaN)."""
    return np.where(log_odds >= _MAX_LOG_ODDS, 0.0, 1.0 / (1.0 + np.exp(np.minimum(log_odds, _MAX_LOG_ODDS))))


# ---------------------------------------------------------------- one image, plain Python


def _rrc_box(H: int, W: int, lo: float, hi: float, ratio: tuple[float, float], u: list[float]) -> Crop:
    """One RandomResizedCrop box with scale in [lo, hi], exactly as torchvision draws it; u: one crop block."""
    T = RRC_TRIES
    log_r0, log_r1 = math.log(ratio[0]), math.log(ratio[1])
    for t in range(T):
        area = H * W * (lo + (hi - lo) * u[AREA * T + t])
        aspect = math.exp(log_r0 + (log_r1 - log_r0) * u[LOG_RATIO * T + t])
        w = round(math.sqrt(area * aspect))
        h = round(math.sqrt(area / aspect))
        if 0 < w <= W and 0 < h <= H:
            top = math.floor(u[TOP * T + t] * (H - h + 1))
            left = math.floor(u[LEFT * T + t] * (W - w + 1))
            return Crop(top, left, h, w)
    in_ratio = W / H  # torchvision's fallback: a centre crop clamped to the ratio range
    fw = round(H * ratio[1]) if in_ratio > ratio[1] else W
    fh = round(W / ratio[0]) if in_ratio < ratio[0] else H
    fw, fh = min(max(fw, 1), W), min(max(fh, 1), H)
    return Crop((H - fh) // 2, (W - fw) // 2, fh, fw)


def _log_gamma(a: float, u: list[float]) -> float:
    """log Gamma(a) from GAMMA_UNIFORMS uniforms (see `_log_gamma_array`); NaN when every candidate is rejected."""
    K = GAMMA_CANDIDATES
    boosted = a + 1.0 if a < 1.0 else a
    d = boosted - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    for k in range(K):
        normal = math.sqrt(-2.0 * math.log1p(-u[k])) * math.cos(2.0 * math.pi * u[K + k])
        v = (1.0 + c * normal) ** 3
        log_v = math.log(max(v, 1e-300))
        if v > 0 and math.log1p(-u[2 * K + k]) < 0.5 * normal**2 + d - d * v + d * log_v:
            log_gamma = log_v + math.log(d)
            return log_gamma + math.log1p(-u[3 * K]) / a if a < 1.0 else log_gamma
    return math.nan


def _beta(a: float, u: list[float], generator: torch.Generator | None) -> float:
    """Beta(a, a) from BETA_UNIFORMS uniforms; a miss (probability < 1e-7) draws again."""
    while True:
        x, y = _log_gamma(a, u[:GAMMA_UNIFORMS]), _log_gamma(a, u[GAMMA_UNIFORMS:])
        if not (math.isnan(x) or math.isnan(y)):
            return logistic(y - x)
        u = torch.rand(BETA_UNIFORMS, dtype=torch.float64, generator=generator).tolist()


def _steps_one(
    config: CropMixConfig, n: int, u: list[float], blocks: dict, colour: int, C: int, g: torch.Generator | None
) -> tuple[MixStep, ...]:
    """The N - 1 mixing steps of one image from its row u."""
    op = MIX_OPS[config.mix[int(u[blocks["mix"][0]] * len(config.mix))]]
    step0, (_, S) = blocks["step"]
    perm0, beta0 = blocks["perm"][0], blocks["beta"][0]
    alpha = config.alpha / n
    permute = config.channel_permute and colour > 1
    steps = []
    for k in range(S):  # unused steps too, so that a Beta redraw consumes the RNG as sample_batch does
        lam = u[step0 + LAM * S + k]
        if op.beta:
            lam = _beta(alpha, u[beta0 + k * BETA_UNIFORMS : beta0 + (k + 1) * BETA_UNIFORMS], g)
        if k >= n - 1:
            continue
        box = None if op.box is None else op.box(*config.size, lam, u[step0 + CUT_Y * S + k], u[step0 + CUT_X * S + k])
        pasted_new = u[step0 + PASTE * S + k] < 0.5 if op.pastes else None
        perm = None
        if permute:
            keys = u[perm0 + k * C : perm0 + k * C + colour]
            perm = tuple(sorted(range(colour), key=keys.__getitem__)) + tuple(range(colour, C))
        permuted_new = None if perm is None else op.permuted_new(lam, pasted_new)
        steps.append(MixStep(op.name, lam, box, pasted_new, permuted_new, perm))
    return tuple(steps)


def sample_one(
    config: CropMixConfig,
    height: int,
    width: int,
    colour_channels: int,
    num_channels: int,
    generator: torch.Generator | None = None,
) -> CropMixParams:
    """Draw the CropMix parameters of one image of size (height, width) with num_channels channels.

    colour_channels of them are permuted (the rest, an alpha channel, stays in place).
    """
    total, blocks = draw_layout(max(config.num_crops), num_channels)
    u = torch.rand(total, dtype=torch.float64, generator=generator).tolist()
    n = config.num_crops[int(u[0] * len(config.num_crops))] if u[2] < config.p else 1
    s_min, s_max = config.scale
    band_width = (s_max - s_min) / n
    crop0, crop_block = blocks["crop"][0], 4 * RRC_TRIES
    crops = []
    for j in range(n):
        lo = min(s_min + j * band_width, s_max)
        hi = min(lo + band_width, s_max)
        block = u[crop0 + j * crop_block : crop0 + (j + 1) * crop_block]
        crops.append(_rrc_box(height, width, lo, hi, config.ratio, block))
    order0 = blocks["order"][0]
    order = tuple(sorted(range(n), key=lambda j: u[order0 + j]))
    steps = _steps_one(config, n, u, blocks, colour_channels, num_channels, generator)
    return CropMixParams((height, width), config.size, tuple(crops), order, steps)


# ---------------------------------------------------------------- a batch, numpy


def _first_index(mask: np.ndarray) -> np.ndarray:
    """Flat indices of the first True along the last axis of mask (the first position where none is)."""
    last = mask.shape[-1]
    return np.arange(mask.size // last) * last + np.argmax(mask, axis=-1).ravel()


def _take(values: np.ndarray, flat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return np.ascontiguousarray(values).reshape(-1)[flat].reshape(shape)


def _log_gamma_array(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """log Gamma(a) elementwise from uniforms u of shape (*a.shape, GAMMA_UNIFORMS).

    Marsaglia and Tsang's method with Box-Muller normals: the first of GAMMA_CANDIDATES
    accepted candidates is taken. Shapes below 1 use Gamma(a) = Gamma(a + 1) * U**(1/a), in
    log space so tiny shapes (alpha/N = 0.1) cannot underflow. NaN where every candidate was
    rejected (probability < 1e-7); the caller redraws those.
    """
    K = GAMMA_CANDIDATES
    boosted = np.where(a < 1.0, a + 1.0, a)
    d = (boosted - 1.0 / 3.0)[..., None]
    c = 1.0 / np.sqrt(9.0 * d)
    normal = np.sqrt(-2.0 * np.log1p(-u[..., :K])) * np.cos(2.0 * math.pi * u[..., K : 2 * K])
    v = (1.0 + c * normal) ** 3
    log_v = np.log(np.maximum(v, 1e-300))
    accept = (v > 0) & (np.log1p(-u[..., 2 * K : 3 * K]) < 0.5 * normal**2 + d - d * v + d * log_v)
    log_gamma = _take(log_v, _first_index(accept), accept.shape[:-1]) + np.log(d[..., 0])
    log_gamma = np.where(accept.any(axis=-1), log_gamma, np.nan)
    return np.where(a < 1.0, log_gamma + np.log1p(-u[..., 3 * K]) / a, log_gamma)


def _beta_array(a: np.ndarray, u: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
    """Beta(a, a) elementwise from uniforms u of shape (*a.shape, 2, GAMMA_UNIFORMS); misses draw again."""

    def beta(a: np.ndarray, u: np.ndarray) -> np.ndarray:
        log_gamma = _log_gamma_array(a[..., None], u)
        return logistic_array(log_gamma[..., 1] - log_gamma[..., 0])

    with np.errstate(invalid="ignore"):  # NaN marks a miss
        lam = beta(a, u)
        missing = np.isnan(lam)
        while missing.any():
            extra = torch.rand((int(missing.sum()), 2, GAMMA_UNIFORMS), dtype=torch.float64, generator=generator)
            lam[missing] = beta(a[missing], extra.numpy())
            missing = np.isnan(lam)
    return lam


def _rrc_boxes(
    heights: np.ndarray, widths: np.ndarray, lo: np.ndarray, hi: np.ndarray, ratio: tuple[float, float], u: np.ndarray
) -> np.ndarray:
    """`_rrc_box` for every crop: heights, widths (B,); lo, hi (B, M); u (B, M, 4, RRC_TRIES) -> (B, M, 4) int64."""
    H = heights[:, None].astype(np.float64)
    W = widths[:, None].astype(np.float64)
    area = (H * W)[..., None] * (lo[..., None] + (hi - lo)[..., None] * u[:, :, AREA])
    aspect = np.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[:, :, LOG_RATIO])
    w = np.rint(np.sqrt(area * aspect))
    h = np.rint(np.sqrt(area / aspect))
    valid = (w > 0) & (w <= W[..., None]) & (h > 0) & (h <= H[..., None])
    first, shape = _first_index(valid), valid.shape[:-1]
    h, w = _take(h, first, shape), _take(w, first, shape)
    box = np.empty((*shape, 4))
    box[..., 0] = np.floor(_take(u[:, :, TOP], first, shape) * (H - h + 1))
    box[..., 1] = np.floor(_take(u[:, :, LEFT], first, shape) * (W - w + 1))
    box[..., 2], box[..., 3] = h, w
    found = valid.any(axis=-1)
    if not found.all():
        in_ratio = W / H
        fw = np.where(in_ratio > ratio[1], np.rint(H * ratio[1]), W)
        fh = np.where(in_ratio < ratio[0], np.rint(W / ratio[0]), H)
        fw, fh = np.clip(fw, 1, W), np.clip(fh, 1, H)
        fallback = np.stack(np.broadcast_arrays((H - fh) // 2, (W - fw) // 2, fh, fw), axis=-1)
        box = np.where(found[..., None], box, fallback)
    return box.astype(np.int64)


def _block(u: np.ndarray, blocks: dict, name: str) -> np.ndarray:
    offset, shape = blocks[name]
    return u[:, offset : offset + math.prod(shape)].reshape(len(u), *shape)


def _steps_batch(
    config: CropMixConfig, n: np.ndarray, u: np.ndarray, blocks: dict, colour: int, g: torch.Generator | None
) -> dict[str, np.ndarray | None]:
    """The mixing steps of every image, as `_steps_one` draws them: the step fields of `BatchParams`."""
    ops = [MIX_OPS[m] for m in config.mix]
    u_lam, u_y, u_x, u_paste = _block(u, blocks, "step").transpose(1, 0, 2)
    S = u_lam.shape[1]
    chosen = np.repeat((_block(u, blocks, "mix") * len(ops)).astype(np.int64), S, axis=1)  # (B, S) index into ops
    op_ids = np.asarray([op_index(op.name) for op in ops], dtype=np.int8)[chosen]
    beta = np.asarray([op.beta for op in ops])[chosen]
    lam = u_lam.copy()
    if beta.any():
        alpha = np.repeat((config.alpha / n)[:, None], S, axis=1)
        lam[beta] = _beta_array(alpha[beta], _block(u, blocks, "beta")[beta], g)
    box = np.zeros((len(u), S, 4), dtype=np.int64)
    pasted_new = u_paste < 0.5
    permuted_new = np.zeros((len(u), S), dtype=bool)
    for i, op in enumerate(ops):
        mine = chosen == i
        if op.boxes is not None and mine.any():
            box = np.where(mine[..., None], op.boxes(*config.size, lam, u_y, u_x), box)
        permuted_new = np.where(mine, op.permuted_new(lam, pasted_new), permuted_new)
    perm = None
    if config.channel_permute and colour > 1:
        keys = _block(u, blocks, "perm").copy()
        keys[..., colour:] = 2.0  # alpha sorts last and stays in place
        perm = np.argsort(keys, axis=-1, kind="stable")
    return dict(op=op_ids, lam=lam, box=box, pasted_new=pasted_new, permuted_new=permuted_new, channel_perm=perm)


def sample_batch(
    config: CropMixConfig,
    heights: Sequence[int] | np.ndarray,
    widths: Sequence[int] | np.ndarray,
    colour_channels: int,
    num_channels: int,
    generator: torch.Generator | None = None,
) -> BatchParams:
    """Draw the CropMix parameters of a batch of images: image i gets what `sample_one` would draw next.

    heights, widths: each image's size in pixels. colour_channels of the num_channels are
    permuted (the rest, an alpha channel, stays in place).
    """
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    M = max(config.num_crops)
    total, blocks = draw_layout(M, num_channels)
    u = torch.rand((heights.shape[0], total), dtype=torch.float64, generator=generator).numpy()

    choices = np.asarray(config.num_crops)
    n = choices[(_block(u, blocks, "n")[:, 0] * len(choices)).astype(np.int64)]
    n = np.where(_block(u, blocks, "p")[:, 0] < config.p, n, 1)  # without CropMix: one RRC over the whole range
    s_min, s_max = config.scale
    band = np.arange(M)
    band_width = (s_max - s_min) / n[:, None]
    lo = np.minimum(s_min + band * band_width, s_max)
    hi = np.minimum(lo + band_width, s_max)
    crops = _rrc_boxes(heights, widths, lo, hi, config.ratio, _block(u, blocks, "crop"))
    unused = band >= n[:, None]
    crops[unused] = 0
    order = np.argsort(np.where(unused, 2.0, _block(u, blocks, "order")), axis=1, kind="stable")
    steps = _steps_batch(config, n, u, blocks, colour_channels, generator)
    return BatchParams(n=n, crops=crops, order=order, **steps)


# ---------------------------------------------------------------- seeding in DataLoader workers

_WARNED: set[int] = set()


def warn_if_generator_in_worker(owner: object, generator: torch.Generator | None) -> None:
    """Warn once per transform when a fixed generator runs inside DataLoader workers.

    Each worker gets a copy of the generator in the same state, so every worker repeats the
    same draws; torch's global RNG, which DataLoader seeds per worker, does not.
    """
    if generator is None or torch.utils.data.get_worker_info() is None or id(owner) in _WARNED:
        return
    _WARNED.add(id(owner))
    warnings.warn(
        f"{type(owner).__name__} was given a generator and runs in a DataLoader worker: every worker holds a "
        "copy of it in the same state and draws the same parameters. Pass generator=None there (DataLoader "
        "seeds torch's RNG per worker) or seed a generator per worker in worker_init_fn.",
        RuntimeWarning,
        stacklevel=3,
    )
