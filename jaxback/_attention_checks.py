"""attention's trace-time argument checks: each error names the argument, what was expected and what came."""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._keep_mask import require_key, require_rate
from ._validate import describe, require_bool, require_float, require_rank

NAME = "attention"


class Settings(NamedTuple):
    """The hyperparameters, static under jit."""

    num_heads: int
    num_kv_heads: Optional[int]
    causal: bool
    block_size: Optional[int]
    dropout_rate: float

    @property
    def kv_heads(self) -> int:
        """Hkv."""
        return self.num_heads if self.num_kv_heads is None else self.num_kv_heads

    @property
    def group(self) -> int:
        """g: query heads per K/V head."""
        return self.num_heads // self.kv_heads


def _require_count(arg, value, what) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{NAME}: {arg} must be a positive Python int{what}; got {arg}={value!r}.")


def _divisors(n) -> str:
    return ", ".join(str(h) for h in range(1, n + 1) if n % h == 0)


def check(record, params, x, kv, key, settings, mask) -> None:
    """Raise if ``attention(params, x, kv, key, ...)``'s arguments do not fit; ``record``: AttentionParams,
    ``settings``: the hyperparameters (num_kv_heads None: as many as num_heads)."""
    if not isinstance(params, record):
        raise TypeError(f"{NAME}: params must be AttentionParams(w_q, w_k, w_v, w_o, b_o) (the cotangent "
                        f"mirrors its structure); got {type(params).__name__}.")
    require_float(NAME, "x", x)
    require_rank(NAME, "x", x, 3, hint="Expected (batch, sequence, width); use x[None] for one sequence.")
    n, t, width = x.shape
    s = t if kv is None else _check_kv(kv, n, width)
    heads = heads_of(settings.num_heads, settings.num_kv_heads, width, f"x {describe(x)} (x.shape[-1] = D)")
    if key is not None:
        require_key(NAME, "key", key)
    require_rate(NAME, "dropout_rate", settings.dropout_rate)
    require_bool(NAME, "causal", settings.causal)
    block_size = settings.block_size
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ValueError(f"{NAME}: block_size must be None (automatic) or a positive Python int (rows per "
                         f"block); got block_size={block_size!r}.")
    _check_params(params, x, *heads)
    if mask is not None:
        check_mask(mask, (n, heads[0], t, s))


def _check_kv(kv, n, width) -> int:
    """S, the length of kv: (N, S, D), N and D those of x."""
    require_float(NAME, "kv", kv)
    require_rank(NAME, "kv", kv, 3, hint="Expected (batch, sequence, width), as x; or None for self-attention.")
    if kv.shape[0] != n or kv.shape[2] != width:
        raise ValueError(f"{NAME}: kv must have shape (N, S, D) = ({n}, S, {width}), the batch and width of x; "
                         f"got kv {describe(kv)}.")
    return kv.shape[1]


def heads_of(num_heads, num_kv_heads, width, got):
    """(H, Hkv, d): H must divide the width D, Hkv (None: H) must divide H; ``got`` says where D is from."""
    _require_count("num_heads", num_heads, "")
    if width % num_heads:
        raise ValueError(f"{NAME}: num_heads={num_heads} must divide the width D={width}; got {got}. Choose "
                         f"num_heads among {_divisors(width)}.")
    if num_kv_heads is None:
        return num_heads, num_heads, width // num_heads
    _require_count("num_kv_heads", num_kv_heads, " (K/V heads) or None (as many as num_heads)")
    if num_heads % num_kv_heads:
        raise ValueError(f"{NAME}: num_kv_heads={num_kv_heads} must divide num_heads={num_heads} (each K/V head "
                         f"serves num_heads / num_kv_heads query heads). Choose num_kv_heads among "
                         f"{_divisors(num_heads)}.")
    return num_heads, num_kv_heads, width // num_heads


def _check_params(params, x, num_heads, num_kv_heads, d) -> None:
    width = x.shape[-1]
    kv_shape = (width, num_kv_heads * d)
    for field, expected in zip(params._fields, [(width, width), kv_shape, kv_shape, (width, width), (width,)]):
        value = getattr(params, field)
        require_float(NAME, f"params.{field}", value)
        if jnp.shape(value) != expected:
            heads = (f" and num_kv_heads={num_kv_heads} K/V heads of size d={d} (num_heads={num_heads})"
                     if field in ("w_k", "w_v") else "")
            hint = _kv_heads_hint(value, width, num_heads, d) if heads else ""
            raise ValueError(f"{NAME}: params.{field} must have shape {expected} to match the width D={width} of x "
                             f"{describe(x)}{heads}; got {field} {describe(value)}.{hint}")


def _kv_heads_hint(value, width, num_heads, d) -> str:
    """For a w_k or w_v made for another number of K/V heads: the num_kv_heads its shape implies."""
    columns = jnp.shape(value)[1] if jnp.ndim(value) == 2 and jnp.shape(value)[0] == width else 0
    heads = columns // d
    if columns % d or not heads or num_heads % heads:
        return ""
    return f" Its {columns} columns make {heads} K/V heads of size {d}: pass num_kv_heads={heads}."


def check_mask(mask, full) -> None:
    if not isinstance(mask, (jax.Array, np.ndarray)) or jnp.result_type(mask) != jnp.bool_:
        got = describe(mask) if isinstance(mask, (jax.Array, np.ndarray)) else repr(mask)
        raise TypeError(f"{NAME}: mask must be a boolean array (True = may attend) or None; got {got}.")
    try:
        fits = np.broadcast_shapes(mask.shape, full) == full
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{NAME}: mask must broadcast to (N, num_heads, T, S) = {full} (S = T without kv), e.g. "
                         f"(T, S); got mask {describe(mask)}.")
