"""batch_norm: normalise every channel over the batch (and spatial) axes; carries running statistics.

The layer takes and returns its running statistics, so it stays a pure function:

    params = jb.batch_norm.init(key, C)               # jb.BatchNormParams(scale=ones (C,), bias=zeros (C,))
    state = jb.batch_norm_state(C)                    # jb.BatchNormState(mean=zeros (C,), var=ones (C,))
    y, state = jb.batch_norm(params, x, state)        # training: batch statistics; state updated
    y, _ = jb.batch_norm(params, x, state, training=False)   # inference: normalise with state

    def loss(params, x, state):                       # a training step threads state through
        y, new_state = jb.batch_norm(params, x, state)
        return jnp.mean(y ** 2), new_state
    (value, state), grads = jax.value_and_grad(loss, has_aux=True)(params, x, state)

Shapes first. x: (..., C), channels last (NHWC or (N, C)); the statistics of channel c run over
every other axis: M = x.size / C entries. Write one channel as a vector x: (M,). scale, bias,
state.mean, state.var: (C,). y has x's shape; new_state has state's.

Training (``training=True``). Forward, one channel x: (M,)
    mu, var, rstd, x_hat exactly as layer_norm's (``_norm``), along the M axis instead of the D axis:
    mean = x0 + mu,  xc = (x - x0) - mu,  var = mean(xc**2),  rstd = 1/sqrt(var + eps),  x_hat = xc * rstd
    y         = x_hat * scale + bias
    new_state = (1 - momentum) * state + momentum * (mean, var)

  The chain rule is layer_norm's (see ``_norm``) with M in place of D: every x[j] of the channel
  moves every x_hat[i] through the batch mean and rstd,
    d mean/dx[j] = 1/M,   d var/dx[j] = 2 xc[j] / M,   d rstd/dx[j] = -rstd**2 x_hat[j] / M
    dx_hat[i]/dx[j] = rstd (delta_ij - 1/M - x_hat[i] x_hat[j] / M)
  so with g = dL/dx_hat = y_bar * scale,  x_bar[j] = sum_i g[i] dx_hat[i]/dx[j]:
  Backward  y_bar = dL/dy: (..., C)
            x_hat     = ((x - x0) - mu) * rstd                          recomputed
            g         = y_bar * scale
            x_bar     = rstd * (g - mean(g) - x_hat * mean(g * x_hat))  means over all axes but the last
            scale_bar = sum(y_bar * x_hat),  bias_bar = sum(y_bar)      over all axes but the last, (C,)
            state_bar = None

  Forward mode. Move x, scale and bias along x_dot, scale_dot, bias_dot. dx_hat[i]/dx[j] is
  symmetric in i and j, so x_hat's tangent is the Backward's centred map applied to x_dot, and
  y = x_hat * scale + bias takes the product rule:
  Tangent   x_dot: (..., C), scale_dot, bias_dot: (C,)
            x_hat_dot = rstd * (x_dot - mean(x_dot) - x_hat * mean(x_dot * x_hat))   means over all axes but the last
            y_dot     = x_hat_dot * scale + x_hat * scale_dot + bias_dot              (..., C)
            new_state_dot = None (zero), and state_dot is not read                    (NOTE)

Inference (``training=False``). mean = state.mean and rstd = 1/sqrt(state.var + eps) are constants:
    y = (x - mean) * rstd * scale + bias,   new_state = state
  Backward  x_hat = (x - mean) * rstd,  x_bar = rstd * y_bar * scale,  scale_bar, bias_bar as above.
  Tangent   x_hat_dot = rstd * x_dot,  y_dot = x_hat_dot * scale + x_hat * scale_dot + bias_dot.

Residuals: ``(params, x, center, rstd)``: center is mu (training, (1, ..., 1, C)) or state.mean
(inference, (C,)); center and rstd are 2C floats beyond arrays alive anyway (params, x).

NOTE (running statistics are not differentiated): gradients never flow into or out of the running
statistics. bwd returns ``None`` for ``state`` (in both modes: in inference state is a constant) and
ignores the cotangent of ``new_state``; ``auto`` wraps state and the batch statistics that enter
new_state in ``lax.stop_gradient``, so autodiff agrees. Forward mode alike: jvp never reads state's
tangent and gives new_state a zero tangent (the transpose of ignoring its cotangent; the true one,
momentum * (mean(x_dot), 2 mean(xc * x_dot)), would be cheap, but would disagree with both). Finite differences, which see the true
dependence of y (inference) and new_state on state and x, disagree by design: check y w.r.t.
(params, x) only.
NOTE (biased running variance): new_state.var mixes in the biased batch variance mean(xc**2), the
one training normalises with (as flax.linen.BatchNorm and haiku do; PyTorch mixes in the unbiased
M/(M-1) * var). So with momentum=1, inference on the same batch reproduces training's y exactly.
NOTE (momentum): PyTorch's convention, the weight of the new batch (flax's momentum is 1 - ours).
NOTE (stability): layer_norm's (shifted two-pass statistics in at least float32, no overflow in the
squares). A channel with zero variance (constant, or M = 1) gives y = bias and x_bar = rstd *
(g - mean(g)), finite (0 when M = 1). A channel whose variance itself overflows (|x| beyond about
sqrt(dtype max)) is still normalised correctly, but its running var becomes inf.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._layer import make_layer
from ._statistics import (centered, centered_tangent, centered_x_bar, check_affine, compute_dtype, first_entries,
                          moments, sum_rows)
from ._validate import describe, require_bool, require_float, require_rank, require_real

__all__ = ["BatchNormParams", "BatchNormState", "batch_norm", "batch_norm_state"]

NAME = "batch_norm"


class BatchNormParams(NamedTuple):
    """``scale``: (C,) gain, ``bias``: (C,) shift."""

    scale: jax.Array
    bias: jax.Array


class BatchNormState(NamedTuple):
    """Running statistics, not trained by gradients: ``mean``, ``var``: (C,)."""

    mean: jax.Array
    var: jax.Array


def batch_norm_init(key, num_features: int, dtype=jnp.float32) -> BatchNormParams:
    """scale = 1, bias = 0. ``key`` is unused (kept for the common ``init(key, ...)`` signature)."""
    return BatchNormParams(jnp.ones((num_features,), dtype), jnp.zeros((num_features,), dtype))


def batch_norm_state(num_features: int, dtype=jnp.float32) -> BatchNormState:
    """The initial running statistics: mean = 0, var = 1 (inference is the identity map at first)."""
    return BatchNormState(jnp.zeros((num_features,), dtype), jnp.ones((num_features,), dtype))


def batch_norm_infer(key, x):
    """For a model: ``(params, state)`` for ``C = x.shape[-1]`` channels, in ``x``'s dtype."""
    return batch_norm_init(key, x.shape[-1], x.dtype), batch_norm_state(x.shape[-1], x.dtype)


def _check(params, x, state, training, momentum, eps) -> None:
    require_float(NAME, "x", x)
    require_rank(NAME, "x", x, 2, at_least=True, hint="Expected (N, C) or channels-last (N, H, W, C).")
    check_affine(NAME, params, x, eps, BatchNormParams)
    if getattr(state, "_fields", None) != BatchNormState._fields:
        raise TypeError(f"{NAME}: state must be a BatchNormState(mean, var); got {type(state).__name__}. "
                        f"Build it with batch_norm_state(num_features).")
    for field, value in state._asdict().items():
        require_float(NAME, f"state.{field}", value)
        if jnp.shape(value) != (x.shape[-1],):
            raise ValueError(f"{NAME}: state.{field} must have shape (x.shape[-1],) = ({x.shape[-1]},); "
                             f"got state.{field} {describe(value)}, x {describe(x)}. Channels go last.")
    require_bool(NAME, "training", training)
    require_real(NAME, "momentum", momentum, lambda v: 0 <= v <= 1, "in [0, 1]")
    if training and x.size == 0:
        raise ValueError(f"{NAME}: training needs at least one example per channel; got x {describe(x)}.")


def _axes(x):
    """Every axis but the last (the channels)."""
    return tuple(range(x.ndim - 1))


def _batch_norm(params, x, state, training, momentum, eps):
    """``(y, new_state, x_hat, center, rstd)``: see the module docstring."""
    xf = x.astype(compute_dtype(x, *params))
    state = lax.stop_gradient(state)  # running statistics are constants (NOTE)
    if training:
        center, var, rstd = moments(xf, eps, _axes(x))
        x_hat = centered(xf, center, _axes(x)) * rstd
        batch = lax.stop_gradient(BatchNormState(first_entries(xf, _axes(x)) + center, var))
        batch = jax.tree_util.tree_map(lambda b: b.reshape(-1), batch)  # (1, ..., 1, C) -> (C,)
        new_state = jax.tree_util.tree_map(
            lambda s, b: ((1 - momentum) * s + momentum * b).astype(s.dtype), state, batch)
    else:
        center, rstd = state.mean.astype(xf.dtype), lax.rsqrt(state.var.astype(xf.dtype) + eps)
        x_hat, new_state = (xf - center) * rstd, state
    y = (x_hat * params.scale + params.bias).astype(jnp.result_type(x, *params))
    return y, new_state, x_hat, center, rstd


def batch_norm_auto(params: BatchNormParams, x: jax.Array, state: BatchNormState, *, training: bool = True,
                    momentum: float = 0.1, eps: float = 1e-5) -> tuple[jax.Array, BatchNormState]:
    """``(y, new_state)``; y = (x - mean) / sqrt(var + eps) * scale + bias per channel (last axis)."""
    _check(params, x, state, training, momentum, eps)
    return _batch_norm(params, x, state, training, momentum, eps)[:2]


def batch_norm_fwd(params: BatchNormParams, x, state: BatchNormState, *, training=True, momentum=0.1,
                   eps=1e-5):
    _check(params, x, state, training, momentum, eps)
    y, new_state, _, center, rstd = _batch_norm(params, x, state, training, momentum, eps)
    return (y, new_state), (params, x, center, rstd)


def batch_norm_bwd(res, out_bar, *, training=True, momentum=0.1, eps=1e-5):
    params, x, center, rstd = res
    y_bar = out_bar[0].astype(rstd.dtype)  # out_bar[1], new_state's cotangent, is ignored (NOTE)
    xf = x.astype(rstd.dtype)
    x_hat = (centered(xf, center, _axes(x)) if training else xf - center) * rstd
    g = y_bar * params.scale
    x_bar = centered_x_bar(g, x_hat, rstd, _axes(x)) if training else rstd * g
    params_bar = BatchNormParams(sum_rows(y_bar * x_hat, params.scale.dtype),
                                 sum_rows(y_bar, params.bias.dtype))
    return params_bar, x_bar.astype(x.dtype), None


def batch_norm_jvp(primals, tangents, *, training=True, momentum=0.1, eps=1e-5):
    (params, x, state), (params_dot, x_dot, _) = primals, tangents  # state's tangent is not read (NOTE)
    _check(params, x, state, training, momentum, eps)
    y, new_state, x_hat, _, rstd = _batch_norm(params, x, state, training, momentum, eps)
    x_dot = x_dot.astype(rstd.dtype)
    x_hat_dot = centered_tangent(x_dot, x_hat, rstd, _axes(x)) if training else rstd * x_dot
    y_dot = x_hat_dot * params.scale + x_hat * params_dot.scale + params_dot.bias
    return (y, new_state), (y_dot.astype(y.dtype), None)  # None: new_state's tangent is zero (NOTE)


batch_norm = make_layer(batch_norm_auto, batch_norm_fwd, batch_norm_bwd, name=NAME, init=batch_norm_init,
                        roles=("params", "x", "state"), infer=batch_norm_infer, jvp=batch_norm_jvp)
