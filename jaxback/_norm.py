"""layer_norm and rms_norm: normalise every row of ``x`` (its last axis), then scale (and shift).

Shapes first. x: (..., D); the statistics run along the last axis, separately for every index of
the leading axes, so write one row as a vector x: (D,). scale, bias: (D,); y has x's shape.

layer_norm.  Forward, one row x: (D,)
    x0    = x[0]                          a constant shift (NOTE: stability); any constant works
    mu    = mean(x - x0)                  so the row mean is x0 + mu
    xc    = (x - x0) - mu                 the centred row, x - mean(x)
    var   = mean(xc**2)                   two-pass: the mean first, then the squared deviations
    rstd  = 1 / sqrt(var + eps)
    x_hat = xc * rstd
    y     = x_hat * scale + bias

  Chain rule. Each x[j] moves every x_hat[i], through the mean and through rstd:
    d mean/dx[j]  = 1/D
    d var/dx[j]   = (2/D) sum_i xc[i] (delta_ij - 1/D) = 2 xc[j] / D         (sum_i xc[i] = 0)
    d rstd/dx[j]  = -1/2 (var + eps)**(-3/2) * 2 xc[j] / D = -rstd**2 x_hat[j] / D
    dx_hat[i]/dx[j] = rstd (delta_ij - 1/D) + xc[i] d rstd/dx[j]
                    = rstd (delta_ij - 1/D - x_hat[i] x_hat[j] / D)
  y = x_hat * scale + bias is elementwise, so g = dL/dx_hat = y_bar * scale, and
    x_bar[j] = sum_i g[i] dx_hat[i]/dx[j] = rstd (g[j] - mean(g) - x_hat[j] mean(g * x_hat)).
  scale and bias are shared by all rows: their gradients sum over the rows.

  Backward  y_bar = dL/dy: (..., D)
            x_hat     = ((x - x0) - mu) * rstd                          recomputed, (..., D)
            g         = y_bar * scale                                   (..., D)
            x_bar     = rstd * (g - mean(g) - x_hat * mean(g * x_hat))  means over the last axis
            scale_bar = sum(y_bar * x_hat) over every axis but the last (D,)
            bias_bar  = sum(y_bar) over every axis but the last         (D,)

  Forward mode. Move x, scale and bias along tangents x_dot, scale_dot, bias_dot. The Jacobian
  dx_hat[i]/dx[j] above is symmetric in i and j, so x_hat's tangent is the Backward's centred map
  applied to x_dot; y = x_hat * scale + bias then takes the product rule, one term per input:

  Tangent   x_dot: (..., D), scale_dot, bias_dot: (D,)
            x_hat     = ((x - x0) - mu) * rstd                          (..., D), as the forward
            x_hat_dot = rstd * (x_dot - mean(x_dot) - x_hat * mean(x_dot * x_hat))    (..., D)
            y_dot     = x_hat_dot * scale + x_hat * scale_dot + bias_dot              (..., D)

rms_norm.  Forward, one row x: (D,)
    rstd = 1 / sqrt(mean(x**2) + eps),   x_hat = x * rstd,   y = x_hat * scale
  The same steps with no mean: d rstd/dx[j] = -rstd**2 x_hat[j] / D, so
    dx_hat[i]/dx[j] = rstd (delta_ij - x_hat[i] x_hat[j] / D)

  Backward  x_hat     = x * rstd                                        recomputed
            g         = y_bar * scale
            x_bar     = rstd * (g - x_hat * mean(g * x_hat))            mean over the last axis
            scale_bar = sum(y_bar * x_hat) over every axis but the last
  Tangent   x_dot: (..., D), scale_dot: (D,)       (dx_hat[i]/dx[j] is symmetric again)
            x_hat_dot = rstd * (x_dot - x_hat * mean(x_dot * x_hat))          mean over the last axis
            y_dot     = x_hat_dot * scale + x_hat * scale_dot                 (..., D)
  Memory: both reductions are written over t = y_bar * x_hat, since mean(g * x_hat) =
  (t @ scale) / D and scale_bar = sum of t over rows. Under jit XLA then keeps one (..., D) buffer
  (t) alive until both are done; written as mean(g * x_hat), XLA on CPU materialised g (or a
  broadcast of scale) beside x_hat, 1 MiB more than autodiff at (256, 1024). The product runs at
  HIGHEST precision so it stays an exact-as-a-sum reduction on GPU/TPU (no TF32/bf16 passes).

Residuals. layer_norm saves ``(params, x, mu, rstd)``, rms_norm ``(params, x, rstd)``; mu, rstd are
(..., 1): 2N (N = rows) floats of the compute dtype beyond arrays that are alive anyway (params are
the model's weights, x is the previous layer's output). We save x, not x_hat: x_hat would be a new
(..., D) buffer (and float32 for a bfloat16 x), while recomputing it is one fused elementwise op.
mu is the mean measured from x0 (mean = x0 + mu, same size) so bwd rebuilds xc exactly as fwd;
x0 itself is sliced from x again.

NOTE (stability):
* Statistics are computed in at least float32 (bfloat16/float16 inputs are upcast: 1e4**2 already
  overflows float16); y is cast back to the result dtype of (x, scale, bias).
* The shift x0 (two-pass on shifted data): for a row far from zero, x - x0 is exact (the numbers
  are close), so nearly constant rows such as 1e8 + 1e-3 * noise keep all their digits, where
  x - mean(x) would inherit the rounding of a mean near 1e8. A constant row gives xc = 0 exactly.
* Squares are taken of xc * p, p = 1 / max(max|x - x0|, 1) (|xc * p| <= 2), and
  rstd = p / sqrt(mean((xc * p)**2) + eps * p**2) is the same number, so no square overflows:
  |x| may go up to about dtype max / (2 D), not sqrt(dtype max). rms_norm: p = 1 / max(max|x|, 1).
* x0 and p are held constant (``lax.stop_gradient``) in auto as in fwd: y does not depend on them.
* Zero variance (a constant row, or D = 1): rstd = 1/sqrt(eps), x_hat = 0, so y = bias exactly and
  x_bar = rstd * (g - mean(g)) is finite (0 when D = 1); the row adds 0 to scale_bar. rms_norm on
  a zero row: y = 0, x_bar = g / sqrt(eps). Autodiff of ``auto`` gives the same (it is the same
  maths). eps must be > 0. A row holding inf or NaN gives NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._layer import infer_from_features, make_layer
from ._statistics import (centered, centered_tangent, centered_x_bar, check_affine, compute_dtype,
                          mean_square_and_rstd, moments, sum_rows)

__all__ = ["LayerNormParams", "RMSNormParams", "layer_norm", "rms_norm"]


class LayerNormParams(NamedTuple):
    """``scale``: (D,) gain, ``bias``: (D,) shift."""

    scale: jax.Array
    bias: jax.Array


class RMSNormParams(NamedTuple):
    """``scale``: (D,) gain."""

    scale: jax.Array


def layer_norm_init(key, num_features: int, dtype=jnp.float32) -> LayerNormParams:
    """scale = 1, bias = 0: the layer starts as plain standardisation. ``key`` is unused."""
    return LayerNormParams(jnp.ones((num_features,), dtype), jnp.zeros((num_features,), dtype))


def rms_norm_init(key, num_features: int, dtype=jnp.float32) -> RMSNormParams:
    """scale = 1. ``key`` is unused (kept for the common ``init(key, ...)`` signature)."""
    return RMSNormParams(jnp.ones((num_features,), dtype))


def _last(x):
    return (x.ndim - 1,)


# layer_norm ---------------------------------------------------------------------------------------
def _layer_norm(params, x, eps):
    """``(y, x_hat, mu, rstd)``, statistics (and x_hat) in the compute dtype."""
    xf = x.astype(compute_dtype(x, *params))
    mu, _, rstd = moments(xf, eps, _last(x))
    x_hat = centered(xf, mu, _last(x)) * rstd
    y = x_hat * params.scale + params.bias
    return y.astype(jnp.result_type(x, *params)), x_hat, mu, rstd


def layer_norm_auto(params: LayerNormParams, x: jax.Array, eps: float = 1e-5) -> jax.Array:
    """``y = (x - mean) / sqrt(var + eps) * scale + bias`` over the last axis; x: (..., D)."""
    check_affine("layer_norm", params, x, eps, LayerNormParams)
    return _layer_norm(params, x, eps)[0]


def layer_norm_fwd(params: LayerNormParams, x, eps=1e-5):
    check_affine("layer_norm", params, x, eps, LayerNormParams)
    y, _, mu, rstd = _layer_norm(params, x, eps)
    return y, (params, x, mu, rstd)


def layer_norm_bwd(res, y_bar, eps=1e-5):
    params, x, mu, rstd = res
    y_bar = y_bar.astype(rstd.dtype)
    x_hat = centered(x.astype(rstd.dtype), mu, _last(x)) * rstd
    g = y_bar * params.scale
    x_bar = centered_x_bar(g, x_hat, rstd, _last(x))
    scale_bar = sum_rows(y_bar * x_hat, params.scale.dtype)
    bias_bar = sum_rows(y_bar, params.bias.dtype)
    return LayerNormParams(scale_bar, bias_bar), x_bar.astype(x.dtype)


def layer_norm_jvp(primals, tangents, eps=1e-5):
    (params, x), (params_dot, x_dot) = primals, tangents
    check_affine("layer_norm", params, x, eps, LayerNormParams)
    y, x_hat, _, rstd = _layer_norm(params, x, eps)
    x_hat_dot = centered_tangent(x_dot.astype(rstd.dtype), x_hat, rstd, _last(x))
    y_dot = x_hat_dot * params.scale + x_hat * params_dot.scale + params_dot.bias
    return y, y_dot.astype(y.dtype)


layer_norm = make_layer(layer_norm_auto, layer_norm_fwd, layer_norm_bwd, name="layer_norm",
                        init=layer_norm_init, infer=infer_from_features(layer_norm_init), jvp=layer_norm_jvp)


# rms_norm -----------------------------------------------------------------------------------------
def _rms_norm(params, x, eps):
    """``(y, x_hat, rstd)``, statistics (and x_hat) in the compute dtype."""
    xf = x.astype(compute_dtype(x, *params))
    _, rstd = mean_square_and_rstd(xf, jnp.max(jnp.abs(xf), -1, keepdims=True), eps, _last(x))
    x_hat = xf * rstd
    return (x_hat * params.scale).astype(jnp.result_type(x, *params)), x_hat, rstd


def rms_norm_auto(params: RMSNormParams, x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """``y = x / sqrt(mean(x**2) + eps) * scale`` over the last axis; x: (..., D)."""
    check_affine("rms_norm", params, x, eps, RMSNormParams)
    return _rms_norm(params, x, eps)[0]


def rms_norm_fwd(params: RMSNormParams, x, eps=1e-6):
    check_affine("rms_norm", params, x, eps, RMSNormParams)
    y, _, rstd = _rms_norm(params, x, eps)
    return y, (params, x, rstd)


def rms_norm_bwd(res, y_bar, eps=1e-6):
    params, x, rstd = res
    y_bar = y_bar.astype(rstd.dtype)
    x_hat = x.astype(rstd.dtype) * rstd
    t = y_bar * x_hat
    # mean(g * x_hat) = (t @ scale) / D: both reductions read the one buffer t (see "Memory").
    mean_g_x_hat = jnp.matmul(t, params.scale.astype(t.dtype), precision=lax.Precision.HIGHEST)
    x_bar = rstd * (y_bar * params.scale - x_hat * (mean_g_x_hat[..., None] / x.shape[-1]))
    return RMSNormParams(sum_rows(t, params.scale.dtype)), x_bar.astype(x.dtype)


def rms_norm_jvp(primals, tangents, eps=1e-6):
    (params, x), (params_dot, x_dot) = primals, tangents
    check_affine("rms_norm", params, x, eps, RMSNormParams)
    y, x_hat, rstd = _rms_norm(params, x, eps)
    x_dot = x_dot.astype(rstd.dtype)
    x_hat_dot = rstd * (x_dot - x_hat * jnp.mean(x_dot * x_hat, -1, keepdims=True))
    y_dot = x_hat_dot * params.scale + x_hat * params_dot.scale
    return y, y_dot.astype(y.dtype)


rms_norm = make_layer(rms_norm_auto, rms_norm_fwd, rms_norm_bwd, name="rms_norm", init=rms_norm_init,
                      infer=infer_from_features(rms_norm_init), jvp=rms_norm_jvp)
