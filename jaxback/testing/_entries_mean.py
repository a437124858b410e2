"""Registry entries for mean and global_avg_pool (``ENTRIES``, loaded by ``_builtin.builtin_registry()``).

Every setting of ``hypers`` applies to every shape (all of rank >= 3): axis None, one axis (also
negative), two axes with and without keepdims, and the batch axis (a sum across the sharded batch).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._mean import _axes, global_avg_pool, mean
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

__all__ = ["ENTRIES"]

ALL_KINDS = ("wide", "ties", "extreme", "inf")  # the rule never reads x
MEAN_SHAPES = ((2, 3, 4), (1, 5, 2), (3, 2, 2, 2))
POOL_SHAPES = ((2, 3, 4, 2), (1, 1, 5, 3), (3, 2, 2, 1))


def _x(rng, dtype, shape, kind):
    return (jnp.asarray(values(rng, shape, kind), dtype),)


def _f64(a):
    return np.asarray(a, np.float64)


def _mean_mutant(edit):
    """A rule that spreads ``edit(y_bar, like, axes)`` (already with kept axes) over x's shape."""

    def bwd(res, y_bar, *, axis=None, keepdims=False):
        like = res
        axes = _axes("mean", axis, len(like.shape))
        kept = y_bar if keepdims else jnp.expand_dims(y_bar, axes)
        return (jnp.broadcast_to(edit(kept, like, axes), like.shape).astype(like.dtype),)

    return bwd


def _first_axis_count(kept, like, axes):
    return kept / like.shape[axes[0]]  # divides by one reduced axis's size, not by all of them


def _pool_mutant(edit):
    def bwd(res, y_bar):
        like = res
        return (jnp.broadcast_to(edit(y_bar[:, None, None, :], like), like.shape).astype(like.dtype),)

    return bwd


def _first_entry_only(y_bar, like):
    """All of y_bar to x[:, 0, 0, :], as if the pool were a pick of the first pixel."""
    hit = (jnp.arange(like.shape[1])[:, None] == 0) & (jnp.arange(like.shape[2])[None, :] == 0)
    return jnp.where(hit[None, :, :, None], y_bar, 0.0)


def _mean_jvp_mutant(tangent):
    """A mean jvp whose ``y_dot = tangent(x_dot, axes, keepdims)``."""
    def jvp(primals, tangents, *, axis=None, keepdims=False):
        (x,), (x_dot,) = primals, tangents
        return mean.auto(x, axis=axis, keepdims=keepdims), tangent(x_dot, _axes("mean", axis, x.ndim), keepdims)
    return jvp


def _pool_jvp_mutant(tangent):
    def jvp(primals, tangents):
        (x,), (x_dot,) = primals, tangents
        return global_avg_pool.auto(x), tangent(x_dot)
    return jvp


def _check_shape_and_value(shape, value):
    def check(y, cots):
        assert cots[0].shape == shape, (cots[0].shape, shape)
        np.testing.assert_allclose(_f64(cots[0]), value, rtol=1e-6)
    return check


def _check_keepdims(y, cots):
    assert y.shape == (1, 3, 1), y.shape
    _check_shape_and_value((2, 3, 4), 1 / 8)(y, cots)


def _check_infinities(y, cots):
    assert np.isnan(_f64(y)).all(), y
    _check_shape_and_value((1, 3), 1 / 3)(y, cots)


def _check_empty_batch(y, cots):
    assert y.shape == (0, 3) and cots[0].shape == (0, 2, 2, 3), (y.shape, cots[0].shape)


def _check_empty_axis(y, cots):
    assert y.shape == (2, 3) and np.isnan(_f64(y)).all() and cots[0].shape == (2, 0, 3)


def _check_pool_one_pixel(y, cots):
    np.testing.assert_array_equal(_f64(y), _f64(jnp.arange(6.0).reshape(2, 3)))
    np.testing.assert_array_equal(_f64(cots[0]), 1.0)


_X = jnp.ones((2, 3, 4))

MEAN = LayerInfo(
    mean, _x, MEAN_SHAPES,
    hypers=({}, {"axis": -1}, {"axis": (1, 2)}, {"axis": (0, 2), "keepdims": True}, {"axis": 0}, {"axis": ()}),
    value_kinds=ALL_KINDS,
    edge_cases=(
        EdgeCase("all axes", lambda dt: (jnp.ones((2, 3, 4), dt),), "axis=None: y is a scalar; x_bar = 1/24",
                 _check_shape_and_value((2, 3, 4), 1 / 24)),
        EdgeCase("keepdims", lambda dt: (jnp.ones((2, 3, 4), dt),),
                 "axis=(0, 2), keepdims=True: y has shape (1, 3, 1); x_bar = 1/8",
                 _check_keepdims,
                 {"axis": (0, 2), "keepdims": True}),
        EdgeCase("no axes", lambda dt: (jnp.ones((2, 3), dt),), "axis=(): y = x and x_bar = y_bar",
                 _check_shape_and_value((2, 3), 1.0), {"axis": ()}),
        EdgeCase("empty reduced axis", lambda dt: (jnp.ones((2, 0, 3), dt),),
                 "a reduced axis of size 0: y = nan (0/0, as jnp.mean), x_bar is empty",
                 _check_empty_axis, {"axis": 1}),
        EdgeCase("+inf and -inf", lambda dt: (jnp.asarray([[math.inf, -math.inf, 1.0]], dt),),
                 "y = nan (inf - inf), but x_bar = 1/3 everywhere: the rule never reads x",
                 _check_infinities,
                 {"axis": -1}),
    ),
    error_cases=(
        ErrorCase("axis out of range", lambda: (_X,), ValueError,
                  r"mean: axis 3 is out of range for x with 3 dimension\(s\)", {"axis": 3}),
        ErrorCase("repeated axis", lambda: (_X,), ValueError, r"mean: axis must not repeat an axis; got axis=\(1, -2\)",
                  {"axis": (1, -2)}),
        ErrorCase("float axis", lambda: (_X,), TypeError, r"mean: axis must be None, an int or a tuple of ints; got "
                  r"axis=1.0", {"axis": 1.0}),
        ErrorCase("axis as a list", lambda: (_X,), TypeError, r"mean: hyperparameters must be hashable",
                  {"axis": [0, 1]}),
        ErrorCase("keepdims not a bool", lambda: (_X,), TypeError, r"mean: keepdims must be True or False; got "
                  r"keepdims=1", {"keepdims": 1}),
        ErrorCase("integer x", lambda: (jnp.ones((2, 3), jnp.int32),), TypeError, r"mean: x must be a floating-point"),
    ),
    mutants=(
        Mutant("sum's rule (no 1/M)", _mean_mutant(lambda kept, like, axes: kept)),
        Mutant("divided by the first reduced axis's size only", _mean_mutant(_first_axis_count)),
        Mutant("divided by x.size", _mean_mutant(lambda kept, like, axes: kept / max(math.prod(like.shape), 1))),
        Mutant("jvp: sum's tangent (no 1/M)", jvp=_mean_jvp_mutant(lambda t, axes, keep: jnp.sum(t, axes, keepdims=keep))),
        Mutant("jvp: divided by x.size", jvp=_mean_jvp_mutant(
            lambda t, axes, keep: jnp.sum(t, axes, keepdims=keep) / max(t.size, 1))),
    ),
)

GLOBAL_AVG_POOL = LayerInfo(
    global_avg_pool, _x, POOL_SHAPES, value_kinds=ALL_KINDS,
    edge_cases=(
        EdgeCase("one pixel", lambda dt: (jnp.arange(6.0, dtype=dt).reshape(2, 1, 1, 3),),
                 "H = W = 1: y = x[:, 0, 0, :] and x_bar = y_bar", _check_pool_one_pixel),
        EdgeCase("empty batch", lambda dt: (jnp.ones((0, 2, 2, 3), dt),), "y: (0, 3); x_bar: (0, 2, 2, 3)",
                 _check_empty_batch),
        EdgeCase("uniform spread", lambda dt: (jnp.zeros((1, 2, 4, 2), dt),), "x_bar = 1/(H W) = 1/8 everywhere",
                 _check_shape_and_value((1, 2, 4, 2), 1 / 8)),
    ),
    error_cases=(
        ErrorCase("rank of x", lambda: (jnp.ones((2, 4, 3)),), ValueError,
                  r"global_avg_pool: x must have exactly 4 dim.*NHWC"),
        ErrorCase("integer x", lambda: (jnp.ones((1, 2, 2, 3), jnp.int32),), TypeError,
                  r"global_avg_pool: x must be a floating-point"),
        ErrorCase("a keyword it does not take", lambda: (jnp.ones((1, 2, 2, 3)),), TypeError,
                  r"global_avg_pool: unknown keyword argument\(s\) 'axis'", {"axis": 1}),
    ),
    mutants=(
        Mutant("sum's rule (no 1/(H W))", _pool_mutant(lambda g, like: g)),
        Mutant("divided by H only", _pool_mutant(lambda g, like: g / like.shape[1])),
        Mutant("gradient to the first pixel only", _pool_mutant(_first_entry_only)),
        Mutant("jvp: sum over H and W (no 1/(H W))", jvp=_pool_jvp_mutant(lambda t: jnp.sum(t, (1, 2)))),
        Mutant("jvp: the first pixel's tangent", jvp=_pool_jvp_mutant(lambda t: t[:, 0, 0, :])),
    ),
)

ENTRIES = (MEAN, GLOBAL_AVG_POOL)
