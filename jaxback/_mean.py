"""mean over given axes, and global_avg_pool (NHWC -> (N, C)): an average of x's entries.

Shapes first. ``x``: any shape; ``axes``: the reduced axes A (``axis=None``: all of them), with
``M = prod(x.shape[a] for a in A)`` entries averaged into each output. ``y`` has x's shape without
the axes A (``keepdims=False``) or with size 1 there (``keepdims=True``). global_avg_pool is
``mean(x, axis=(1, 2))`` on x: (N, H, W, C), so y: (N, C) and M = H W.

Write i for an index of x and o(i) for i with the reduced axes dropped (or set to 0, keepdims): the
output entry that x[i] contributes to.

  Forward   y[o] = (1/M) sum over i with o(i) = o of x[i]

Chain rule with ``y_bar = dL/dy``: dy[o]/dx[i] = 1/M when o = o(i), else 0, so every entry of x
gets the cotangent of the one output it feeds, divided by M:

      x_bar[i] = sum_o y_bar[o] dy[o]/dx[i] = y_bar[o(i)] / M.

That is a broadcast: give y_bar size-1 axes at A (``expand_dims``, if keepdims dropped them) and
``broadcast_to(x.shape)``. No entry of x is read: the rule needs x's shape and dtype only.

  Backward  y_bar: y's shape
            x_bar = broadcast_to(expand_dims(y_bar, A) / M, x.shape)          x's shape
  global_avg_pool: A = (1, 2), M = H W: x_bar[n, h, w, c] = y_bar[n, c] / (H W).

Forward mode. The mean is linear in x, so moving x along a tangent x_dot moves y by the mean of
x_dot: y_dot[o] = sum_i dy[o]/dx[i] x_dot[i] = (1/M) sum over i with o(i) = o of x_dot[i].

  Tangent   x_dot: x's shape
            y_dot = mean(x_dot, A)                 y's shape (the same keepdims)
  global_avg_pool: y_dot[n, c] = mean of x_dot[n, :, :, c] over H and W.

At the edge cases the tangent follows the mean's: M = 0 gives y_dot = nan (0/0, as autodiff of
``jnp.mean``), and an inf in x, which makes y nan, leaves y_dot finite (x is not read).

NOTE: M = 0 (a reduced axis of size 0) gives y = nan (0/0, as ``jnp.mean``) and an empty x_bar.
bfloat16/float16 inputs are summed in float32 (as ``jnp.mean`` does) and y cast back; x_bar is
computed in y_bar's dtype and cast to x's.
Residuals: nothing but x's static shape and dtype (a ``Like`` record: zero bytes); autodiff of
``auto`` saves nothing either (the mean is linear).
"""

from __future__ import annotations

import math
import operator

import jax
import jax.numpy as jnp

from ._layer import Like, make_layer
from ._validate import require_bool, require_float, require_rank
from ._windows import is_int

__all__ = ["mean", "global_avg_pool"]

_POOL_AXES = (1, 2)  # H and W of NHWC


def _axes(name: str, axis, ndim: int) -> tuple:
    """``axis`` (None | int | tuple of ints) as sorted non-negative axes of an ndim array."""
    raw = tuple(range(ndim)) if axis is None else (axis,) if is_int(axis) else axis
    if not (isinstance(raw, tuple) and all(is_int(a) for a in raw)):
        raise TypeError(f"{name}: axis must be None, an int or a tuple of ints; got axis={axis!r}.")
    if any(not -ndim <= a < ndim for a in raw):
        raise ValueError(f"{name}: axis {axis!r} is out of range for x with {ndim} dimension(s).")
    axes = tuple(sorted(operator.index(a) % ndim for a in raw)) if ndim else ()
    if len(set(axes)) != len(axes):
        raise ValueError(f"{name}: axis must not repeat an axis; got axis={axis!r} (on {ndim} dimensions).")
    return axes


def _check(name, x, axis, keepdims) -> tuple:
    require_float(name, "x", x)
    require_bool(name, "keepdims", keepdims)
    return _axes(name, axis, jnp.ndim(x))


def _average(x, axes, keepdims):
    return jnp.mean(x, axis=axes, keepdims=keepdims)  # float32 accumulation for half inputs


def _spread(y_bar, like: Like, axes, keepdims):
    """``x_bar = broadcast_to(expand_dims(y_bar, A) / M, x.shape)`` (see the docstring)."""
    count = math.prod(like.shape[a] for a in axes)
    kept = y_bar if keepdims else jnp.expand_dims(y_bar, axes)
    return jnp.broadcast_to(kept / max(count, 1), like.shape).astype(like.dtype)


# mean -----------------------------------------------------------------------------------------------------
def mean_auto(x: jax.Array, *, axis: int | tuple[int, ...] | None = None, keepdims: bool = False) -> jax.Array:
    """The mean of x over ``axis`` (None: all axes), as ``jnp.mean``; keepdims keeps size-1 axes."""
    return _average(x, _check("mean", x, axis, keepdims), keepdims)


def mean_fwd(x, *, axis=None, keepdims=False):
    return mean_auto(x, axis=axis, keepdims=keepdims), Like.of(x)


def mean_bwd(res, y_bar, *, axis=None, keepdims=False):
    like = res
    axes = _axes("mean", axis, len(like.shape))
    return (_spread(y_bar, like, axes, keepdims),)


def mean_jvp(primals, tangents, *, axis=None, keepdims=False):
    (x,), (x_dot,) = primals, tangents
    axes = _check("mean", x, axis, keepdims)
    return _average(x, axes, keepdims), _average(x_dot, axes, keepdims)  # linear: y_dot = mean(x_dot)


mean = make_layer(mean_auto, mean_fwd, mean_bwd, name="mean", jvp=mean_jvp)


# global_avg_pool ------------------------------------------------------------------------------------------
def global_avg_pool_auto(x: jax.Array) -> jax.Array:
    """The mean over H and W of NHWC x: (N, H, W, C) -> y: (N, C)."""
    require_float("global_avg_pool", "x", x)
    require_rank("global_avg_pool", "x", x, 4, hint="Expected NHWC: (N, H, W, C).")
    return _average(x, _POOL_AXES, False)


def global_avg_pool_fwd(x):
    return global_avg_pool_auto(x), Like.of(x)


def global_avg_pool_bwd(res, y_bar):
    like = res
    return (_spread(y_bar, like, _POOL_AXES, False),)


def global_avg_pool_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return global_avg_pool_auto(x), _average(x_dot, _POOL_AXES, False)  # linear: the pool of x_dot


global_avg_pool = make_layer(global_avg_pool_auto, global_avg_pool_fwd, global_avg_pool_bwd,
                             name="global_avg_pool", jvp=global_avg_pool_jvp)
