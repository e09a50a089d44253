"""Mixing operations as a registry: one module per op, each a `MixOp`, found by name in `MIX_OPS`.

An op declares its name, the per-step uniforms of `sampling.draw_layout` it reads (the layout itself
is fixed: every image draws every field), its cut box, which view its channel permutation goes to,
its per-image step and its renderer in the batched kernels. `make_config` accepts the registered
names for `mix`; the samplers and `functional.mixing.mix_step` read the entry, never the name.

An op is one module defining a MixOp plus one `register(...)` line below, and, if neither batched
renderer fits, a renderer in functional/mixing.py (BATCHED_RENDERERS). The parameters tell ops apart
by one flag (`cutmix`), so the registry holds at most two: a third needs an op index there first.
"""

from __future__ import annotations

from ..params import MixStep
from .cutmix import CUTMIX, cutmix_box, cutmix_boxes
from .mixup import MIXUP
from .op import STEP_DRAWS, MixOp

__all__ = [
    "MIX_OPS",
    "STEP_DRAWS",
    "MixOp",
    "cutmix_box",
    "cutmix_boxes",
    "mix_op",
    "op_by_cut",
    "register",
    "step_op",
]

MIX_OPS: dict[str, MixOp] = {}


def register(op: MixOp) -> MixOp:
    """Add `op` to MIX_OPS under its name (a new name, and a new `cut` flag while the parameters spell ops by it)."""
    if op.name in MIX_OPS:
        raise ValueError(f"a mixing op named {op.name!r} is already registered")
    if any(other.cut == op.cut for other in MIX_OPS.values()):
        raise ValueError(f"a mixing op with cut={op.cut} is already registered; the parameters tell ops apart by it")
    MIX_OPS[op.name] = op
    return op


def mix_op(name: object) -> MixOp:
    """The registered op `name`; ValueError naming mix and the accepted names otherwise."""
    if not isinstance(name, str) or name not in MIX_OPS:
        raise ValueError(f"mix must be one of {tuple(MIX_OPS)} or a sequence of them, got {name!r}")
    return MIX_OPS[name]


def op_by_cut(cut: bool) -> MixOp:
    """The op whose steps carry this `cutmix` flag in the parameters."""
    return next(op for op in MIX_OPS.values() if op.cut == cut)


def step_op(step: MixStep) -> MixOp:
    """The op of a drawn step."""
    return op_by_cut(step.cutmix)


register(MIXUP)
register(CUTMIX)
