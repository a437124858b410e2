"""conv2d: a 2-D convolution (cross-correlation, as in every deep-learning library), NHWC/HWIO.

Shapes first. ``x``: (N, H, W, C_in), ``w``: (kh, kw, C_in, C_out), ``b``: (C_out,), and
``y``: (N, H', W', C_out). The hyperparameters are a ``stride`` s, a kernel ``dilation`` d and a
``padding`` (lo, hi) of zeros per spatial axis. The dilated kernel spans ``e = (k - 1) d + 1`` rows,
so ``H' = (H + lo + hi - e) // s + 1``. The floor leaves ``r = (H + lo + hi - e) % s`` rows at the
bottom that no window reaches ("leftover rows"); they matter below.

1-D, one channel. Write ``xp[t] = x[t - lo]`` (zero outside 0..H-1) for the padded input. Then

  Forward   y[i] = sum_k xp[i*s + k*d] w[k] = sum_k x[i*s + k*d - lo] w[k]       i = 0..H'-1

Chain rule with ``y_bar = dL/dy``: dL/du = sum_i y_bar[i] dy[i]/du for every input entry u.

* ``dy[i]/dx[j] = w[k]`` exactly when ``j = i*s + k*d - lo``, so

      x_bar[j] = sum over (i, k) with i*s + k*d = j + lo of  y_bar[i] w[k].

  Spread y_bar out by the stride, ``z[i*s] = y_bar[i]`` and zeros between (length (H'-1) s + 1),
  and the condition is just ``z``'s index: x_bar[j] = sum_k z[j + lo - k*d] w[k]. Flip the kernel,
  ``wf[m] = w[K - 1 - m]`` (K taps), and it reads as an ordinary stride-1 correlation:

      x_bar[j] = sum_m z[j + m*d - (e - 1 - lo)] wf[m],

  i.e. pad z with ``e - 1 - lo`` zeros on the left and ``e - 1 - hi + r`` on the right (so that
  x_bar has H entries: the r leftover rows receive only zeros), dilate the flipped kernel by d.
  ``lax.conv_general_dilated`` does the spreading for us: ``lhs_dilation = s``. A padding can be
  negative (lo > e - 1 crops z): XLA accepts that.
* ``dy[i]/dw[k] = xp[i*s + k*d]``, so w_bar[k] = sum_i y_bar[i] xp[i*s + k*d]: a correlation of
  xp with y_bar, whose taps are s apart (``rhs_dilation = s``) and whose outputs are d apart
  (``window_strides = d``). Padding (lo, hi - r) drops the leftover rows, giving exactly K outputs.
* ``dy[i]/db = 1``, so b_bar = sum_i y_bar[i].

2-D and channels. The index maths factorises per spatial axis (each has its own s, d, lo, hi, r),
and with channels y[n, i, o] = sum_{k, c} xp[n, i*s + k*d, c] w[k, c, o] + b[o], so

* x_bar[n, j, c] sums y_bar[n, ., o] w[., c, o] over o: the kernel's in/out channels swap roles
  (``w_t = flip(w, (0, 1)).swapaxes(2, 3)``: (kh, kw, C_out, C_in));
* w_bar[k, c, o] sums x[n, ., c] y_bar[n, ., o] over n and positions: the *batch* n is the contracted
  dimension, so we hand XLA x as (features=N, H, W, batch=C_in) and y_bar as (in=N, H', W',
  out=C_out): dimension numbers ("CHWN", "IHWO", "HWNC"); the output is w_bar in HWIO directly.
  One convolution, never the N per-example kernel gradients.

  Backward  y_bar: (N, H', W', C_out)
            x_bar = input_grad(y_bar, w, s, d, x_pads)                       (N, H, W, C_in)
                  = conv(y_bar, w_t, strides 1, pads x_pads, lhs_dilation s, rhs_dilation d)
                    with w_t = flip(w, (0, 1)).swapaxes(2, 3)                 (kh, kw, C_out, C_in)
            w_bar = weight_grad(x, y_bar, s, d, w_pads)                      (kh, kw, C_in, C_out)
                  = conv(x, y_bar, strides d, pads w_pads, rhs_dilation s, ("CHWN", "IHWO", "HWNC"))
            b_bar = y_bar.sum((0, 1, 2))                                     (C_out,)
  with, per axis, x_pads, w_pads = grad_pads(...): (e - 1 - lo, e - 1 - hi + r) and (lo, hi - r).
  ``input_grad``, ``weight_grad`` and ``grad_pads`` are ``jaxback._conv_core``'s, shared with
  conv1d and conv_transpose2d (the same maths for any number of spatial axes).

Forward mode. y is bilinear in (x, w), plus b: move all three along tangents x_dot, w_dot, b_dot
and the product rule gives one term per input, each a convolution of the forward's own geometry:

  Tangent   x_dot: (N, H, W, C_in), w_dot: (kh, kw, C_in, C_out), b_dot: (C_out,)
            y_dot = conv(x_dot, w) + conv(x, w_dot) + b_dot                  (N, H', W', C_out)
  (``affine_jvp`` of ``_conv_core``, with product = conv(., ., s, pads, d)).

NOTE: "SAME" pads ``(H'-1) s + e - H`` zeros with H' = ceil(H / s), the smaller half on top/left
(``lax.padtype_to_pads``, TensorFlow's convention). x and w of different float dtypes are promoted
(like ``x @ w``); each cotangent is cast back to its primal's dtype.
Residuals: ``w`` and ``x`` (the inputs themselves; nothing of size N H' W' C_out is saved) and a
0-byte token of ``b``'s dtype.
NOTE (sharding): under a mesh with explicit axes w_bar (a sum over the sharded batch) is given w's
sharding (``weight_grad(..., like=w)``: ``out_sharding=cotangent_sharding(w)``, ``None``, the same
program, without such a mesh).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._init import lecun_normal
from ._layer import dtype_token, make_layer
from ._conv_core import (affine, affine_jvp, compiled, conv, grad_pads, input_grad, require_fits, require_inputs, spans,
                         weight_grad)
from ._windows import explicit_padding, pair

__all__ = ["Conv2dParams", "conv2d"]

NAME = "conv2d"


class Conv2dParams(NamedTuple):
    """``w``: (kh, kw, C_in, C_out) kernel (HWIO), ``b``: (C_out,) bias."""

    w: jax.Array
    b: jax.Array


def conv2d_init(key, kh: int, kw: int, c_in: int, c_out: int, dtype=jnp.float32) -> Conv2dParams:
    """LeCun normal: ``w ~ N(0, 1/fan_in)`` with ``fan_in = kh * kw * c_in``, ``b = 0``."""
    w = lecun_normal(key, (kh, kw, c_in, c_out), kh * kw * c_in, dtype)
    return Conv2dParams(w=w, b=jnp.zeros((c_out,), dtype))


def conv2d_infer(key, x, features: int, kernel_size=3):
    """For a model: ``(params, None)``, ``features`` output channels, a ``kernel_size`` (int or
    pair) kernel, ``c_in = x.shape[-1]`` (NHWC), in ``x``'s dtype."""
    kh, kw = pair(NAME, "kernel_size", kernel_size)
    return conv2d_init(key, kh, kw, x.shape[-1], features, x.dtype), None


# conv2d ---------------------------------------------------------------------------------------------------
def _check(params, x, stride, padding, dilation):
    """Validate, and return ``(s, d, pads)`` with pads ``((top, bottom), (left, right))``."""
    require_inputs(NAME, params, x, 2)
    return _geometry(params.w, x, stride, padding, dilation)


def _geometry(w, x, stride, padding, dilation):
    """``(s, d, pads)``: stride and dilation pairs, explicit paddings (checked to fit the kernel)."""
    s, d = pair(NAME, "stride", stride), pair(NAME, "dilation", dilation)
    span = spans(w.shape[:2], d)
    pads = explicit_padding(NAME, padding, x.shape[1:3], span, s)
    require_fits(NAME, x, x.shape[1:3], pads, span)
    return s, d, pads


def conv2d_auto(params: Conv2dParams, x: jax.Array, *, stride: int | tuple[int, int] = 1,
                padding: str | int | tuple = "SAME", dilation: int | tuple[int, int] = 1) -> jax.Array:
    """``y = conv(x, w) + b``; x: (N, H, W, C_in), w: (kh, kw, C_in, C_out) -> y: (N, H', W', C_out)."""
    s, d, pads = _check(params, x, stride, padding, dilation)
    return affine(lambda u, v: conv(u, v, s, pads, d), params, x)


def conv2d_fwd(params: Conv2dParams, x, *, stride=1, padding="SAME", dilation=1):
    y = conv2d_auto(params, x, stride=stride, padding=padding, dilation=dilation)
    return y, (params.w, dtype_token(params.b), x)


def conv2d_bwd(res, y_bar, *, stride=1, padding="SAME", dilation=1):
    w, b_dtype, x = res
    s, d, pads = _geometry(w, x, stride, padding, dilation)  # fwd validated the inputs
    x_pads, w_pads = grad_pads(x.shape[1:3], w.shape[:2], d, s, pads)
    x_bar = input_grad(y_bar, w, s, d, x_pads)            # (N, H, W, C_in)
    w_bar = weight_grad(x, y_bar, s, d, w_pads, like=w)   # (kh, kw, C_in, C_out)
    b_bar = y_bar.sum((0, 1, 2))
    params_bar = Conv2dParams(w_bar.astype(w.dtype), b_bar.astype(b_dtype.dtype))
    return params_bar, x_bar.astype(x.dtype)


def conv2d_jvp(primals, tangents, *, stride=1, padding="SAME", dilation=1):
    s, d, pads = _check(*primals, stride, padding, dilation)  # primals = (params, x)
    return affine_jvp(lambda u, v: conv(u, v, s, pads, d), primals, tangents)


conv2d = make_layer(conv2d_auto, conv2d_fwd, compiled(conv2d_bwd), name=NAME, init=conv2d_init, infer=conv2d_infer,
                    jvp=compiled(conv2d_jvp))
