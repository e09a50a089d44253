"""`MixOp`: what one mixing operation declares, so that the samplers and kernels read it instead of its name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..params import MixStep

# The per-step uniforms of `sampling.draw_layout` an op may read: "lam" (lam is the step's uniform) or
# "beta" (lam ~ Beta(alpha/N, alpha/N) from the step's gamma uniforms), "cut_y" and "cut_x" (a box
# centre), "paste" (which view is pasted). Every image draws all of them; an op only says which it uses.
STEP_DRAWS = ("lam", "beta", "cut_y", "cut_x", "paste")


@dataclass(frozen=True)
class MixOp:
    """One mixing operation of docs/method.md: its name, its draws and its kernels.

    name: how `mix` and `MixStep.op` spell it. draws: the STEP_DRAWS it reads, exactly one of "lam"
    and "beta". box / boxes: the cut box (top, left, height, width) from (out_h, out_w, lam, u_y,
    u_x), for one step in plain Python and elementwise in numpy (None: no box). permuted_new(lam,
    pasted_new): whether the new view gets the channel permutation, for numbers and for arrays
    alike. step(running, new, step): one step on (C, h, w) tensors. batched: the name of its
    renderer in the batched kernels (`functional.mixing.BATCHED_RENDERERS`), which also says its
    maths (`weighted`, `pastes_box`) to the per-image fast paths.
    """

    name: str
    draws: tuple[str, ...]
    permuted_new: Callable[[Any, Any], Any]
    step: Callable[[torch.Tensor, torch.Tensor, MixStep], torch.Tensor]
    batched: str
    box: Callable[[int, int, float, float, float], tuple[int, int, int, int]] | None = None
    boxes: Callable[[int, int, np.ndarray, np.ndarray, np.ndarray], np.ndarray] | None = None

    def __post_init__(self) -> None:
        unknown = [d for d in self.draws if d not in STEP_DRAWS]
        if unknown or ("lam" in self.draws) == ("beta" in self.draws):
            raise ValueError(
                f"draws of {self.name!r} must be names from {STEP_DRAWS} with exactly one of 'lam' and 'beta', "
                f"got {self.draws!r}"
            )
        if (self.box is None) != (self.boxes is None) or (self.box is not None) != ("cut_y" in self.draws):
            raise ValueError(f"{self.name!r} must give box and boxes exactly when it draws cut_y and cut_x")
        if self.pastes_box and not (self.pastes and self.box is not None):  # the renderer reads both
            raise ValueError(f"{self.name!r} pastes a box (batched {self.batched!r}): it must draw cut_y, cut_x, paste")

    @property
    def beta(self) -> bool:
        """Whether lam is drawn from Beta(alpha/N, alpha/N) (else it is the step's uniform)."""
        return "beta" in self.draws

    @property
    def pastes(self) -> bool:
        """Whether the op draws which view is pasted (`pasted_new`; None in a MixStep otherwise)."""
        return "paste" in self.draws

    @property
    def weighted(self) -> bool:
        """Whether a step is Mixup's lam * a + (1 - lam) * b of the channel-routed views (renderer "weighted"):
        a chain of such steps is one weighted sum of views (`functional.mixing.mixup_weights`)."""
        return self.batched == "weighted"

    @property
    def pastes_box(self) -> bool:
        """Whether a step pastes the pasted view's box, permuted, onto the other view (renderer "selected"):
        it copies pixels, so it works in any dtype and a PIL `paste` does it."""
        return self.batched == "selected"
