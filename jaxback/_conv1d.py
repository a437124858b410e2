"""conv1d: a 1-D convolution (cross-correlation) over sequences, NWC inputs and WIO kernels.

Shapes first. ``x``: (N, W, C_in), ``w``: (k, C_in, C_out), ``b``: (C_out,), ``y``: (N, W', C_out).
A ``stride`` s, a kernel ``dilation`` d and a ``padding`` (lo, hi) of zeros: the dilated kernel
spans ``e = (k - 1) d + 1`` positions, ``W' = (W + lo + hi - e) // s + 1``, and the floor leaves
``r = (W + lo + hi - e) % s`` "leftover" positions at the end that no window reaches.

With ``xp[t] = x[t - lo]`` (zero outside 0..W-1), per example:

  Forward   y[i, o] = sum_{k, c} xp[i*s + k*d, c] w[k, c, o] + b[o]             i = 0..W'-1

Chain rule with ``y_bar = dL/dy``: dL/du = sum_{i, o} y_bar[i, o] dy[i, o]/du.

* ``dy[i, o]/dx[j, c] = w[k, c, o]`` exactly when ``j = i*s + k*d - lo``, so
  x_bar[j, c] = sum over (i, k) with i*s + k*d = j + lo, and over o, of y_bar[i, o] w[k, c, o].
  Spread y_bar by the stride (``z[i*s] = y_bar[i]``, zeros between) and the condition is z's
  index: with the flipped kernel ``wf[m] = w[K - 1 - m]`` it is a stride-1 correlation of z
  padded ``(e - 1 - lo, e - 1 - hi + r)`` (so that x_bar has W entries; the r leftover positions
  get zeros), the kernel dilated by d and its channel axes swapped (C_out in, C_in out).
* ``dy[i, o]/dw[k, c, o] = xp[i*s + k*d, c]``, so w_bar[k, c, o] = sum_{n, i} xp[n, i*s + k*d, c]
  y_bar[n, i, o]: a correlation of xp with y_bar whose taps are s apart and outputs d apart,
  padded (lo, hi - r), contracting the batch n (x read as features=N, y_bar as in=N).
* ``dy[i, o]/db[o] = 1``, so b_bar = sum over n and i of y_bar.

This is conv2d's derivation (``jaxback._conv``) with one spatial axis; the two backward
convolutions are shared with it through ``jaxback._conv_core``.

  Backward  y_bar: (N, W', C_out)
            x_bar = input_grad(y_bar, w, s, d, x_pads)    conv(spread_s(y_bar), flip(w).swap(I, O))  (N, W, C_in)
            w_bar = weight_grad(x, y_bar, s, d, w_pads)   ("CWN", "IWO", "WNC"): batch contracted   (k, C_in, C_out)
            b_bar = y_bar.sum((0, 1))                                                            (C_out,)
  with x_pads = (e - 1 - lo, e - 1 - hi + r) and w_pads = (lo, hi - r).

Forward mode: y is bilinear in (x, w), plus b, so the product rule gives one convolution per input:

  Tangent   x_dot: (N, W, C_in), w_dot: (k, C_in, C_out), b_dot: (C_out,)
            y_dot = conv(x_dot, w) + conv(x, w_dot) + b_dot     (N, W', C_out)   (``_conv_core.affine_jvp``)

NOTE: "SAME" pads ``(W'-1) s + e - W`` zeros with W' = ceil(W / s), the smaller half first
(``lax.padtype_to_pads``, TensorFlow's convention); an int p pads (p, p). x and w of different
float dtypes are promoted; each cotangent is cast back to its primal's dtype.
Residuals: ``w`` and ``x`` (the inputs themselves) and a 0-byte token of ``b``'s dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._conv_core import (affine, affine_jvp, compiled, conv, grad_pads, input_grad, require_fits, require_inputs, spans,
                         weight_grad)
from ._init import lecun_normal
from ._layer import dtype_token, make_layer
from ._windows import is_int

__all__ = ["Conv1dParams", "conv1d"]

NAME = "conv1d"


class Conv1dParams(NamedTuple):
    """``w``: (k, C_in, C_out) kernel (WIO), ``b``: (C_out,) bias."""

    w: jax.Array
    b: jax.Array


def conv1d_init(key, k: int, c_in: int, c_out: int, dtype=jnp.float32) -> Conv1dParams:
    """LeCun normal: ``w ~ N(0, 1/fan_in)`` with ``fan_in = k * c_in``, ``b = 0``."""
    return Conv1dParams(lecun_normal(key, (k, c_in, c_out), k * c_in, dtype), jnp.zeros((c_out,), dtype))


def conv1d_infer(key, x, features: int, kernel_size: int = 3):
    """For a model: ``(params, None)``, ``features`` output channels, a ``kernel_size`` kernel,
    ``c_in = x.shape[-1]`` (NWC), in ``x``'s dtype."""
    return conv1d_init(key, _positive("kernel_size", kernel_size)[0], x.shape[-1], features, x.dtype), None


def _positive(arg, value) -> tuple:
    if not (is_int(value) and value >= 1):
        raise ValueError(f"{NAME}: {arg} must be a positive int; got {arg}={value!r}.")
    return (value,)


def _padding(padding, size: int, span: int, s: tuple) -> tuple:
    """``((lo, hi),)`` from "SAME" | "VALID" | a non-negative int | (lo, hi)."""
    if isinstance(padding, str) and padding in ("SAME", "VALID"):
        return tuple(lax.padtype_to_pads((size,), (span,), s, padding))
    if is_int(padding) and padding >= 0:
        return ((padding, padding),)
    if isinstance(padding, tuple) and len(padding) == 2 and all(is_int(p) and p >= 0 for p in padding):
        return (padding,)
    raise ValueError(f'{NAME}: padding must be "SAME", "VALID", a non-negative int or (lo, hi) of non-negative '
                     f"ints; got padding={padding!r}.")


def _geometry(w, x, stride, padding, dilation):
    """``(s, d, pads)`` as 1-tuples (``pads = ((lo, hi),)``), checked to fit the kernel."""
    s, d = _positive("stride", stride), _positive("dilation", dilation)
    span = spans(w.shape[:1], d)
    pads = _padding(padding, x.shape[1], span[0], s)
    require_fits(NAME, x, x.shape[1:2], pads, span)
    return s, d, pads


def _check(params, x, stride, padding, dilation):
    require_inputs(NAME, params, x, 1)
    return _geometry(params.w, x, stride, padding, dilation)


def conv1d_auto(params: Conv1dParams, x: jax.Array, *, stride: int = 1, padding: str | int | tuple = "SAME",
                dilation: int = 1) -> jax.Array:
    """``y = conv(x, w) + b``; x: (N, W, C_in), w: (k, C_in, C_out) -> y: (N, W', C_out)."""
    s, d, pads = _check(params, x, stride, padding, dilation)
    return affine(lambda u, v: conv(u, v, s, pads, d), params, x)


def conv1d_fwd(params: Conv1dParams, x, *, stride=1, padding="SAME", dilation=1):
    y = conv1d_auto(params, x, stride=stride, padding=padding, dilation=dilation)
    return y, (params.w, dtype_token(params.b), x)


def conv1d_bwd(res, y_bar, *, stride=1, padding="SAME", dilation=1):
    w, b_dtype, x = res
    s, d, pads = _geometry(w, x, stride, padding, dilation)  # fwd validated the inputs
    x_pads, w_pads = grad_pads(x.shape[1:2], w.shape[:1], d, s, pads)
    x_bar = input_grad(y_bar, w, s, d, x_pads)  # (N, W, C_in)
    w_bar = weight_grad(x, y_bar, s, d, w_pads, like=w)  # (k, C_in, C_out)
    b_bar = y_bar.sum((0, 1))
    return Conv1dParams(w_bar.astype(w.dtype), b_bar.astype(b_dtype.dtype)), x_bar.astype(x.dtype)


def conv1d_jvp(primals, tangents, *, stride=1, padding="SAME", dilation=1):
    s, d, pads = _check(*primals, stride, padding, dilation)  # primals = (params, x)
    return affine_jvp(lambda u, v: conv(u, v, s, pads, d), primals, tangents)


conv1d = make_layer(conv1d_auto, conv1d_fwd, compiled(conv1d_bwd), name=NAME, init=conv1d_init, infer=conv1d_infer,
                    jvp=compiled(conv1d_jvp))
