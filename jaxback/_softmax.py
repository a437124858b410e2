"""softmax and log_softmax along one axis.

Shapes first: ``x`` has any shape; the maths runs along ``axis`` (size C), independently for every
other index, so write one slice as a vector x: (C,). ``y`` has the shape of ``x``.

softmax.  Forward   y[j] = exp(x[j]) / sum_k exp(x[k])
  Each y[j] depends on every x[i]:  dy[j]/dx[i] = y[j] * (delta_ij - y[i]).
  Chain rule:  x_bar[i] = sum_j y_bar[j] * dy[j]/dx[i] = y[i] * y_bar[i] - y[i] * sum_j y_bar[j] y[j]

  Backward  y_bar = dL/dy: (..., C, ...)
            x_bar = y * (y_bar - sum(y_bar * y, axis))           keepdims, so it broadcasts

log_softmax.  Forward   y[j] = x[j] - lse,   lse = log sum_k exp(x[k])
  d lse/dx[i] = softmax(x)[i] = exp(y[i]), so  dy[j]/dx[i] = delta_ij - exp(y[i]).
  Chain rule:  x_bar[i] = y_bar[i] - exp(y[i]) * sum_j y_bar[j]

  Backward  x_bar = y_bar - exp(y) * sum(y_bar, axis)             keepdims

Both rules are functions of the output. Yet we do not save ``y`` (a new array of x's size): we save
the input ``x`` (alive anyway, as the previous layer's output) and ``lse`` (one number per slice),
and recompute ``y = exp(x - lse)`` (or ``x - lse``) in the backward. Under ``jit`` that
recomputation fuses into the backward's loops, while a saved ``y`` has to be materialised: measured
with ``benchmarks/memory_audit.py`` on 1024 x 1024 float32, the jitted gradient's temp memory is
4 MiB when saving y and 4 KiB when saving (x, lse) (autodiff: 12 KiB).

Forward mode. Move x along a tangent x_dot (x's shape); to first order each output moves by
sum_i dy[j]/dx[i] * x_dot[i], the same Jacobians as above, now applied from the other side:

softmax.      sum_i y[j] (delta_ij - y[i]) x_dot[i] = y[j] x_dot[j] - y[j] sum_i y[i] x_dot[i]
  Tangent   x_dot: (..., C, ...)
            y_dot = y * (x_dot - sum(y * x_dot, axis))           keepdims, y = exp(x - lse)
log_softmax.  sum_i (delta_ij - exp(y[i])) x_dot[i] = x_dot[j] - sum_i softmax(x)[i] x_dot[i]
  Tangent   y_dot = x_dot - sum(exp(x - lse) * x_dot, axis)      keepdims

Each tangent rule runs beside the forward and reuses its ``lse`` (softmax: its ``y``). At a -inf input
softmax is 0 and so is its tangent; log_softmax is -inf there and its tangent is x_dot minus the
softmax-weighted sum, as autodiff's.

NOTE (stability): the forward subtracts the row maximum before ``exp`` (softmax is unchanged by a
shift), so huge logits never overflow; ``auto`` wraps that maximum in ``stop_gradient``, which is
exact because the shift does not change ``y``. Entries of -inf get probability 0 (masking works).
A slice that is all -inf or contains +inf has no defined softmax and gives NaN, as in ``jax.nn``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._layer import make_layer
from ._validate import describe, require_float

__all__ = ["softmax", "log_softmax"]


def _check(name, x, axis):
    require_float(name, "x", x)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -x.ndim <= axis < max(x.ndim, 1):
        raise ValueError(
            f"{name}: axis must be a Python int in [-{x.ndim}, {x.ndim}); got axis={axis!r} for x "
            f"{describe(x)}."
        )


def _shifted(x, axis):
    """``x - max(x)`` along ``axis``; the max is a constant shift, so no gradient flows into it."""
    return x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))


def _logsumexp(x, axis):
    """``lse = log sum exp(x)`` along ``axis`` (keepdims), computed as max + log sum exp(x - max)."""
    top = jnp.max(x, axis=axis, keepdims=True)
    return top + jnp.log(jnp.sum(jnp.exp(x - top), axis=axis, keepdims=True))


def softmax_auto(x: jax.Array, axis: int = -1) -> jax.Array:
    """``softmax(x)[j] = exp(x[j]) / sum_k exp(x[k])`` along ``axis``; y has x's shape."""
    _check("softmax", x, axis)
    e = jnp.exp(_shifted(x, axis))
    return e / jnp.sum(e, axis=axis, keepdims=True)


def softmax_fwd(x, axis=-1):
    _check("softmax", x, axis)
    lse = _logsumexp(x, axis)
    return jnp.exp(x - lse), (x, lse)


def softmax_bwd(res, y_bar, axis=-1):
    x, lse = res
    y = jnp.exp(x - lse)  # recomputed: cheaper than keeping y alive (see the docstring)
    x_bar = y * (y_bar - jnp.sum(y_bar * y, axis=axis, keepdims=True))
    return (x_bar.astype(x.dtype),)


def softmax_jvp(primals, tangents, axis=-1):
    (x,), (x_dot,) = primals, tangents
    y, _ = softmax_fwd(x, axis=axis)                      # y = exp(x - lse)
    y_dot = y * (x_dot - jnp.sum(y * x_dot, axis=axis, keepdims=True))
    return y, y_dot.astype(y.dtype)


softmax = make_layer(softmax_auto, softmax_fwd, softmax_bwd, name="softmax", jvp=softmax_jvp)


def log_softmax_auto(x: jax.Array, axis: int = -1) -> jax.Array:
    """``log_softmax(x)[j] = x[j] - log sum_k exp(x[k])`` along ``axis``; y has x's shape."""
    _check("log_softmax", x, axis)
    shifted = _shifted(x, axis)
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))


def log_softmax_fwd(x, axis=-1):
    _check("log_softmax", x, axis)
    lse = _logsumexp(x, axis)
    return x - lse, (x, lse)


def log_softmax_bwd(res, y_bar, axis=-1):
    x, lse = res
    x_bar = y_bar - jnp.exp(x - lse) * jnp.sum(y_bar, axis=axis, keepdims=True)  # exp(y) = exp(x - lse)
    return (x_bar.astype(x.dtype),)


def log_softmax_jvp(primals, tangents, axis=-1):
    (x,), (x_dot,) = primals, tangents
    y, (_, lse) = log_softmax_fwd(x, axis=axis)           # y = x - lse
    y_dot = x_dot - jnp.sum(jnp.exp(x - lse) * x_dot, axis=axis, keepdims=True)  # exp(x - lse) = softmax(x)
    return y, y_dot.astype(y.dtype)


log_softmax = make_layer(log_softmax_auto, log_softmax_fwd, log_softmax_bwd, name="log_softmax",
                         jvp=log_softmax_jvp)
