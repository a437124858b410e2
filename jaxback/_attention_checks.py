"""attention's trace-time argument checks: each error names the argument, what was expected and what came."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._validate import describe, require_bool, require_float, require_rank

NAME = "attention"


def check(record, params, x, num_heads, causal, mask, block_size) -> None:
    """Raise if ``attention(params, x, num_heads=..., ...)``'s arguments do not fit; ``record``: AttentionParams."""
    if not isinstance(params, record):
        raise TypeError(f"{NAME}: params must be AttentionParams(w_q, w_k, w_v, w_o, b_o) (the cotangent "
                        f"mirrors its structure); got {type(params).__name__}.")
    require_float(NAME, "x", x)
    require_rank(NAME, "x", x, 3, hint="Expected (batch, sequence, width); use x[None] for one sequence.")
    if isinstance(num_heads, bool) or not isinstance(num_heads, int) or num_heads < 1:
        raise ValueError(f"{NAME}: num_heads must be a positive Python int; got num_heads={num_heads!r}.")
    require_bool(NAME, "causal", causal)
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"{NAME}: block_size must be None (automatic) or a positive Python int (rows per "
                         f"block); got block_size={block_size!r}.")
    n, t, width = x.shape
    if width % num_heads:
        divisors = ", ".join(str(h) for h in range(1, width + 1) if width % h == 0)
        raise ValueError(f"{NAME}: num_heads={num_heads} must divide the width D={width} (x.shape[-1]); got x "
                         f"{describe(x)}. Choose num_heads among {divisors}.")
    for field, expected in zip(params._fields, [(width, width)] * 4 + [(width,)]):
        value = getattr(params, field)
        require_float(NAME, f"params.{field}", value)
        if jnp.shape(value) != expected:
            raise ValueError(f"{NAME}: params.{field} must have shape {expected} to match the width D={width} "
                             f"of x {describe(x)}; got {field} {describe(value)}.")
    if mask is not None:
        check_mask(mask, (n, num_heads, t, t))


def check_mask(mask, full) -> None:
    if not isinstance(mask, (jax.Array, np.ndarray)) or jnp.result_type(mask) != jnp.bool_:
        got = describe(mask) if isinstance(mask, (jax.Array, np.ndarray)) else repr(mask)
        raise TypeError(f"{NAME}: mask must be a boolean array (True = may attend) or None; got {got}.")
    try:
        fits = np.broadcast_shapes(mask.shape, full) == full
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{NAME}: mask must broadcast to (N, num_heads, T, T) = {full}, e.g. (T, T); "
                         f"got mask {describe(mask)}.")
