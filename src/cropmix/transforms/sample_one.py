"""CropMix parameters of one image in plain Python: `sample_batch` for B = 1, without numpy's overhead.

A DataLoader worker draws parameters for one small image at a time; there numpy's
per-call cost (tens of microseconds for the ~30 array ops of `sample_batch`) is
more than resizing a 32x32 crop. This module reads the same uniforms in the same
layout and applies the same formulas with `math`, so for the same RNG state it
returns the parameters `sample_batch(...).image(0, ...)` does (tests/test_fast_paths.py
checks it draw for draw). Change both together.
"""

from __future__ import annotations

import math

import torch

from .params import BETA_UNIFORMS, GAMMA_CANDIDATES, RRC_TRIES, Crop, CropMixConfig, CropMixParams, MixStep


def _rrc_box(H: int, W: int, lo: float, hi: float, ratio: tuple[float, float], u: list[float]) -> Crop:
    """One RandomResizedCrop box with scale in [lo, hi]; u = 4 * RRC_TRIES uniforms (area, log-ratio, top, left)."""
    log_r0, log_r1 = math.log(ratio[0]), math.log(ratio[1])
    for t in range(RRC_TRIES):
        area = H * W * (lo + (hi - lo) * u[t])
        aspect = math.exp(log_r0 + (log_r1 - log_r0) * u[RRC_TRIES + t])
        w = round(math.sqrt(area * aspect))
        h = round(math.sqrt(area / aspect))
        if 0 < w <= W and 0 < h <= H:
            top = math.floor(u[2 * RRC_TRIES + t] * (H - h + 1))
            left = math.floor(u[3 * RRC_TRIES + t] * (W - w + 1))
            return Crop(top, left, h, w)
    in_ratio = W / H  # torchvision's fallback: a centre crop clamped to the ratio range
    fw = round(H * ratio[1]) if in_ratio > ratio[1] else W
    fh = round(W / ratio[0]) if in_ratio < ratio[0] else H
    fw, fh = min(max(fw, 1), W), min(max(fh, 1), H)
    return Crop((H - fh) // 2, (W - fw) // 2, fh, fw)


def _log_gamma(a: float, u: list[float]) -> float:
    """log Gamma(a) from 3 * GAMMA_CANDIDATES + 1 uniforms, as `params._beta_from_uniforms`; NaN on a miss."""
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
    half = BETA_UNIFORMS // 2
    while True:
        x, y = _log_gamma(a, u[:half]), _log_gamma(a, u[half:])
        if not (math.isnan(x) or math.isnan(y)):
            return 1.0 / (1.0 + math.exp(y - x))
        u = torch.rand(BETA_UNIFORMS, dtype=torch.float64, generator=generator).tolist()


def sample_one(
    config: CropMixConfig,
    height: int,
    width: int,
    colour_channels: int,
    num_channels: int,
    generator: torch.Generator | None = None,
) -> CropMixParams:
    """Draw the CropMix parameters of one image of size (height, width) with num_channels channels."""
    M = max(config.num_crops)
    S = max(M - 1, 1)
    C = num_channels
    out_h, out_w = config.size
    total = 3 + M * 4 * RRC_TRIES + M + S * 4 + S * C + S * BETA_UNIFORMS
    u = torch.rand(total, dtype=torch.float64, generator=generator).tolist()
    u_n, u_mix, u_p = u[0], u[1], u[2]
    start = 3
    u_crop, start = u[start : start + M * 4 * RRC_TRIES], start + M * 4 * RRC_TRIES
    u_order, start = u[start : start + M], start + M
    u_step, start = u[start : start + S * 4], start + S * 4
    u_perm, start = u[start : start + S * C], start + S * C
    u_beta = u[start:]

    n = config.num_crops[int(u_n * len(config.num_crops))] if u_p < config.p else 1
    s_min, s_max = config.scale
    band_width = (s_max - s_min) / n
    crops = []
    for j in range(n):
        lo = min(s_min + j * band_width, s_max)
        hi = min(lo + band_width, s_max)
        crops.append(_rrc_box(height, width, lo, hi, config.ratio, u_crop[j * 4 * RRC_TRIES : (j + 1) * 4 * RRC_TRIES]))
    order = tuple(sorted(range(n), key=u_order.__getitem__))

    is_cutmix = config.mix[int(u_mix * len(config.mix))] == "cutmix"
    alpha = config.alpha / n
    permute = config.channel_permute and colour_channels > 1
    steps = []
    for k in range(S):  # unused steps too, so that a Beta redraw consumes the RNG as sample_batch does
        u_lam, u_cy, u_cx, u_paste = u_step[k], u_step[S + k], u_step[2 * S + k], u_step[3 * S + k]
        lam = u_lam if is_cutmix else _beta(alpha, u_beta[k * BETA_UNIFORMS : (k + 1) * BETA_UNIFORMS], generator)
        if k >= n - 1:
            continue
        box = None
        if is_cutmix:
            side = math.sqrt(1.0 - lam)
            ch, cw = round(out_h * side), round(out_w * side)
            y1, x1 = math.floor(u_cy * out_h) - ch // 2, math.floor(u_cx * out_w) - cw // 2
            y2, x2 = min(max(y1 + ch, 0), out_h), min(max(x1 + cw, 0), out_w)
            y1, x1 = min(max(y1, 0), out_h), min(max(x1, 0), out_w)
            box = (y1, x1, y2 - y1, x2 - x1)
        paste_new = u_paste < 0.5
        perm = None
        if permute:
            keys = u_perm[k * C : k * C + colour_channels]
            perm = tuple(sorted(range(colour_channels), key=keys.__getitem__)) + tuple(range(colour_channels, C))
        steps.append(
            MixStep(
                op="cutmix" if is_cutmix else "mixup",
                lam=lam,
                box=box,
                pasted=("new" if paste_new else "mix") if is_cutmix else None,
                permuted=None if perm is None else ("new" if (paste_new if is_cutmix else lam > 0.5) else "mix"),
                channel_perm=perm,
            )
        )
    return CropMixParams(
        image_size=(height, width), output_size=config.size, crops=tuple(crops), order=order, steps=tuple(steps)
    )
