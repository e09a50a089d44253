"""CropMix's parameter types: `BatchParams` (the canonical form, one row per image) and its one-image view.

Both spell each fact with the same word: a mixing step is by the mixing `op` (a registered
`mixops.MixOp`: its name in a `MixStep`, its index `mixops.op_index` in `BatchParams`) with
weight `lam`, a cut `box`, `pasted_new` (the new view's box is pasted onto the running mix, else
the mix's box onto the new view), `permuted_new` (the new view gets `channel_perm`, else the
running mix does) and `channel_perm`. `CropMixParams`/`MixStep` hold one image's row as
Python numbers, with None where a field does not apply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Crop:
    """One crop box in source pixels."""

    top: int
    left: int
    height: int
    width: int


@dataclass(frozen=True)
class MixStep:
    """One mixing step: the running mix (a) with the next view in `order` (b).

    op: the name of the step's mixing op in `mixops.MIX_OPS` ("mixup", "cutmix", ...).
    lam: Mixup: the weight of a (the output is lam*a + (1-lam)*b), drawn from
        Beta(alpha/N, alpha/N). CutMix: the drawn lam ~ U(0, 1); the cut box
        has sides sqrt(1-lam) times the output's before clipping.
    box: ops with a cut box (CutMix) only: (top, left, height, width) of the
        cut box in output pixels.
    pasted_new: ops that draw it (CutMix) only: True if b's box is pasted onto a,
        False if a's box is pasted onto b.
    permuted_new: which view gets `channel_perm` before mixing: True for b,
        False for a; None when no permutation is applied.
    channel_perm: the channel order given to that view (`view[channel_perm]`);
        an alpha channel always stays in place.
    """

    op: str
    lam: float
    box: tuple[int, int, int, int] | None
    pasted_new: bool | None
    permuted_new: bool | None
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
    """Parameters of B images as numpy arrays (M = max crops, S = max(M - 1, 1) steps).

    Rows beyond an image's own N (crops, order) or N - 1 (steps) are unused; `box` is zero
    where a step's op has no box. The fields mean what `MixStep`'s of the same name mean; `op`
    holds each step's op as its index in the registration order (`mixops.op_index`).
    """

    n: np.ndarray  # (B,) crops per image
    crops: np.ndarray  # (B, M, 4) top, left, height, width in source pixels
    order: np.ndarray  # (B, M) mixing order
    op: np.ndarray  # (B, S) int8 the step's op, `mixops.op_index` (mixup 0, cutmix 1)
    lam: np.ndarray  # (B, S)
    box: np.ndarray  # (B, S, 4) cut box top, left, height, width
    pasted_new: np.ndarray  # (B, S) ops that paste: True if the new view is pasted
    permuted_new: np.ndarray  # (B, S) True if the new view gets the permutation
    channel_perm: np.ndarray | None  # (B, S, C) channel permutations, None if none apply

    def __len__(self) -> int:
        return int(self.n.shape[0])

    def subset(self, indices: Sequence[int] | np.ndarray) -> BatchParams:
        """The parameters of the images at `indices`, as a batch of their own."""
        rows = np.asarray(indices, dtype=np.int64)
        return BatchParams(**{k: None if v is None else v[rows] for k, v in vars(self).items()})

    def crop(self, j: int) -> BatchParams:
        """Crop j of every image alone: a batch of one-crop images (RandomResizedCrops, nothing to mix)."""
        if not 0 <= j < self.crops.shape[1]:
            raise ValueError(f"j must be a crop slot in [0, {self.crops.shape[1]}), got {j}")
        if (self.n <= j).any():
            unused = np.flatnonzero(self.n <= j)
            raise ValueError(
                f"crop slot j={j} is unused for {len(unused)} images (they drew fewer crops), "
                f"the first: {unused[:5].tolist()}"
            )
        B = len(self)
        return BatchParams(
            n=np.ones(B, dtype=np.int64),
            crops=self.crops[:, j : j + 1].copy(),
            order=np.zeros((B, 1), dtype=np.int64),
            op=np.zeros((B, 1), dtype=np.int8),
            lam=np.ones((B, 1)),
            box=np.zeros((B, 1, 4), dtype=np.int64),
            pasted_new=np.zeros((B, 1), dtype=bool),
            permuted_new=np.zeros((B, 1), dtype=bool),
            channel_perm=None,
        )

    def image(self, i: int, image_size: tuple[int, int], output_size: tuple[int, int]) -> CropMixParams:
        """The parameters of image i as a `CropMixParams`."""
        from .mixops import op_at  # mixops reads these types, so it loads after them

        n = int(self.n[i])
        crops = tuple(Crop(*(int(v) for v in self.crops[i, j])) for j in range(n))
        steps = []
        for k in range(n - 1):
            op = op_at(int(self.op[i, k]))
            perm = None if self.channel_perm is None else tuple(int(c) for c in self.channel_perm[i, k])
            steps.append(
                MixStep(
                    op=op.name,
                    lam=float(self.lam[i, k]),
                    box=tuple(int(v) for v in self.box[i, k]) if op.box is not None else None,
                    pasted_new=bool(self.pasted_new[i, k]) if op.pastes else None,
                    permuted_new=None if perm is None else bool(self.permuted_new[i, k]),
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
