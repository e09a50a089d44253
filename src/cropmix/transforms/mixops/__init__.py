"""Mixing operations as a registry: one module per op, each a `MixOp`, found by name in `MIX_OPS`.

An op declares its name, the per-step uniforms of `sampling.draw_layout` it reads (the layout itself
is fixed: every image draws every field), its cut box, which view its channel permutation goes to,
its per-image step and its renderer in the batched kernels. `make_config` accepts the registered
names for `mix`; the samplers and kernels read the entry (and the properties its renderer implies,
`MixOp.weighted` and `MixOp.pastes_box`), never the name.

The parameters name each step's op: `MixStep.op` by its name, `BatchParams.op` by its index in the
registration order (`op_index`, `op_at`: mixup 0, cutmix 1). An op is one module defining a MixOp
plus one `register(...)` line below, and, if neither batched renderer fits, a renderer in
functional/mixing.py (BATCHED_RENDERERS).
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
    "op_at",
    "op_index",
    "register",
    "step_op",
]

# The registered ops in registration order: an op's index in BatchParams.op is its position here.
MIX_OPS: dict[str, MixOp] = {}


def register(op: MixOp) -> MixOp:
    """Add `op` to MIX_OPS under its (new) name, after the ops registered before it."""
    if op.name in MIX_OPS:
        raise ValueError(f"a mixing op named {op.name!r} is already registered")
    MIX_OPS[op.name] = op
    return op


def mix_op(name: object) -> MixOp:
    """The registered op `name`; ValueError naming mix and the accepted names otherwise."""
    if not isinstance(name, str) or name not in MIX_OPS:
        raise ValueError(f"mix must be one of {tuple(MIX_OPS)} or a sequence of them, got {name!r}")
    return MIX_OPS[name]


def op_index(name: str) -> int:
    """The index of the registered op `name` in `BatchParams.op`."""
    mix_op(name)
    return list(MIX_OPS).index(name)


def op_at(index: int) -> MixOp:
    """The op whose steps carry `index` in `BatchParams.op`."""
    ops = tuple(MIX_OPS.values())
    if not 0 <= index < len(ops):
        raise ValueError(f"op index must be in [0, {len(ops)}) (the registered ops {tuple(MIX_OPS)}), got {index}")
    return ops[index]


def step_op(step: MixStep) -> MixOp:
    """The op of a drawn step; ValueError naming the step's op and the registered ones if it is not registered."""
    op = MIX_OPS.get(step.op)
    if op is None:
        raise ValueError(f"a MixStep's op must be one of {tuple(MIX_OPS)}, got {step.op!r}")
    return op


register(MIXUP)
register(CUTMIX)
