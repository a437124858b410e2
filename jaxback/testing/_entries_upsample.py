"""Registry entry for upsample (``ENTRIES``, loaded by ``_builtin.builtin_registry()``).

NHWC shapes with a batch of 2, a 1x2 image (bilinear's clamped edges everywhere) and 3 channels;
settings: both methods at scales 2, 3 and (2, 1) (one axis unchanged: A is the identity).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._upsample import interpolation_matrix, upsample, upsample_bwd, upsample_jvp
from .._windows import pair
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

__all__ = ["ENTRIES"]

SHAPES = ((2, 3, 4, 2), (1, 1, 2, 1), (1, 4, 3, 3))


def _x(rng, dtype, shape, kind):
    return (jnp.asarray(values(rng, shape, kind), dtype),)


def _f64(a):
    return np.asarray(a, np.float64)


def _mutant(method, edit):
    """The true rule for the other method; for ``method``, ``edit(y_bar, like, (sh, sw))``."""

    def bwd(res, y_bar, **hyper):
        like, h = res, {"scale": 2, "method": "nearest", **hyper}
        if h["method"] != method:
            return upsample_bwd(res, y_bar, **hyper)
        return (edit(y_bar, like, pair("upsample", "scale", h["scale"])).astype(like.dtype),)

    return bwd


def _jvp_mutant(method, edit):
    """The true jvp for the other method; for ``method``, y_dot = ``edit(x_dot, (sh, sw))``."""

    def jvp(primals, tangents, **hyper):
        y, y_dot = upsample_jvp(primals, tangents, **hyper)
        h = {"scale": 2, "method": "nearest", **hyper}
        return y, (edit(tangents[0], pair("upsample", "scale", h["scale"])) if h["method"] == method else y_dot)

    return jvp


def _block_mean(y_bar, like, s):
    n, h, w, c = like.shape
    return y_bar.reshape(n, h, s[0], w, s[1], c).mean((2, 4))


def _contracted_with(matrix):
    """A bilinear edit: the transposed contraction with ``matrix(size, s)`` instead of the true A."""

    def edit(y_bar, like, s):
        a_h, a_w = (jnp.asarray(matrix(size, si).T, y_bar.dtype) for size, si in zip(like.shape[1:3], s))
        return jnp.einsum("ih,nhwc,jw->nijc", a_h, y_bar, a_w)

    return edit


def _weights(src, size):
    """A from sample positions ``src`` (rows i0 = floor(src) mod size, i0 + 1 clamped)."""
    i0 = np.floor(src).astype(int)
    a = np.zeros((len(src), size))
    np.add.at(a, (np.arange(len(src)), i0 % size), 1 - (src - i0))
    np.add.at(a, (np.arange(len(src)), np.minimum(i0 + 1, size - 1)), src - i0)
    return a


def _unclamped(size, s):
    """No clamp at the top edge: row 0 reads "row -1" (wrapped to the last row)."""
    return _weights((np.arange(s * size) + 0.5) / s - 0.5, size)


def _align_corners(size, s):
    """PyTorch's align_corners=True grid: src = i (size - 1) / (s size - 1)."""
    return _weights(np.arange(s * size) * (size - 1) / max(s * size - 1, 1), size)


def _check_nearest(y, cots):
    np.testing.assert_array_equal(_f64(y)[0, :, :, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    np.testing.assert_array_equal(_f64(cots[0]), 4.0)  # each entry fed a 2x2 block of ones


def _check_bilinear_ramp(y, cots):
    # a ramp 0, 1 upsampled by 2: samples at src = 0 (clamped), 0.25, 0.75, 1 (clamped)
    np.testing.assert_allclose(_f64(y)[0, 0, :, 0], [0.0, 0.25, 0.75, 1.0], rtol=1e-12)
    np.testing.assert_allclose(_f64(cots[0]).sum(), 8.0, rtol=1e-12)  # rows of A sum to 1: the mass is kept


def _check_rows_sum_to_one(y, cots):
    for size, s in ((1, 2), (3, 2), (4, 3), (5, 1)):
        np.testing.assert_allclose(interpolation_matrix(size, s).sum(1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(_f64(y), 7.0, rtol=1e-12)  # a constant image stays constant


_X = jnp.ones((1, 2, 2, 1))

UPSAMPLE = LayerInfo(
    upsample, _x, SHAPES,
    hypers=({}, {"scale": 3}, {"scale": (2, 1)}, {"method": "bilinear"}, {"method": "bilinear", "scale": 3},
            {"method": "bilinear", "scale": (1, 2)}),
    value_kinds=("wide", "ties", "extreme", "inf"),
    edge_cases=(
        EdgeCase("nearest blocks", lambda dt: (jnp.asarray([[1.0, 2.0], [3.0, 4.0]], dt)[None, :, :, None],),
                 "scale 2: each entry becomes a 2x2 block, and x_bar sums its block (4 for an all-ones y_bar)",
                 _check_nearest),
        EdgeCase("bilinear edges", lambda dt: (jnp.asarray([[0.0, 1.0]], dt)[None, :, :, None],),
                 "half-pixel centres, edges clamped: [0, 1] -> [0, 0.25, 0.75, 1]; x_bar sums to y_bar's sum",
                 _check_bilinear_ramp, {"method": "bilinear"}),
        EdgeCase("constant image", lambda dt: (jnp.full((1, 3, 4, 2), 7.0, dt),),
                 "rows of A sum to 1, so a constant image stays constant under bilinear",
                 _check_rows_sum_to_one, {"method": "bilinear", "scale": 3}),
    ),
    error_cases=(
        ErrorCase("rank of x", lambda: (jnp.ones((2, 2, 1)),), ValueError, r"upsample: x must have exactly 4 dim.*NHWC"),
        ErrorCase("integer x", lambda: (jnp.ones((1, 2, 2, 1), jnp.int32),), TypeError,
                  r"upsample: x must be a floating-point array"),
        ErrorCase("unknown method", lambda: (_X,), ValueError,
                  r'upsample: method must be "nearest" or "bilinear"; got method=\'bicubic\'', {"method": "bicubic"}),
        ErrorCase("fractional scale", lambda: (_X,), ValueError,
                  r"upsample: scale must be a positive int or a pair of positive ints; got scale=1.5", {"scale": 1.5}),
        ErrorCase("scale 0", lambda: (_X,), ValueError, r"upsample: scale must be a positive int", {"scale": 0}),
    ),
    mutants=(
        Mutant("nearest: the block's mean instead of its sum", _mutant("nearest", _block_mean)),
        Mutant("nearest: each block's first entry only", _mutant("nearest", lambda g, like, s: g[:, ::s[0], ::s[1], :])),
        Mutant("bilinear: no clamp at the top/left edge", _mutant("bilinear", _contracted_with(_unclamped))),
        Mutant("bilinear: align_corners=True weights", _mutant("bilinear", _contracted_with(_align_corners))),
        Mutant("jvp: bilinear with nearest's copies", jvp=_jvp_mutant(
            "bilinear", lambda x_dot, s: upsample.auto(x_dot, scale=s, method="nearest"))),
        Mutant("jvp: bilinear with align_corners=True weights", jvp=_jvp_mutant(  # A = (A.T).T: the forward's contraction
            "bilinear", lambda x_dot, s: _contracted_with(lambda size, si: _align_corners(size, si).T)(x_dot, x_dot, s))),
    ),
)

ENTRIES = (UPSAMPLE,)
