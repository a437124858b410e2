"""conv_transpose2d: the transpose (adjoint) of conv2d, for upsampling decoders (NHWC, HWIO).

Shapes first. ``x``: (N, H, W, C_in), ``w``: (kh, kw, C_in, C_out) (HWIO, as conv2d: I is x's
channels), ``b``: (C_out,), ``y``: (N, H', W', C_out). A ``stride`` s and a ``padding`` (lo, hi)
per axis, both in the sense of the conv2d being transposed: that conv2d maps a (N, H', W', C_out)
input, padded (lo, hi), with stride s and the kernel ``K = w.swapaxes(2, 3)``: (kh, kw, C_out, C_in),
back to x's shape. So ``H' = (H - 1) s + kh - lo - hi`` ("VALID": lo = hi = 0), and "SAME" means
``H' = H s`` with conv2d's "SAME" pads for an H s input (TensorFlow's conv2d_transpose).

Write ``C`` for that conv2d as a linear map of its input, ``C u = conv2d(u; K, s, pads)`` (no bias).

  Forward   y = C^T x + b          C^T: conv2d's input gradient (``jaxback._conv``), i.e. a
            stride-1 correlation of the s-spread x with flip(K) channel-swapped = flip(w):
            y = input_grad(x, K, s, 1, x_pads) + b

Chain rule: this is conv2d's rule read backwards. y is linear in x, so x_bar = (C^T)^T y_bar =
C y_bar: conv2d's *forward* applied to y_bar. For the kernel, <y_bar, C_K^T x> = <C_K y_bar, x> is
the loss of a conv2d with input y_bar and output cotangent x, so K_bar is conv2d's *weight
gradient* with the roles of its input and cotangent played by y_bar and x:
K_bar[k, o, c] = sum_{n, i} y_bar[n, i s + k - lo, o] x[n, i, c] (K's layout), and w_bar is
K_bar with its channel axes swapped back. The bias is added per output entry: b_bar sums y_bar.

  Backward  y_bar: (N, H', W', C_out)
            x_bar = conv(y_bar, K, s, pads)                          conv2d's forward    (N, H, W, C_in)
            w_bar = weight_grad(y_bar, x, s, 1, w_pads).swapaxes(2, 3) conv2d's w_bar    (kh, kw, C_in, C_out)
            b_bar = y_bar.sum((0, 1, 2))                                                  (C_out,)
  with x_pads, w_pads = grad_pads((H', W'), (kh, kw), 1, s, pads) (``jaxback._conv_core``): where
  conv2d's input gradient pads the spread cotangent, this layer's forward pads the spread x.

Forward mode: y = C_K^T x + b is bilinear in (x, w), plus b, so the product rule gives one term
per input, each this layer's own forward product (``_conv_core.affine_jvp``):

  Tangent   x_dot: (N, H, W, C_in), w_dot: (kh, kw, C_in, C_out), b_dot: (C_out,)
            y_dot = C_K^T x_dot + C_{K_dot}^T x + b_dot              (N, H', W', C_out)
                  = input_grad(x_dot, K, ...) + input_grad(x, K_dot, ...) + b_dot,  K_dot = w_dot.swapaxes(2, 3)

NOTE: with "SAME" and a kernel smaller than the stride (k < s), conv2d's window misses the last
s - k rows of each stride ("leftover rows"), so those rows of y receive no x: y = b there. An
explicit padding must leave H' >= 1. x and w of different float dtypes are promoted; each
cotangent is cast back to its primal's dtype.
Residuals: ``w`` and ``x`` (the inputs themselves) and a 0-byte token of ``b``'s dtype.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._conv_core import affine, affine_jvp, compiled, conv, grad_pads, input_grad, require_inputs, weight_grad
from ._init import lecun_normal
from ._layer import dtype_token, make_layer
from ._validate import describe
from ._windows import explicit_padding, pair

__all__ = ["ConvTranspose2dParams", "conv_transpose2d"]

NAME = "conv_transpose2d"
_ONE = (1, 1)  # no kernel dilation


class ConvTranspose2dParams(NamedTuple):
    """``w``: (kh, kw, C_in, C_out) kernel (HWIO, I = x's channels), ``b``: (C_out,) bias."""

    w: jax.Array
    b: jax.Array


def conv_transpose2d_init(key, kh: int, kw: int, c_in: int, c_out: int, dtype=jnp.float32) -> ConvTranspose2dParams:
    """LeCun normal over what one output sums (about ``kh kw c_in / (sh sw)`` terms; the stride is
    not known here, so ``fan_in = kh * kw * c_in``, as flax), ``b = 0``."""
    w = lecun_normal(key, (kh, kw, c_in, c_out), kh * kw * c_in, dtype)
    return ConvTranspose2dParams(w=w, b=jnp.zeros((c_out,), dtype))


def conv_transpose2d_infer(key, x, features: int, kernel_size=3):
    """For a model: ``(params, None)``, ``features`` output channels, a ``kernel_size`` (int or
    pair) kernel, ``c_in = x.shape[-1]`` (NHWC), in ``x``'s dtype."""
    kh, kw = pair(NAME, "kernel_size", kernel_size)
    return conv_transpose2d_init(key, kh, kw, x.shape[-1], features, x.dtype), None


def _geometry(w, x, stride, padding):
    """``(s, pads, out_hw)``: stride, the transposed conv2d's paddings and y's spatial size."""
    s, k, hw = pair(NAME, "stride", stride), w.shape[:2], x.shape[1:3]
    if isinstance(padding, str) and padding == "SAME":
        out = tuple(h * si for h, si in zip(hw, s))
        return s, explicit_padding(NAME, padding, out, k, s), out
    pads = explicit_padding(NAME, padding, hw, k, s)  # "VALID": zeros
    out = tuple((h - 1) * si + ki - lo - hi for h, si, ki, (lo, hi) in zip(hw, s, k, pads))
    if any(o < 1 for o in out):
        raise ValueError(f"{NAME}: padding={pads} crops the whole output (x {describe(x)}, kernel {k}, stride {s}: "
                         f"H' = (H - 1) s + k - lo - hi = {out}); use less padding.")
    return s, pads, out


def _check(params, x, stride, padding):
    require_inputs(NAME, params, x, 2)
    return _geometry(params.w, x, stride, padding)


def _product(params, x, stride, padding):
    """The bilinear ``(x, w) -> C_K^T x`` (no bias) at this geometry, ``K = w.swapaxes(2, 3)``."""
    s, pads, out = _check(params, x, stride, padding)
    x_pads, _ = grad_pads(out, params.w.shape[:2], _ONE, s, pads)
    return lambda u, v: input_grad(u, v.swapaxes(2, 3), s, _ONE, x_pads)


def conv_transpose2d_auto(params: ConvTranspose2dParams, x: jax.Array, *, stride: int | tuple[int, int] = 1,
                          padding: str | int | tuple = "SAME") -> jax.Array:
    """``y = conv2d^T(x; w) + b``; x: (N, H, W, C_in), w: (kh, kw, C_in, C_out) -> y: (N, H', W', C_out)."""
    return affine(_product(params, x, stride, padding), params, x)


def conv_transpose2d_fwd(params: ConvTranspose2dParams, x, *, stride=1, padding="SAME"):
    y = conv_transpose2d_auto(params, x, stride=stride, padding=padding)
    return y, (params.w, dtype_token(params.b), x)


def conv_transpose2d_bwd(res, y_bar, *, stride=1, padding="SAME"):
    w, b_dtype, x = res
    s, pads, out = _geometry(w, x, stride, padding)  # fwd validated the inputs
    _, w_pads = grad_pads(out, w.shape[:2], _ONE, s, pads)
    x_bar = conv(y_bar, w.swapaxes(2, 3).astype(y_bar.dtype), s, pads, _ONE)  # conv2d's forward
    w_bar = weight_grad(y_bar, x.astype(y_bar.dtype), s, _ONE, w_pads).swapaxes(2, 3)  # conv2d's w_bar, roles swapped
    b_bar = y_bar.sum((0, 1, 2))
    return ConvTranspose2dParams(w_bar.astype(w.dtype), b_bar.astype(b_dtype.dtype)), x_bar.astype(x.dtype)


def conv_transpose2d_jvp(primals, tangents, *, stride=1, padding="SAME"):
    return affine_jvp(_product(*primals, stride, padding), primals, tangents)  # primals = (params, x)


_HYPER = ("stride", "padding")
conv_transpose2d = make_layer(conv_transpose2d_auto, conv_transpose2d_fwd, compiled(conv_transpose2d_bwd, _HYPER),
                              name=NAME, init=conv_transpose2d_init, infer=conv_transpose2d_infer,
                              jvp=compiled(conv_transpose2d_jvp, _HYPER))
