"""Registry entry for conv_transpose2d (``ENTRIES``, loaded by ``_builtin.builtin_registry()``).

NHWC shapes, the first with a batch of 2; settings: strides 1, 2 and (3, 2), "SAME" (also with a
kernel smaller than the stride: leftover rows), "VALID", an int and explicit pairs.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._conv_transpose import ConvTranspose2dParams, _geometry, conv_transpose2d, conv_transpose2d_bwd
from .._conv_core import conv
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from ._tangent_edits import flipped_kernel, tangent_at, with_tangents, zeroed
from .strategies import values

__all__ = ["ENTRIES"]

SHAPES = ((2, 3, 4, 3), (1, 2, 2, 2), (1, 4, 3, 1))
_KERNELS = {(2, 3, 4, 3): (2, 3), (1, 2, 2, 2): (3, 3), (1, 4, 3, 1): (1, 1)}


def _f64(a):
    return np.asarray(a, np.float64)


def _equal(actual, expected):
    np.testing.assert_allclose(_f64(actual), _f64(expected), rtol=1e-6, atol=1e-12)


def _args(rng, dtype, shape, kind):
    kh, kw = _KERNELS.get(tuple(shape), (3, 3))
    c_in, c_out = shape[-1], 2
    w = rng.standard_normal((kh, kw, c_in, c_out)) / math.sqrt(kh * kw * c_in)
    params = ConvTranspose2dParams(jnp.asarray(w, dtype), jnp.asarray(rng.standard_normal(c_out), dtype))
    return params, jnp.asarray(values(rng, shape, kind), dtype)


def _mutant(edit):
    """The true rule with one cotangent edited: ``edit(res, y_bar, hyper, params_bar, x_bar)``."""

    def bwd(res, y_bar, **hyper):
        return edit(res, y_bar, hyper, *conv_transpose2d_bwd(res, y_bar, **hyper))

    return bwd


def _flipped_x_bar(res, y_bar, hyper, params_bar, x_bar):
    """x_bar through the spatially flipped kernel (a convolution, not conv2d's correlation)."""
    w, b_dtype, x = res
    return params_bar, conv_transpose2d_bwd((jnp.flip(w, (0, 1)), b_dtype, x), y_bar, **hyper)[1]


def _unswapped_x_bar(res, y_bar, hyper, params_bar, x_bar):
    """x_bar from w read as (kh, kw, C_out, C_in) by reshaping instead of swapping the channel axes."""
    w, _, x = res
    s, pads, _ = _geometry(w, x, **{"stride": 1, "padding": "SAME", **hyper})
    k = w.reshape(*w.shape[:2], w.shape[3], w.shape[2])
    return params_bar, conv(y_bar, k, s, pads, (1, 1)).astype(x.dtype)


def _first_example_w_bar(res, y_bar, hyper, params_bar, x_bar):
    w, b_dtype, x = res
    first = conv_transpose2d_bwd((w, b_dtype, x[:1]), y_bar[:1], **hyper)[0]
    return ConvTranspose2dParams(first.w, params_bar.b), x_bar


_W1 = ConvTranspose2dParams(jnp.asarray(np.arange(6.0).reshape(1, 1, 2, 3) / 6), jnp.asarray([0.5, -1.0, 2.0]))
_X1 = jnp.asarray(np.arange(24.0).reshape(2, 3, 2, 2) / 24 - 0.5)


def _one_by_one_check(y, cots):
    w, x = _f64(_W1.w[0, 0]), _f64(_X1).reshape(-1, 2)
    _equal(y, (x @ w + _f64(_W1.b)).reshape(2, 3, 2, 3))
    _equal(cots[1], np.ones((2, 3, 2, 3)) @ w.T)
    _equal(cots[0].w[0, 0], x.T @ np.ones((12, 3)))


def _stride_gaps_check(y, cots):
    """k = 1 < s = 2, SAME: y = w x + b at even positions and y = b at odd ones; x_bar = w."""
    y = _f64(y)[0, :, :, 0]
    assert y.shape == (4, 4), y.shape
    _equal(y[::2, ::2], 2.0 * np.arange(1.0, 5.0).reshape(2, 2) + 0.5)
    _equal(y[1::2, :], 0.5)
    _equal(y[:, 1::2], 0.5)
    _equal(cots[1], 2.0)


def _sizes_check(y, cots):
    assert y.shape == (1, 6, 8, 2), y.shape  # "SAME": H' = H s


_W = ConvTranspose2dParams(jnp.ones((3, 3, 4, 8)), jnp.zeros(8))

CONV_TRANSPOSE2D = LayerInfo(
    conv_transpose2d, _args, SHAPES,
    hypers=({}, {"stride": 2}, {"padding": "VALID", "stride": 2}, {"padding": 1, "stride": 2},
            {"padding": ((1, 0), (0, 1)), "stride": (3, 2)}, {"stride": 3}),
    value_kinds=("wide", "ties", "extreme"),
    edge_cases=(
        EdgeCase("1x1 kernel", lambda dt: (ConvTranspose2dParams(_W1.w.astype(dt), _W1.b.astype(dt)), _X1.astype(dt)),
                 "stride 1, a 1x1 kernel is linear on each pixel: y = x @ w[0, 0] + b, the cotangents linear's",
                 _one_by_one_check),
        EdgeCase("kernel smaller than the stride",
                 lambda dt: (ConvTranspose2dParams(jnp.full((1, 1, 1, 1), 2.0, dt), jnp.full(1, 0.5, dt)),
                             jnp.arange(1.0, 5.0, dtype=dt).reshape(1, 2, 2, 1)),
                 "k = 1, stride 2, SAME: x lands on every other row and column; y = b on the rows between",
                 _stride_gaps_check, {"stride": 2}),
        EdgeCase("SAME output size", lambda dt: (ConvTranspose2dParams(jnp.ones((3, 3, 1, 2), dt), jnp.zeros(2, dt)),
                                                 jnp.ones((1, 3, 4, 1), dt)),
                 "SAME, stride 2: y is (1, 6, 8, 2), H' = H s as TensorFlow's conv2d_transpose", _sizes_check,
                 {"stride": 2}),
    ),
    error_cases=(
        ErrorCase("channel mismatch", lambda: (_W, jnp.ones((2, 4, 4, 3))), ValueError,
                  r"conv_transpose2d: x.shape\[-1\] must equal w.shape\[2\] \(input channels\)"),
        ErrorCase("rank of x", lambda: (_W, jnp.ones((4, 4, 4))), ValueError,
                  r"conv_transpose2d: x must have exactly 4 dim.*NHWC"),
        ErrorCase("integer x", lambda: (_W, jnp.ones((1, 4, 4, 4), jnp.int32)), TypeError,
                  r"conv_transpose2d: x must be a floating-point array"),
        ErrorCase("stride 0", lambda: (_W, jnp.ones((1, 4, 4, 4))), ValueError,
                  r"conv_transpose2d: stride must be a positive int or a pair", {"stride": 0}),
        ErrorCase("padding crops everything", lambda: (_W, jnp.ones((1, 1, 1, 4))), ValueError,
                  r"conv_transpose2d: padding=\(\(2, 2\), \(2, 2\)\) crops the whole output", {"padding": 2}),
        ErrorCase("bias size", lambda: (ConvTranspose2dParams(_W.w, jnp.zeros(4)), jnp.ones((1, 4, 4, 4))), ValueError,
                  r"conv_transpose2d: b must have shape \(w.shape\[3\],\) = \(8,\)"),
    ),
    mutants=(
        Mutant("x_bar through the flipped kernel", _mutant(_flipped_x_bar)),
        Mutant("x_bar with the channel axes reshaped, not swapped", _mutant(_unswapped_x_bar)),
        Mutant("w_bar from the first example only (no sum over the batch)", _mutant(_first_example_w_bar)),
        Mutant("b_bar mean instead of sum", _mutant(
            lambda res, g, hyper, pb, xb: (ConvTranspose2dParams(pb.w, g.mean((0, 1, 2))), xb))),
        Mutant("jvp: the w_dot term dropped", jvp=with_tangents(conv_transpose2d.jvp, zeroed("w"))),
        Mutant("jvp: the tangent through the flipped kernel", jvp=tangent_at(conv_transpose2d.jvp, flipped_kernel)),
    ),
)

ENTRIES = (CONV_TRANSPOSE2D,)
