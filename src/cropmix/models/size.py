"""The bound on model sizes named by a (possibly received) config, checked before anything is allocated."""

from __future__ import annotations

# The most parameters a model named by a config may have.
MAX_PARAMETERS = 2_000_000_000


def check_parameter_count(count: int, what: str) -> None:
    """Raise ValueError if `count` parameters exceed MAX_PARAMETERS; `what` names the model and its sizes."""
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{what} would have {count:,} parameters, more than the limit of {MAX_PARAMETERS:,} (MAX_PARAMETERS); "
            "check its sizes (dim, depth, widths, ...)"
        )


def block_stack_parameters(dim: int, depth: int, mlp_ratio: float = 4.0, tokens: int = 0) -> int:
    """Parameters of `depth` pre-norm transformer blocks of width `dim` (`cropmix.models.vit.Block`), plus a
    `tokens` x `dim` position embedding: a formula, so a huge request is refused without building it."""
    hidden = int(dim * mlp_ratio)
    per_block = 4 * dim + (3 * dim * dim + 3 * dim) + (dim * dim + dim) + (2 * dim * hidden + hidden + dim)
    return depth * per_block + tokens * dim
