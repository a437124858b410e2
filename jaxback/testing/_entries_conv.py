"""Registry entries for the convolution family: conv2d, max_pool2d, avg_pool2d, flatten.

Shapes are NHWC and tiny (each compiles once). The first shape has a batch of 2, so a rule that
forgets the sum over the batch is caught; the hyperparameters cover strides 1, 2 and (3, 2), "SAME",
"VALID", an int and explicit pairs, dilations 2 and (1, 2), leftover rows (the floor in
H' = (H + pads - span) // s + 1 drops some) and overlapping pool windows (window 3, stride 2).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from jax import lax

from .. import _pooling as pool
from .._conv import Conv2dParams, _geometry, conv2d, conv2d_bwd
from .._conv_core import input_grad
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from ._tangent_edits import flipped_kernel, tangent_at, with_tangents, zeroed
from .strategies import values

INF = math.inf
SHAPES = ((2, 6, 7, 3), (1, 5, 5, 2), (1, 4, 3, 1))
_KERNELS = {(2, 6, 7, 3): (2, 3), (1, 5, 5, 2): (3, 3), (1, 4, 3, 1): (1, 1)}  # (kh, kw) per x shape


def _equal(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=1e-6, atol=1e-12)


def _x(rng, dtype, shape, kind):
    return (jnp.asarray(values(rng, shape, kind), dtype),)


def _separated_x(rng, dtype, shape, kind):
    """Like ``_x``, but "normal" values are distinct and at least ~1/size apart.

    Finite differences (step 1e-4) straddle max-pool's kink wherever two entries of a window lie
    within a step of each other; with random normals that happens in ~20 % of samples. Ties and
    near-ties are covered by the other value kinds and the edge cases, checked against autodiff.
    """
    if kind != "normal":
        return _x(rng, dtype, shape, kind)
    size = math.prod(shape)
    grid = rng.permutation(size).reshape(shape) * (4.0 / max(size, 1)) - 2.0
    return (jnp.asarray(grid + rng.uniform(-0.1, 0.1, shape) / max(size, 1), dtype),)


def _img(rows, dt):
    """A (1, H, W, 1) image from nested lists."""
    return jnp.asarray(rows, dt)[None, :, :, None]


# conv2d ---------------------------------------------------------------------------------------------
def _conv_args(rng, dtype, shape, kind):
    kh, kw = _KERNELS.get(tuple(shape), (min(3, shape[1]), min(3, shape[2])))
    c_in, c_out = shape[-1], 3
    w = rng.standard_normal((kh, kw, c_in, c_out)) / math.sqrt(kh * kw * c_in)  # LeCun scale
    params = Conv2dParams(jnp.asarray(w, dtype), jnp.asarray(rng.standard_normal(c_out), dtype))
    return params, jnp.asarray(values(rng, shape, kind), dtype)


def _conv_mutant(edit):
    """The true conv2d rule with one cotangent edited: ``edit(res, y_bar, hyper, params_bar, x_bar)``."""

    def bwd(res, y_bar, **hyper):
        return edit(res, y_bar, hyper, *conv2d_bwd(res, y_bar, **hyper))

    return bwd


def _unflipped(res, y_bar, hyper, params_bar, x_bar):
    """Run the rule on the flipped kernel: its x_bar then correlates with w itself, unflipped."""
    w, b_dtype, x = res
    return params_bar, conv2d_bwd((jnp.flip(w, (0, 1)), b_dtype, x), y_bar, **hyper)[1]


def _first_example_w_bar(res, y_bar, hyper, params_bar, x_bar):
    w, b_dtype, x = res
    first = conv2d_bwd((w, b_dtype, x[:1]), y_bar[:1], **hyper)[0]
    return Conv2dParams(first.w, params_bar.b), x_bar


def _no_leftover(res, y_bar, hyper, params_bar, x_bar):
    """x_bar padded as if (H + pads - span) were divisible by the stride: r rows too short."""
    w, _, x = res
    s, d, pads = _geometry(w, x, **{"stride": 1, "padding": "SAME", "dilation": 1, **hyper})
    x_pads = tuple(((k - 1) * di - lo, (k - 1) * di - hi) for k, di, (lo, hi) in zip(w.shape[:2], d, pads))
    return params_bar, input_grad(y_bar, w, s, d, x_pads)


_W = Conv2dParams(jnp.ones((3, 3, 4, 16)), jnp.zeros(16))
_W1 = Conv2dParams(jnp.asarray(np.arange(6.0).reshape(1, 1, 2, 3) / 6), jnp.asarray([0.5, -1.0, 2.0]))
_X1 = jnp.asarray(np.arange(24.0).reshape(2, 3, 2, 2) / 24 - 0.5)


def _one_by_one_check(y, cots):
    w = np.asarray(_W1.w[0, 0])
    x = np.asarray(_X1).reshape(-1, 2)
    _equal(y, (x @ w + np.asarray(_W1.b)).reshape(2, 3, 2, 3))
    _equal(cots[1], np.ones((2, 3, 2, 3)) @ w.T)
    _equal(cots[0].w[0, 0], x.T @ np.ones((12, 3)))
    _equal(cots[0].b, [12.0, 12.0, 12.0])


def _leftover_check(y, cots):
    x_bar = np.asarray(cots[1])[0, :, :, 0]
    assert y.shape == (1, 2, 2, 1)
    _equal(x_bar[5, :], 0)  # row 5 and column 5 lie in no window: exactly zero gradient
    _equal(x_bar[:, 5], 0)
    assert np.all(x_bar[:5, :5] != 0)


CONV2D = LayerInfo(
    conv2d, _conv_args, SHAPES, bench_shape=(8, 32, 32, 16),
    hypers=({}, {"stride": 2}, {"padding": "VALID"}, {"padding": 1, "stride": 2},
            {"padding": ((2, 0), (1, 2)), "stride": (3, 2)}, {"dilation": 2},
            {"stride": 2, "padding": "VALID", "dilation": (1, 2)}),
    value_kinds=("wide", "ties", "extreme"),
    edge_cases=(
        EdgeCase("1x1 kernel", lambda dt: (Conv2dParams(_W1.w.astype(dt), _W1.b.astype(dt)), _X1.astype(dt)),
                 "a 1x1 convolution is linear on each pixel: y = x @ w[0, 0] + b and the cotangents are linear's",
                 _one_by_one_check),
        EdgeCase("leftover rows", lambda dt: (Conv2dParams(jnp.ones((3, 3, 1, 1), dt), jnp.zeros(1, dt)),
                                              jnp.ones((1, 6, 6, 1), dt)),
                 "stride 2, VALID, 3x3 on 6x6: the last row and column are read by no window; x_bar is 0 there",
                 _leftover_check, {"stride": 2, "padding": "VALID"}),
        EdgeCase("empty batch", lambda dt: (Conv2dParams(jnp.ones((3, 3, 2, 3), dt), jnp.zeros(3, dt)),
                                            jnp.zeros((0, 5, 5, 2), dt)),
                 "y has shape (0, 5, 5, 3); w_bar and b_bar are exact zeros",
                 lambda y, cots: (_equal(cots[0].w, 0), _equal(cots[0].b, 0))),
    ),
    error_cases=(
        ErrorCase("channel mismatch", lambda: (_W, jnp.ones((2, 8, 8, 3))), ValueError,
                  r"conv2d: x.shape\[-1\] must equal w.shape\[2\] \(input channels\); got x shape=\(2, 8, 8, 3\) "
                  r"dtype=float\d+, w shape=\(3, 3, 4, 16\)"),
        ErrorCase("rank of x", lambda: (_W, jnp.ones((8, 8, 4))), ValueError, r"conv2d: x must have exactly 4 dim.*NHWC"),
        ErrorCase("integer x", lambda: (_W, jnp.ones((1, 8, 8, 4), jnp.int32)), TypeError,
                  r"conv2d: x must be a floating-point array"),
        ErrorCase("stride 0", lambda: (_W, jnp.ones((1, 8, 8, 4))), ValueError,
                  r"conv2d: stride must be a positive int or a pair of positive ints; got stride=0", {"stride": 0}),
        ErrorCase("unknown padding", lambda: (_W, jnp.ones((1, 8, 8, 4))), ValueError,
                  r'conv2d: padding must be "SAME", "VALID"', {"padding": "FULL"}),
        ErrorCase("padding as a list", lambda: (_W, jnp.ones((1, 8, 8, 4))), TypeError,
                  r"conv2d: hyperparameters must be hashable", {"padding": [[1, 1], [1, 1]]}),
        ErrorCase("kernel larger than input", lambda: (_W, jnp.ones((1, 2, 8, 4))), ValueError,
                  r"conv2d: the dilated kernel spans 3x3, more than the padded input", {"padding": "VALID"}),
        ErrorCase("bias size", lambda: (Conv2dParams(_W.w, jnp.zeros(4)), jnp.ones((1, 8, 8, 4))), ValueError,
                  r"conv2d: b must have shape \(w.shape\[3\],\) = \(16,\)"),
    ),
    mutants=(
        Mutant("kernel not flipped in x_bar", _conv_mutant(_unflipped)),
        Mutant("w_bar from the first example only (no sum over the batch)", _conv_mutant(_first_example_w_bar)),
        Mutant("b_bar mean instead of sum", _conv_mutant(
            lambda res, g, hyper, pb, xb: (Conv2dParams(pb.w, g.mean((0, 1, 2))), xb))),
        Mutant("x_bar padding ignores the leftover rows", _conv_mutant(_no_leftover)),
        Mutant("jvp: the conv(x, w_dot) term dropped", jvp=with_tangents(conv2d.jvp, zeroed("w"))),
        Mutant("jvp: b_dot dropped", jvp=with_tangents(conv2d.jvp, zeroed("b"))),
        Mutant("jvp: the tangent through the flipped kernel", jvp=tangent_at(conv2d.jvp, flipped_kernel)),
    ),
)


# pooling ----------------------------------------------------------------------------------------------
POOL_HYPERS = ({"window": 3, "stride": 2}, {}, {"padding": "SAME"},
               {"window": (2, 3), "stride": (1, 2), "padding": ((1, 0), (0, 2))},
               {"window": 3, "stride": 2, "padding": 1})


def _pool_parts_mutant(name, parts_of, accumulate=True, crop_offset=True):
    """A pooling rule built from ``_pooling``'s pieces with one step changed.

    ``parts_of(xp, y_bar, k, s) -> list`` gives each window offset's share of y_bar; with
    ``accumulate=False`` a later window overwrites an earlier one instead of adding to it; with
    ``crop_offset=False`` the padding is cropped from the wrong (bottom/right) side.
    """

    def bwd(res, y_bar, **hyper):
        shape = res.shape
        k, s, pads = pool._geometry(name, shape, **{"window": 2, "stride": 2, "padding": "VALID", **hyper})
        xp = pool._pad(res, -INF, pads) if name == "max_pool2d" else None
        padded = tuple(h + lo + hi for h, (lo, hi) in zip(shape[1:3], pads))
        total = jnp.zeros((shape[0], *padded, shape[3]), y_bar.dtype)
        for part, (a, c) in zip(parts_of(xp, y_bar, k, s), pool._offsets(k)):
            placed = pool._place(part, a, c, s, padded)
            total = total + placed if accumulate else jnp.where(placed != 0, placed, total)
        (top, bottom), (left, right) = pads
        start = (top, left) if crop_offset else (bottom, right)
        x_bar = lax.slice(total, (0, *start, 0), (shape[0], start[0] + shape[1], start[1] + shape[2], shape[3]))
        return (x_bar.astype(res.dtype),)

    return pool._jit_hyper(bwd)  # one compile per setting, like the true rule


def _max_parts(xp, y_bar, k, s):
    choice = pool._first_max([pool._slice(xp, a, c, s, y_bar.shape[1:3]) for a, c in pool._offsets(k)])
    return [jnp.where(choice == i, y_bar, 0) for i in range(k[0] * k[1])]


def _avg_parts(xp, y_bar, k, s):
    return [y_bar / (k[0] * k[1])] * (k[0] * k[1])


def _pool_errors(name):
    x = jnp.ones((1, 4, 4, 2))
    return (
        ErrorCase("rank of x", lambda: (jnp.ones((4, 4, 2)),), ValueError, name + r": x must have exactly 4 dim.*NHWC"),
        ErrorCase("integer x", lambda: (jnp.ones((1, 4, 4, 2), jnp.int32),), TypeError,
                  name + r": x must be a floating-point array"),
        ErrorCase("window 0", lambda: (x,), ValueError,
                  name + r": window must be a positive int or a pair of positive ints; got window=0", {"window": 0}),
        ErrorCase("padding as large as the window", lambda: (x,), ValueError,
                  name + r": each padding must be smaller than the window", {"padding": ((2, 0), (0, 0))}),
        ErrorCase("window larger than the input", lambda: (x,), ValueError,
                  name + r": the window \(5, 5\) is larger than the padded input", {"window": 5}),
        ErrorCase("unknown padding", lambda: (x,), ValueError, name + r': padding must be "SAME", "VALID"',
                  {"padding": "same-ish"}),
    )


def _max_edge_check(expected):
    return lambda y, cots: _equal(cots[0][0, :, :, 0], expected)


_TIES = [[0, 0, 1, 1], [0, 0, 1, 0], [2, 1, 2, 2], [0, 2, 2, 2]]
_PEAK = [[-1.0] * 5, [-1.0] * 5, [-1, -1, 1, -1, -1], [-1.0] * 5, [-1.0] * 5]

MAX_POOL2D = LayerInfo(
    pool.max_pool2d, _separated_x, SHAPES, POOL_HYPERS, ("wide", "ties", "extreme", "inf"),
    bench_shape=(8, 32, 32, 16), bench_hyper={"window": 3, "stride": 2, "padding": "SAME"},
    edge_cases=(
        EdgeCase("ties", lambda dt: (_img(_TIES, dt),),
                 "each 2x2 window's gradient goes to its first maximum in row-major order (autodiff's choice)",
                 _max_edge_check([[1, 0, 1, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]])),
        EdgeCase("overlapping windows", lambda dt: (_img(_PEAK, dt),),
                 "window 3, stride 2: the peak is the maximum of all 4 windows and collects 4 gradients",
                 _max_edge_check(np.where(np.asarray(_PEAK) > 0, 4.0, 0.0)), {"window": 3, "stride": 2}),
        EdgeCase("all -inf next to padding", lambda dt: (jnp.full((1, 3, 3, 1), -INF, dt),),
                 "y = -inf; windows that start in the padding send their gradient to the padding (dropped), "
                 "as autodiff does; the one window without padding picks its first entry",
                 _max_edge_check([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), {"padding": ((1, 0), (1, 0))}),
    ),
    error_cases=_pool_errors("max_pool2d"),
    mutants=(
        Mutant("gradient spread evenly over the window", _pool_parts_mutant("max_pool2d", _avg_parts)),
        Mutant("overlapping windows overwrite instead of accumulate",
               _pool_parts_mutant("max_pool2d", _max_parts, accumulate=False)),
        Mutant("padding cropped from the wrong side", _pool_parts_mutant("max_pool2d", _max_parts, crop_offset=False)),
        Mutant("jvp: max pool of x_dot (the maximum of the tangents, not the tangent at x's maximum)",
               jvp=pool._jit_hyper(lambda primals, tangents, **hyper: (
                   pool.max_pool2d.auto(*primals, **hyper), pool.max_pool2d.auto(*tangents, **hyper)))),
        Mutant("jvp: x_dot averaged over the window", jvp=pool._jit_hyper(lambda primals, tangents, **hyper: (
            pool.max_pool2d.auto(*primals, **hyper), pool.avg_pool2d.auto(*tangents, **hyper)))),
    ),
)


def _avg_jvp_times_window(primals, tangents, **hyper):
    y, y_dot = pool.avg_pool2d.jvp(primals, tangents, **hyper)
    k = pool._geometry("avg_pool2d", primals[0].shape, **{"window": 2, "stride": 2, "padding": "VALID", **hyper})[0]
    return y, y_dot * (k[0] * k[1])


def _avg_same_check(y, cots):
    _equal(y[0, :, :, 0], [[1, 0.5], [0.5, 0.25]])  # padded zeros count: the corner mean is 1/4
    _equal(cots[0], np.full((1, 3, 3, 1), 0.25))


AVG_POOL2D = LayerInfo(
    pool.avg_pool2d, _x, SHAPES, POOL_HYPERS, ("wide", "ties", "extreme", "inf"),
    edge_cases=(
        EdgeCase("SAME padding counts as zeros", lambda dt: (jnp.ones((1, 3, 3, 1), dt),),
                 "3x3 ones, window 2, stride 2, SAME (pads (0, 1)): y = [[1, .5], [.5, .25]]; x_bar = 1/4",
                 _avg_same_check, {"padding": "SAME"}),
        EdgeCase("overlapping windows", lambda dt: (jnp.zeros((1, 5, 5, 1), dt),),
                 "window 3, stride 2 on 5x5: x_bar = (number of windows holding the entry) / 9",
                 lambda y, cots: _equal(cots[0][0, :, :, 0], np.outer([1, 1, 2, 1, 1], [1, 1, 2, 1, 1]) / 9),
                 {"window": 3, "stride": 2}),
        EdgeCase("+inf and -inf in one window", lambda dt: (_img([[INF, -INF], [1.0, 2.0]], dt),),
                 "y = nan (inf - inf), but x_bar = 1/4 everywhere: the rule never reads x",
                 lambda y, cots: (np.testing.assert_equal(np.isnan(np.asarray(y, np.float64)), True),
                                  _equal(cots[0], np.full((1, 2, 2, 1), 0.25)))),
    ),
    error_cases=_pool_errors("avg_pool2d"),
    mutants=(
        Mutant("missing the 1/window factor", _pool_parts_mutant("avg_pool2d", lambda xp, g, k, s: [g] * (k[0] * k[1]))),
        Mutant("gradient to each window's first entry only", _pool_parts_mutant(
            "avg_pool2d", lambda xp, g, k, s: [g / (k[0] * k[1])] + [jnp.zeros_like(g)] * (k[0] * k[1] - 1))),
        Mutant("overlapping windows overwrite instead of accumulate",
               _pool_parts_mutant("avg_pool2d", _avg_parts, accumulate=False)),
        Mutant("jvp: missing the 1/window factor", jvp=pool._jit_hyper(_avg_jvp_times_window)),
    ),
)


# flatten ----------------------------------------------------------------------------------------------
FLATTEN = LayerInfo(
    pool.flatten, _x, ((2, 3, 4, 2), (1, 5), (4,)), value_kinds=("wide", "ties", "extreme", "inf"),
    edge_cases=(
        EdgeCase("zero-size features", lambda dt: (jnp.zeros((3, 0, 2), dt),),
                 "y has shape (3, 0); x_bar has x's shape (3, 0, 2)",
                 lambda y, cots: _shapes_are((y, cots[0]), ((3, 0), (3, 0, 2)))),
        EdgeCase("rank 1", lambda dt: (jnp.arange(4.0, dtype=dt),),
                 "(N,) -> (N, 1); x_bar = y_bar[:, 0]",
                 lambda y, cots: (_equal(y, [[0], [1], [2], [3]]), _equal(cots[0], np.ones(4)))),
    ),
    error_cases=(
        ErrorCase("scalar x", lambda: (jnp.ones(()),), ValueError, r"flatten: x must have at least 1 dim"),
        ErrorCase("integer x", lambda: (jnp.ones((2, 3), jnp.int32),), TypeError, r"flatten: x must be a floating-point"),
        ErrorCase("a keyword it does not take", lambda: (jnp.ones((2, 3)),), TypeError,
                  r"flatten: unknown keyword argument\(s\) 'axis'; flatten accepts none",
                  {"axis": 1}),
    ),
    mutants=(
        Mutant("column-major unflatten", lambda like, g: (jnp.reshape(g, like.shape, order="F").astype(like.dtype),)),
        Mutant("wrong dtype", lambda like, g: (g.reshape(like.shape).astype(jnp.float32),)),
        Mutant("jvp: column-major flatten of x_dot", jvp=lambda primals, tangents: (
            pool.flatten.auto(*primals), jnp.reshape(tangents[0], (tangents[0].shape[0], -1), order="F"))),
    ),
)


def _shapes_are(arrays, shapes):
    assert tuple(a.shape for a in arrays) == shapes, (tuple(a.shape for a in arrays), shapes)


ENTRIES = (CONV2D, MAX_POOL2D, AVG_POOL2D, FLATTEN)
