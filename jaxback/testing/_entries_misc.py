"""Registry entries for embedding and dropout (``ENTRIES``, loaded by ``_builtin.builtin_registry()``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._dropout import dropout
from .._embedding import EmbeddingParams, embedding
from .._keep_mask import keep_mask as _keep_mask, mask_and_scale as _mask_and_scale
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

__all__ = ["ENTRIES"]

ALL_KINDS = ("wide", "ties", "extreme", "inf")  # both layers only move values around

# embedding ----------------------------------------------------------------------------------------
V = 5  # rows in the sample table: few, so sampled ids repeat (the accumulation is exercised)


def _table(dtype, d=3):
    return EmbeddingParams(jnp.asarray(np.arange(V * d).reshape(V, d) / 7.0, dtype))


def _embedding_args(rng, dtype, shape, kind):
    """``shape`` is the output's, (*ids.shape, D). Ids cover [-V, V): negatives count from the end;
    out-of-range ids (NaN rows) are left to the edge cases, where finite differences are off."""
    *ids_shape, d = shape
    table = jnp.asarray(values(rng, (V, d), kind), dtype)
    ids = jnp.asarray(rng.integers(-V, V, size=ids_shape), jnp.int32)
    return EmbeddingParams(table), ids


def _check_repeats(y, cotangents):
    np.testing.assert_array_equal(np.asarray(cotangents[0].table[:, 0], np.float64), [1, 0, 3, 0, 0])


def _check_out_of_range(y, cotangents):
    y = np.asarray(y, np.float64)
    assert np.isnan(y[1:4]).all() and np.isfinite(y[[0, 4]]).all(), y
    np.testing.assert_array_equal(np.asarray(cotangents[0].table[:, 0], np.float64), [1, 0, 0, 0, 1])


def _check_negative(y, cotangents):
    rows = np.asarray(_table(y.dtype).table, np.float64)
    np.testing.assert_array_equal(np.asarray(y, np.float64), rows[[4, 0]])
    np.testing.assert_array_equal(np.asarray(cotangents[0].table[:, 0], np.float64), [1, 0, 0, 0, 1])


def _check_empty(y, cotangents):
    assert y.shape == (0, 3) and not np.asarray(cotangents[0].table, np.float64).any()


def _embedding_mutant(edit):
    """The right rule up to the table_bar = ... line, which ``edit(ids, y_bar, zeros)`` replaces."""
    def bwd(res, y_bar):
        ids, rows_token = res
        zeros = jnp.zeros((rows_token.shape[0], y_bar.shape[-1]), rows_token.dtype)
        return EmbeddingParams(edit(ids, y_bar, zeros)), None
    return bwd


def _embedding_jvp_mutant(tangent):
    """An embedding jvp whose ``y_dot = tangent(table, table_dot, ids)``."""
    def jvp(primals, tangents):
        (params, ids), (params_dot, _) = primals, tangents
        return embedding.auto(params, ids), tangent(params.table, params_dot.table, ids)
    return jvp


EMBEDDING = LayerInfo(
    layer=embedding,
    sample_args=_embedding_args,
    shapes=((8, 3), (1, 1), (2, 6, 4), (3,), (0, 2)),  # 8 ids over 5 rows: repeats guaranteed
    value_kinds=ALL_KINDS,
    edge_cases=(
        EdgeCase("repeated ids", lambda dt: (_table(dt), jnp.array([2, 0, 2, 2])),
                 "repeated ids accumulate: row 2, looked up 3 times, gets the sum of 3 cotangent rows",
                 _check_repeats),
        EdgeCase("out-of-range ids", lambda dt: (_table(dt), jnp.array([0, 5, 7, -6, 4])),
                 "ids outside [-V, V) read a row of NaN and send no gradient (jnp.take mode='fill')",
                 _check_out_of_range),
        EdgeCase("negative ids", lambda dt: (_table(dt), jnp.array([-1, -5])),
                 "ids in [-V, 0) count from the end, as NumPy indexing does: -1 is row V-1",
                 _check_negative),
        EdgeCase("empty ids", lambda dt: (_table(dt), jnp.zeros((0,), jnp.int32)),
                 "no ids: y is (0, D) and table_bar is all zeros", _check_empty),
    ),
    error_cases=(
        ErrorCase("float ids", lambda: (_table(jnp.float32), jnp.array([0.0, 1.0])),
                  TypeError, r"embedding: ids must be an integer array"),
        ErrorCase("table of rank 1", lambda: (EmbeddingParams(jnp.zeros(5)), jnp.array([0])),
                  ValueError, r"embedding: params.table must have exactly 2 dimension"),
        ErrorCase("table of rank 3", lambda: (EmbeddingParams(jnp.zeros((5, 3, 2))), jnp.array([0])),
                  ValueError, r"embedding: params.table must have exactly 2 dimension"),
        ErrorCase("integer table", lambda: (EmbeddingParams(jnp.zeros((5, 3), jnp.int32)), jnp.array([0])),
                  TypeError, r"embedding: params.table must be a floating-point array"),
    ),
    mutants=(
        Mutant("set instead of add: repeated ids overwrite",
               _embedding_mutant(lambda ids, g, z: z.at[ids].set(g, mode="drop"))),
        Mutant("off by scale: mean over positions instead of sum",
               _embedding_mutant(lambda ids, g, z: z.at[ids].add(g, mode="drop") / max(ids.size, 1))),
        Mutant("wrong dtype: table_bar in float32",
               _embedding_mutant(lambda ids, g, z: z.at[ids].add(g, mode="drop").astype(jnp.float32))),
        Mutant("jvp: the table's rows, not its tangent's", jvp=_embedding_jvp_mutant(
            lambda table, table_dot, ids: jnp.take(table, ids, axis=0, mode="fill", fill_value=0))),
        Mutant("jvp: negative ids clamped to row 0", jvp=_embedding_jvp_mutant(
            lambda table, table_dot, ids: jnp.take(table_dot, ids, axis=0, mode="clip"))),
    ),
    notes="ids are not differentiable (float0 cotangent). Out-of-range ids give NaN rows, so "
          "sample_args draws ids in [-V, V) and the NaN convention is checked by an edge case.",
)

# dropout ------------------------------------------------------------------------------------------


def _key(seed, typed):
    return jax.random.key(seed) if typed else jax.random.PRNGKey(seed)


def _dropout_args(rng, dtype, shape, kind):
    """x of ``shape`` and a key: typed (``jax.random.key``) when x has an odd number of dimensions,
    raw uint32 otherwise, so both kinds are drawn and samples of one shape stack (vmap, scan)."""
    x = jnp.asarray(values(rng, shape, kind), dtype)
    return x, _key(int(rng.integers(2**31)), typed=len(shape) % 2 == 1)


def _x_and_key(dtype, shape=(4, 5)):
    return jnp.asarray(np.arange(np.prod(shape)).reshape(shape) - 7.5, dtype), jax.random.PRNGKey(0)


def _check_identity(y, cotangents):
    x, _ = _x_and_key(jnp.float64)
    np.testing.assert_array_equal(np.asarray(y, np.float64), x)
    np.testing.assert_array_equal(np.asarray(cotangents[0], np.float64), np.ones(x.shape))


def _check_specials(y, cotangents):
    y, x_bar = np.asarray(y, np.float64), np.asarray(cotangents[0], np.float64)
    dropped = x_bar == 0
    assert 0 < dropped.sum() < dropped.size, "rate 0.5 on 24 entries should drop some, keep some"
    assert (y[dropped] == 0).all(), "dropped entries must be exactly 0, even for inf and nan"
    assert (x_bar[~dropped] == 2).all(), "kept entries have slope 1 / (1 - rate) = 2"


def _dropout_mutant(edit):
    """The right rule except ``x_bar = edit(key, y_bar, rate)``; identity settings stay right."""
    def bwd(res, y_bar, *, rate=0.5, training=True):
        if rate == 0 or not training:
            return y_bar, None
        return edit(res, y_bar, rate), None
    return bwd


def _mask_from(key, g, rate):
    return _keep_mask(key, rate, g.shape)


def _dropout_jvp_mutant(edit):
    """The right jvp except ``y_dot = edit(key, x_dot, rate)``; identity settings stay right."""
    def jvp(primals, tangents, *, rate=0.5, training=True):
        (x, key), (x_dot, _) = primals, tangents
        y = dropout.auto(x, key, rate=rate, training=training)
        return y, (x_dot if rate == 0 or not training else edit(key, x_dot, rate))
    return jvp


DROPOUT = LayerInfo(
    layer=dropout,
    sample_args=_dropout_args,
    shapes=((4, 5), (1,), (2, 3, 4)),
    bench_shape=(256, 1024),
    bench_hyper={"rate": 0.1},
    hypers=({}, {"rate": 0.1}, {"rate": 0.9}, {"rate": 0.0}, {"training": False},
            {"rate": 0.3, "training": False}),
    value_kinds=ALL_KINDS,
    edge_cases=(
        EdgeCase("rate 0", lambda dt: _x_and_key(dt), "rate=0 is the identity: y = x, x_bar = y_bar",
                 _check_identity, hyper={"rate": 0.0}),
        EdgeCase("eval mode", lambda dt: _x_and_key(dt), "training=False is the identity", _check_identity,
                 hyper={"rate": 0.5, "training": False}),
        EdgeCase("inf and nan", lambda dt: (jnp.tile(jnp.array([jnp.inf, -jnp.inf, jnp.nan, 1.0], dt), 6),
                                            jax.random.PRNGKey(3)),
                 "dropped entries are exactly 0 even for inf/nan x; kept ones scale by 1/(1 - rate)",
                 _check_specials),
    ),
    error_cases=(
        ErrorCase("integer x", lambda: (jnp.arange(4), jax.random.PRNGKey(0)),
                  TypeError, r"dropout: x must be a floating-point array"),
        ErrorCase("rate 1", lambda: _x_and_key(jnp.float32), ValueError,
                  r"dropout: rate .* must be in \[0, 1\); got rate=1.0", hyper={"rate": 1.0}),
        ErrorCase("negative rate", lambda: _x_and_key(jnp.float32), ValueError,
                  r"dropout: rate .* must be in \[0, 1\)", hyper={"rate": -0.1}),
        ErrorCase("string rate", lambda: _x_and_key(jnp.float32), TypeError,
                  r"dropout: rate must be a Python real number", hyper={"rate": "0.5"}),
        ErrorCase("non-bool training", lambda: _x_and_key(jnp.float32), TypeError,
                  r"dropout: training must be True or False", hyper={"training": None}),
        ErrorCase("batch of keys", lambda: (jnp.ones(3), jax.random.split(jax.random.PRNGKey(0), 3)),
                  ValueError, r"dropout: key must be one PRNG key"),
    ),
    mutants=(
        Mutant("missing the 1 / (1 - rate) factor",
               _dropout_mutant(lambda key, g, rate: jnp.where(_mask_from(key, g, rate), g, 0.0))),
        Mutant("fresh mask from another key in bwd",
               _dropout_mutant(lambda key, g, rate: _mask_and_scale(
                   g, _keep_mask(jax.random.fold_in(key, 1), rate, g.shape), rate))),
        Mutant("mask not applied", _dropout_mutant(lambda key, g, rate: g / (1.0 - rate))),
        Mutant("inverted mask", _dropout_mutant(lambda key, g, rate: _mask_and_scale(
            g, ~_mask_from(key, g, rate), rate))),
        Mutant("jvp: missing the 1 / (1 - rate) factor",
               jvp=_dropout_jvp_mutant(lambda key, t, rate: jnp.where(_mask_from(key, t, rate), t, 0.0))),
        Mutant("jvp: a fresh mask from another key", jvp=_dropout_jvp_mutant(lambda key, t, rate: _mask_and_scale(
            t, _keep_mask(jax.random.fold_in(key, 1), rate, t.shape), rate))),
    ),
    notes="key is not differentiable (float0 cotangent). The mask is a function of (key, rate, shape): "
          "under vmap with an unbatched key every example gets the same mask (split keys for different ones).",
)

ENTRIES = (EMBEDDING, DROPOUT)
