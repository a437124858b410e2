"""position_embedding: add a learned vector per position, ``y = x + table[:T]``.

Attention by itself does not know where a token is (permuting the sequence permutes its output);
adding one learned row per position tells it.

Shapes first. x: (N, T, D), a batch of N sequences of T vectors; table: (L, D), one row per
position, L >= T (the longest sequence the model will see); y has x's shape:

  Forward   y[n, t, d] = x[n, t, d] + table[t, d]            t < T <= L

Chain rule. dy[n, t, d]/dx[n, t, d] = 1, so x_bar = y_bar. Row t of the table is added to every
sequence n at position t, so its gradient sums those N uses; rows t >= T are not used:

  Backward  y_bar = dL/dy: (N, T, D)
            x_bar     = y_bar                                 (N, T, D)
            table_bar = pad(y_bar.sum(0), rows T..L-1 zero)   (L, D)

Forward mode. y is linear in (x, table): moving x along x_dot and the table along table_dot moves
y by the sum of the two, and rows t >= T of table_dot move nothing:

  Tangent   x_dot: (N, T, D), table_dot: (L, D)
            y_dot = x_dot + table_dot[:T]                     (N, T, D)

Residuals: a (L, 0) zero-size token for the table's row count and dtype, and x's dtype (0 bytes).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._layer import Like, make_layer
from ._validate import describe, require_float, require_rank

__all__ = ["PositionParams", "position_embedding"]

NAME = "position_embedding"


class PositionParams(NamedTuple):
    """``table``: (max_length, features), one row per position."""

    table: jax.Array


def position_embedding_init(key, max_length: int, features: int, dtype=jnp.float32) -> PositionParams:
    """``table ~ N(0, 0.02**2)``: small, so positions nudge the token embeddings (GPT-2's scale)."""
    return PositionParams(0.02 * jax.random.normal(key, (max_length, features), dtype))


def position_embedding_infer(key, x, max_length: int):
    """For a model: ``(params, None)`` with ``features = x.shape[-1]``; ``max_length`` is stated."""
    return position_embedding_init(key, max_length, x.shape[-1], x.dtype), None


def _check(params, x) -> None:
    require_float(NAME, "x", x)
    require_float(NAME, "params.table", params.table)
    require_rank(NAME, "x", x, 3, hint="Expected (batch, sequence, features).")
    require_rank(NAME, "params.table", params.table, 2, hint="Expected (max_length, features).")
    (length, features), (_, t, d) = params.table.shape, x.shape
    if features != d or t > length:
        raise ValueError(f"{NAME}: x (N, T, D) needs a table (L, D) with L >= T; got x {describe(x)}, "
                         f"table {describe(params.table)}.")


def position_embedding_auto(params: PositionParams, x):
    """``y = x + table[:T]``; x: (N, T, D), table: (L, D)."""
    _check(params, x)
    return x + params.table[: x.shape[1]]


def position_embedding_fwd(params: PositionParams, x):
    rows_token = jnp.zeros((params.table.shape[0], 0), params.table.dtype)
    return position_embedding_auto(params, x), (rows_token, Like.of(x))


def position_embedding_bwd(res, y_bar):
    rows_token, x_like = res
    used = y_bar.sum(0)                                           # (T, D): every sequence's use of row t
    table_bar = jnp.pad(used, ((0, rows_token.shape[0] - used.shape[0]), (0, 0)))
    return PositionParams(table_bar.astype(rows_token.dtype)), y_bar.astype(x_like.dtype)


def position_embedding_jvp(primals, tangents):
    (params, x), (params_dot, x_dot) = primals, tangents
    y = position_embedding_auto(params, x)
    return y, (x_dot + params_dot.table[: x.shape[1]]).astype(y.dtype)


position_embedding = make_layer(position_embedding_auto, position_embedding_fwd, position_embedding_bwd, name=NAME,
                                init=position_embedding_init, infer=position_embedding_infer,
                                jvp=position_embedding_jvp)
