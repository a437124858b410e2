"""embedding: look rows of a table up by integer id, ``y = table[ids]``.

Shapes first. The table has one row of ``D`` features per id; ``ids`` is an integer array of any
shape ``S`` (a scalar, a batch ``(N,)``, a batch of sequences ``(N, T)``...), and each id is replaced
by its row:

  Forward   table: (V, D), ids: S (integers)     y = table[ids]          y: (*S, D)
            y[s, d] = table[ids[s], d]          for every position s in S

Chain rule. Let ``y_bar = dL/dy`` (*S, D). The table reaches the loss only through ``y``, so
dL/dtable[v, d] = sum_s y_bar[s, d] * dy[s, d]/dtable[v, d]. The derivative is 1 where ``ids[s] == v``
and 0 elsewhere, so row ``v`` of the gradient is the sum of the ``y_bar`` rows of every position
that looked ``v`` up:

  dL/dtable[v, :] = sum over {s : ids[s] == v} of y_bar[s, :]

That is a scatter-add of the ``y_bar`` rows into a zero table. An id that appears k times gets the
sum of k rows (repeated ids ACCUMULATE; overwriting would keep only one of them); a row nobody
looked up gets 0. ``ids`` are integers: no gradient (``None``; JAX hands the caller a float0 zero).

  Backward  y_bar = dL/dy: (*S, D)
            table_bar = zeros(V, D).at[ids].add(y_bar)     (V, D)   (out-of-range ids dropped)
            ids_bar   = None

Forward mode. y is linear in the table (the ids only choose rows), so moving the table along a
tangent table_dot moves each looked-up row by the same row of table_dot: the tangent is gathered
exactly as y is. ``ids`` are integers: they have no tangent.

  Tangent   table_dot: (V, D)
            y_dot = table_dot[ids]                       (*S, D)   (out-of-range ids: 0)

Residuals: ``ids`` (S integers) and a (V, 0) zero-size array that carries the table's row count and
dtype in 0 bytes. The table itself is not needed: the rule never reads its values. Autodiff saves
the ids too (see the report in the tests); neither saves anything of size (*S, D).

NOTE (out-of-range ids): ``table[ids]`` in JAX *clamps* an out-of-range id in the forward (id V+3
reads row V-1), but its autodiff *drops* it (row V-1 gets no gradient): forward and gradient
disagree. We follow ``jnp.take(..., mode="fill")`` in both ``auto`` and the hand rule instead
(the convention of ``flax.linen.Embed``): ids in [0, V) pick their row, ids in [-V, 0) count from
the end as for every NumPy/JAX array (-1 is row V-1), and any other id reads a row of NaN and sends
no gradient anywhere (``.at[ids].add(..., mode="drop")``). NaN rather than a clamped row because a
bad id (a padding -100, a vocabulary off by one) should poison the loss visibly, not silently train
row 0 or row V-1. Ids are not checked for range: their values are unknown at trace time. Such an
id's tangent is 0, not NaN: the NaN is a constant fill, not a row of the table (autodiff's tangent
gathers with ``fill_value=0`` too).
NOTE (precision): rows are summed in at least float32 and cast to the table's dtype at the end, so
a bfloat16 row looked up thousands of times does not lose its gradient to rounding (autodiff sums
in bfloat16).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._layer import make_layer
from ._validate import describe, require_float, require_rank

__all__ = ["EmbeddingParams", "embedding"]

NAME = "embedding"


class EmbeddingParams(NamedTuple):
    """``table``: (num_embeddings, features), one row per id."""

    table: jax.Array


def embedding_init(key, num_embeddings: int, features: int, dtype=jnp.float32) -> EmbeddingParams:
    """``table ~ N(0, 1)``: each looked-up row is a unit-variance input for the next layer
    (the default of ``torch.nn.Embedding``; a linear layer after it rescales by 1/sqrt(features))."""
    return EmbeddingParams(table=jax.random.normal(key, (num_embeddings, features), dtype))


def embedding_infer(key, ids, num_embeddings: int, features: int, dtype=jnp.float32):
    """For a model: ``(params, None)``; the ids say nothing of the table's size, so both are stated."""
    return embedding_init(key, num_embeddings, features, dtype), None


def _check(params, ids) -> None:
    require_float(NAME, "params.table", params.table)
    require_rank(NAME, "params.table", params.table, 2, hint="Expected (num_embeddings, features).")
    if not jnp.issubdtype(jnp.result_type(ids), jnp.integer):
        raise TypeError(
            f"{NAME}: ids must be an integer array (row indices into the table); got ids {describe(ids)}. "
            f"Cast it first, e.g. ids.astype(jnp.int32)."
        )


def embedding_auto(params: EmbeddingParams, ids: jax.Array) -> jax.Array:
    """``y = table[ids]``; table: (V, D), ids: any shape S of integers -> y: (*S, D).

    Ids outside [-V, V) give a row of NaN (see the NOTE in the module docstring).
    """
    _check(params, ids)
    return jnp.take(params.table, ids, axis=0, mode="fill")


def embedding_fwd(params: EmbeddingParams, ids):
    table = params.table
    rows_token = jnp.zeros((table.shape[0], 0), table.dtype)  # V and the dtype, 0 bytes
    return embedding_auto(params, ids), (ids, rows_token)


def embedding_bwd(res, y_bar):
    ids, rows_token = res
    num_rows, dtype = rows_token.shape[0], rows_token.dtype
    acc_dtype = jnp.promote_types(dtype, jnp.float32)  # sum repeated rows without bf16 rounding
    zeros = jnp.zeros((num_rows, y_bar.shape[-1]), acc_dtype)
    table_bar = zeros.at[ids].add(y_bar.astype(acc_dtype), mode="drop")  # repeats accumulate
    return EmbeddingParams(table_bar.astype(dtype)), None


def embedding_jvp(primals, tangents):
    (params, ids), (params_dot, _) = primals, tangents  # ids: integers, no tangent
    y = embedding_auto(params, ids)
    y_dot = jnp.take(params_dot.table, ids, axis=0, mode="fill", fill_value=0)  # gathered as y is
    return y, y_dot.astype(y.dtype)


embedding = make_layer(embedding_auto, embedding_fwd, embedding_bwd, name=NAME, init=embedding_init,
                       infer=embedding_infer, jvp=embedding_jvp)
