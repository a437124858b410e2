"""Registry entry for conv1d (``ENTRIES``, loaded by ``_builtin.builtin_registry()``).

Shapes are NWC and tiny; the first has a batch of 2 (a rule that forgets the batch sum is caught).
The settings cover strides 1, 2 and 3, "SAME", "VALID", an int and an explicit (lo, hi), dilation 2
and leftover positions (the floor in W' = (W + pads - span) // s + 1 drops some).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._conv1d import Conv1dParams, _geometry, conv1d, conv1d_bwd
from .._conv_core import input_grad
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from ._tangent_edits import flipped_kernel, tangent_at, with_tangents, zeroed
from .strategies import values

__all__ = ["ENTRIES"]

SHAPES = ((2, 7, 3), (1, 6, 2), (1, 4, 1))
_KERNELS = {(2, 7, 3): 3, (1, 6, 2): 2, (1, 4, 1): 1}


def _f64(a):
    return np.asarray(a, np.float64)


def _args(rng, dtype, shape, kind):
    k, c_in, c_out = _KERNELS.get(tuple(shape), min(3, shape[1])), shape[-1], 2
    w = rng.standard_normal((k, c_in, c_out)) / math.sqrt(k * c_in)  # LeCun scale
    params = Conv1dParams(jnp.asarray(w, dtype), jnp.asarray(rng.standard_normal(c_out), dtype))
    return params, jnp.asarray(values(rng, shape, kind), dtype)


def _mutant(edit):
    """The true rule with one cotangent edited: ``edit(res, y_bar, hyper, params_bar, x_bar)``."""

    def bwd(res, y_bar, **hyper):
        return edit(res, y_bar, hyper, *conv1d_bwd(res, y_bar, **hyper))

    return bwd


def _unflipped(res, y_bar, hyper, params_bar, x_bar):
    """The rule run on the reversed kernel: its x_bar correlates with w itself, unflipped."""
    w, b_dtype, x = res
    return params_bar, conv1d_bwd((jnp.flip(w, 0), b_dtype, x), y_bar, **hyper)[1]


def _first_example_w_bar(res, y_bar, hyper, params_bar, x_bar):
    w, b_dtype, x = res
    first = conv1d_bwd((w, b_dtype, x[:1]), y_bar[:1], **hyper)[0]
    return Conv1dParams(first.w, params_bar.b), x_bar


def _no_leftover(res, y_bar, hyper, params_bar, x_bar):
    """x_bar padded as if (W + pads - span) were divisible by the stride: r positions too short."""
    w, _, x = res
    s, d, ((lo, hi),) = _geometry(w, x, **{"stride": 1, "padding": "SAME", "dilation": 1, **hyper})
    e = (w.shape[0] - 1) * d[0] + 1
    return params_bar, input_grad(y_bar, w, s, d, ((e - 1 - lo, e - 1 - hi),))


_W1 = Conv1dParams(jnp.asarray(np.arange(6.0).reshape(1, 2, 3) / 6), jnp.asarray([0.5, -1.0, 2.0]))
_X1 = jnp.asarray(np.arange(12.0).reshape(2, 3, 2) / 12 - 0.5)


def _equal(actual, expected):
    np.testing.assert_allclose(_f64(actual), _f64(expected), rtol=1e-6, atol=1e-12)


def _one_tap_check(y, cots):
    w, x = _f64(_W1.w[0]), _f64(_X1).reshape(-1, 2)
    _equal(y, (x @ w + _f64(_W1.b)).reshape(2, 3, 3))
    _equal(cots[1], np.ones((2, 3, 3)) @ w.T)
    _equal(cots[0].w[0], x.T @ np.ones((6, 3)))
    _equal(cots[0].b, [6.0, 6.0, 6.0])


def _leftover_check(y, cots):
    x_bar = _f64(cots[1])[0, :, 0]
    assert y.shape == (1, 2, 1), y.shape
    np.testing.assert_array_equal(x_bar[5], 0.0)  # position 5 lies in no window: exactly zero gradient
    assert np.all(x_bar[:5] != 0), x_bar


def _empty_check(y, cots):
    assert y.shape == (0, 5, 3), y.shape
    np.testing.assert_array_equal(_f64(cots[0].w), 0.0)
    np.testing.assert_array_equal(_f64(cots[0].b), 0.0)


_W = Conv1dParams(jnp.ones((3, 4, 8)), jnp.zeros(8))

CONV1D = LayerInfo(
    conv1d, _args, SHAPES,
    hypers=({}, {"stride": 2}, {"padding": "VALID"}, {"padding": 1, "stride": 2}, {"padding": (2, 0), "stride": 3},
            {"dilation": 2}, {"stride": 2, "padding": "VALID", "dilation": 2}),
    value_kinds=("wide", "ties", "extreme"),
    edge_cases=(
        EdgeCase("one-tap kernel", lambda dt: (Conv1dParams(_W1.w.astype(dt), _W1.b.astype(dt)), _X1.astype(dt)),
                 "k = 1 is linear on each position: y = x @ w[0] + b and the cotangents are linear's", _one_tap_check),
        EdgeCase("leftover positions", lambda dt: (Conv1dParams(jnp.ones((3, 1, 1), dt), jnp.zeros(1, dt)),
                                                   jnp.ones((1, 6, 1), dt)),
                 "stride 2, VALID, k = 3 on W = 6: position 5 is read by no window; x_bar is 0 there",
                 _leftover_check, {"stride": 2, "padding": "VALID"}),
        EdgeCase("empty batch", lambda dt: (Conv1dParams(jnp.ones((3, 2, 3), dt), jnp.zeros(3, dt)),
                                            jnp.zeros((0, 5, 2), dt)),
                 "y has shape (0, 5, 3); w_bar and b_bar are exact zeros", _empty_check),
    ),
    error_cases=(
        ErrorCase("channel mismatch", lambda: (_W, jnp.ones((2, 8, 3))), ValueError,
                  r"conv1d: x.shape\[-1\] must equal w.shape\[1\] \(input channels\); got x shape=\(2, 8, 3\)"),
        ErrorCase("rank of x", lambda: (_W, jnp.ones((2, 8, 8, 4))), ValueError, r"conv1d: x must have exactly 3 dim.*NWC"),
        ErrorCase("rank of w", lambda: (Conv1dParams(jnp.ones((3, 3, 4, 8)), jnp.zeros(8)), jnp.ones((2, 8, 4))),
                  ValueError, r"conv1d: params.w must have exactly 3 dim.*WIO"),
        ErrorCase("integer x", lambda: (_W, jnp.ones((1, 8, 4), jnp.int32)), TypeError,
                  r"conv1d: x must be a floating-point array"),
        ErrorCase("stride 0", lambda: (_W, jnp.ones((1, 8, 4))), ValueError,
                  r"conv1d: stride must be a positive int; got stride=0", {"stride": 0}),
        ErrorCase("2-D padding", lambda: (_W, jnp.ones((1, 8, 4))), ValueError,
                  r'conv1d: padding must be "SAME", "VALID", a non-negative int or \(lo, hi\)',
                  {"padding": ((1, 1), (1, 1))}),
        ErrorCase("kernel larger than input", lambda: (_W, jnp.ones((1, 2, 4))), ValueError,
                  r"conv1d: the dilated kernel spans 3, more than the padded input", {"padding": "VALID"}),
        ErrorCase("bias size", lambda: (Conv1dParams(_W.w, jnp.zeros(4)), jnp.ones((1, 8, 4))), ValueError,
                  r"conv1d: b must have shape \(w.shape\[2\],\) = \(8,\)"),
    ),
    mutants=(
        Mutant("kernel not flipped in x_bar", _mutant(_unflipped)),
        Mutant("w_bar from the first example only (no sum over the batch)", _mutant(_first_example_w_bar)),
        Mutant("b_bar mean instead of sum", _mutant(lambda res, g, hyper, pb, xb: (Conv1dParams(pb.w, g.mean((0, 1))), xb))),
        Mutant("x_bar padding ignores the leftover positions", _mutant(_no_leftover)),
        Mutant("jvp: the conv(x, w_dot) term dropped", jvp=with_tangents(conv1d.jvp, zeroed("w"))),
        Mutant("jvp: the tangent through the flipped kernel", jvp=tangent_at(conv1d.jvp, flipped_kernel)),
    ),
)

ENTRIES = (CONV1D,)
