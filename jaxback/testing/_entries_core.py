"""Registry entries for the foundation layers: linear, activations, softmax, losses."""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from .. import _activations as act
from .._linear import LinearParams, linear
from .._losses import binary_cross_entropy_with_logits, mse, softmax_cross_entropy
from .._softmax import log_softmax, softmax
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

INF = math.inf
ELEMENTWISE_SHAPES = ((1,), (4, 5), (2, 3, 4))


def _assert_finite(*trees):
    for t in trees:
        for leaf in (t if isinstance(t, (tuple, list)) else (t,)):
            if leaf is not None:
                assert np.all(np.isfinite(np.asarray(leaf, np.float64))), f"not finite: {leaf}"


def _assert_equal(actual, expected):
    np.testing.assert_array_equal(np.asarray(actual, np.float64), np.asarray(expected, np.float64))


# linear ---------------------------------------------------------------------------------------------
def _linear_args(rng, dtype, shape, kind):
    n, m = shape[-1], 3
    params = LinearParams(jnp.asarray(rng.standard_normal((n, m)), dtype), jnp.asarray(rng.standard_normal(m), dtype))
    return params, jnp.asarray(values(rng, shape, kind), dtype)


def _linear_mutant(edit):
    """A linear bwd with one term edited: ``edit(w, x, y_bar, x_bar, w_bar, b_bar)``."""

    def bwd(res, y_bar):
        w, _, x = res
        x_flat = x.reshape(-1, w.shape[0])
        g = y_bar.reshape(-1, w.shape[1])
        x_bar, w_bar, b_bar = edit(w, x, y_bar, y_bar @ w.T, x_flat.T @ g, g.sum(0))
        return LinearParams(w_bar, b_bar), x_bar

    return bwd


_P = LinearParams(jnp.ones((3, 2)), jnp.zeros(2))
LINEAR = LayerInfo(
    linear, _linear_args, ((1, 1), (4, 5), (2, 4, 3), (0, 5)), bench_shape=(1024, 512),
    edge_cases=(
        EdgeCase("empty batch", lambda dt: (LinearParams(jnp.ones((5, 3), dt), jnp.zeros(3, dt)), jnp.zeros((0, 5), dt)),
                 "y has shape (0, 3); w_bar and b_bar are exact zeros",
                 lambda y, cots: (_assert_equal(cots[0].w, 0), _assert_equal(cots[0].b, 0))),
        EdgeCase("huge inputs", lambda dt: (LinearParams(jnp.ones((2, 2), dt), jnp.zeros(2, dt)), jnp.full((3, 2), 1e30, dt)),
                 "finite where the products are representable (float64)",
                 lambda y, cots: _assert_finite(y, cots[1]) if y.dtype == jnp.float64 else None),
    ),
    error_cases=(
        ErrorCase("trailing size", lambda: (_P, jnp.ones((4, 5))), ValueError,
                  r"linear: x.shape\[-1\] must equal w.shape\[0\]; got x shape=\(4, 5\).*w shape=\(3, 2\).*transpose"),
        ErrorCase("integer x", lambda: (_P, jnp.ones((4, 3), jnp.int32)), TypeError,
                  r"linear: x must be a floating-point array; got shape=\(4, 3\) dtype=int32"),
        ErrorCase("rank of w", lambda: (LinearParams(jnp.ones(3), jnp.zeros(2)), jnp.ones((4, 3))), ValueError,
                  r"linear: params.w must have exactly 2"),
        ErrorCase("bias size", lambda: (LinearParams(jnp.ones((3, 2)), jnp.zeros(3)), jnp.ones((4, 3))), ValueError,
                  r"linear: b must have shape"),
        ErrorCase("scalar x", lambda: (_P, jnp.ones(())), ValueError, r"linear: x must have at least 1"),
    ),
    mutants=(
        Mutant("bias mean instead of sum", _linear_mutant(lambda p, x, g, xb, wb, bb: (xb, wb, g.reshape(-1, g.shape[-1]).mean(0)))),
        Mutant("missing transpose in x_bar", _linear_mutant(lambda w, x, g, xb, wb, bb: (g @ w, wb, bb))),
        Mutant("missing transpose in w_bar", _linear_mutant(lambda p, x, g, xb, wb, bb: (xb, wb.T, bb))),
        Mutant("sign flip in w_bar", _linear_mutant(lambda p, x, g, xb, wb, bb: (xb, -wb, bb))),
        Mutant("off by scale in x_bar", _linear_mutant(lambda p, x, g, xb, wb, bb: (2 * xb, wb, bb))),
        Mutant("w_bar from the last example only", _linear_mutant(lambda p, x, g, xb, wb, bb: (
            xb, x.reshape(-1, x.shape[-1])[-1:].T @ g.reshape(-1, g.shape[-1])[-1:], bb))),
        Mutant("no reduction over extra batch dims", _linear_mutant(lambda p, x, g, xb, wb, bb: (xb, wb, g.sum(0)))),
        Mutant("wrong dtype in w_bar", _linear_mutant(lambda p, x, g, xb, wb, bb: (xb, wb.astype(jnp.float32), bb))),
        Mutant("jvp: drops the x @ w_dot term", jvp=lambda primals, tangents: (
            linear.auto(*primals), tangents[1] @ primals[0].w + tangents[0].b)),
        Mutant("jvp: w_dot transposed", jvp=lambda primals, tangents: (
            linear.auto(*primals), tangents[1] @ primals[0].w + primals[1] @ tangents[0].w.T + tangents[0].b)),
    ),
)


# elementwise activations ----------------------------------------------------------------------------
def _x_args(rng, dtype, shape, kind):
    return (jnp.asarray(values(rng, shape, kind), dtype),)


def _limits_case(y_expected, slope_expected, hyper=None):
    """At -inf, -1e4, 1e4, +inf: the documented limit values and slopes."""
    def check(y, cots):
        _assert_equal(y, y_expected)
        _assert_equal(cots[0], slope_expected)
    return EdgeCase("saturation and +-inf", lambda dt: (jnp.asarray([-INF, -1e4, 1e4, INF], dt),),
                    f"y = {y_expected}, slope = {slope_expected}", check, hyper or {})


def _kink_case(slope, hyper=None):
    return EdgeCase("at the kink x = 0", lambda dt: (jnp.zeros(3, dt),), f"slope {slope} at 0 (jax.nn's convention)",
                    lambda y, cots: _assert_equal(cots[0], slope), hyper or {})


_NOT_FLOAT = ErrorCase("integer x", lambda: (jnp.arange(3),), TypeError, r": x must be a floating-point array")


def _activation(layer, limits, mutants, kink=None, hypers=({},), errors=()):
    edges = (limits,) + ((kink,) if kink else ())
    return LayerInfo(layer, _x_args, ELEMENTWISE_SHAPES, hypers, ("wide", "ties", "extreme", "inf"),
                     edges, (_NOT_FLOAT,) + errors, mutants + (_tangent_unchanged(layer),))


def _tangent_unchanged(layer):
    """A jvp that forgets f'(x): y_dot = x_dot."""
    return Mutant("jvp: the tangent passes unchanged", jvp=lambda primals, tangents, **h: (
        layer.auto(*primals, **h), tangents[0]))


def _scaled(layer, k):
    return Mutant(f"off by scale {k}", lambda res, g, **h: (k * layer.bwd(res, g, **h)[0],))


def _sign_flip(layer):
    return Mutant("sign flip", lambda res, g, **h: (-layer.bwd(res, g, **h)[0],))


RELU = _activation(act.relu, _limits_case([0, 0, 1e4, INF], [0, 0, 1, 1]),
                   (Mutant("passes the gradient everywhere", lambda y, g: (g,)), _scaled(act.relu, 2)),
                   _kink_case(0))
LEAKY_RELU = _activation(act.leaky_relu, _limits_case([-INF, -100, 1e4, INF], [0.01, 0.01, 1, 1]),
                         (Mutant("slope 0 on the left", lambda x, g, negative_slope=0.01: (jnp.where(x >= 0, g, 0.0),)),
                          _sign_flip(act.leaky_relu)),
                         _kink_case(1), ({}, {"negative_slope": 0.2}),
                         (ErrorCase("slope is a string", lambda: (jnp.ones(3),), TypeError,
                                    r"leaky_relu: negative_slope must be a Python real number", {"negative_slope": "0.1"}),
                          ErrorCase("slope is an array", lambda: (jnp.ones(3),), TypeError,
                                    r"leaky_relu: negative_slope must be a Python real number",
                                    {"negative_slope": jnp.asarray(0.1)}),))
SIGMOID = _activation(act.sigmoid, _limits_case([0, 0, 1, 1], [0, 0, 0, 0]),
                      (Mutant("y * y instead of y * (1 - y)", lambda y, g: (g * y * y,)), _scaled(act.sigmoid, 0.5)))
TANH = _activation(act.tanh, _limits_case([-1, -1, 1, 1], [0, 0, 0, 0]),
                   (Mutant("1 - y instead of 1 - y**2", lambda y, g: (g * (1 - y),)), _sign_flip(act.tanh)))
GELU = dataclasses.replace(_activation(act.gelu, _limits_case([0, 0, 1e4, INF], [0, 0, 1, 1]),
                   (Mutant("missing the x * phi(x) term", lambda x, g, approximate=False: (g * act._normal_cdf(x),)),
                    _scaled(act.gelu, 2)),
                   hypers=({"approximate": False}, {"approximate": True}),
                   errors=(ErrorCase("approximate is a string", lambda: (jnp.ones(3),), TypeError,
                                     r"gelu: approximate must be True or False", {"approximate": "tanh"}),)),
                           bench_shape=(1024, 1024))
SOFTPLUS = _activation(act.softplus, _limits_case([0, 0, 1e4, INF], [0, 0, 1, 1]),
                       (Mutant("exp(-y) instead of 1 - exp(-y)", lambda y, g: (g * jnp.exp(-y),)), _sign_flip(act.softplus)),
                       _kink_case(0.5))
SILU = _activation(act.silu, _limits_case([0, 0, 1e4, INF], [0, 0, 1, 1]),
                   (Mutant("sigmoid only", lambda x, g: (g * jax.nn.sigmoid(x),)), _scaled(act.silu, 2)))


# softmax family --------------------------------------------------------------------------------------
def _softmax_rows_case(masked_value):
    """``masked_value``: y at a -inf input (probability 0: 0 for softmax, -inf for log_softmax)."""
    def check(y, cots):
        y, x_bar = np.asarray(y, np.float64), np.asarray(cots[0], np.float64)
        assert y[0, 1] == masked_value and np.all(np.isfinite(y[0, ::2])) and np.all(np.isfinite(y[2]))
        assert np.all(np.isnan(y[1])), "a NaN input makes its own row NaN"
        assert np.all(np.isfinite(x_bar[0])) and np.all(np.isfinite(x_bar[2])), "other rows' gradients stay finite"
    return EdgeCase("-inf masks an entry; NaN stays in its row; huge logits",
                    lambda dt: (jnp.asarray([[0.0, -INF, 1.0], [np.nan, 0.0, 1.0], [1e4, -1e4, 0.0]], dt),),
                    "masked entry has probability 0; the NaN row is NaN, the others finite", check)


def _probs(res):
    """softmax recomputed from the residuals (x, lse)."""
    x, lse = res
    return jnp.exp(x - lse)


def _log_softmax_y_not_exp_y(res, g, axis=-1):
    x, lse = res
    return (g - (x - lse) * g.sum(axis, keepdims=True),)


def _axis_errors(name):
    return (_NOT_FLOAT,
            ErrorCase("axis out of range", lambda: (jnp.ones((2, 3)),), ValueError,
                      name + r": axis must be a Python int in \[-2, 2\); got axis=2", {"axis": 2}),
            ErrorCase("axis is a float", lambda: (jnp.ones((2, 3)),), ValueError, name + r": axis must be a Python int",
                      {"axis": 1.0}))


SOFTMAX = LayerInfo(softmax, _x_args, ELEMENTWISE_SHAPES, ({"axis": -1}, {"axis": 0}), bench_shape=(1024, 1024),
                    edge_cases=(_softmax_rows_case(0.0),), error_cases=_axis_errors("softmax"),
                    mutants=(Mutant("missing the sum term", lambda res, g, axis=-1: (_probs(res) * g,)),
                             Mutant("sum over the wrong axis", lambda res, g, axis=-1: (_probs(res) * (
                                 g - jnp.sum(g * _probs(res), axis=0 if axis != 0 else -1, keepdims=True)),))))
LOG_SOFTMAX = LayerInfo(log_softmax, _x_args, ELEMENTWISE_SHAPES, ({"axis": -1}, {"axis": 0}),
                        edge_cases=(_softmax_rows_case(-INF),), error_cases=_axis_errors("log_softmax"),
                        mutants=(Mutant("sign flip of the sum term", lambda res, g, axis=-1: (
                                     g + _probs(res) * g.sum(axis, keepdims=True),)),
                                 Mutant("y instead of exp(y)", _log_softmax_y_not_exp_y)))


# losses ------------------------------------------------------------------------------------------------
def _sce_args(rng, dtype, shape, kind):
    n, c = shape
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.integers(0, c, n), jnp.int32)


def _pair_args(rng, dtype, shape, kind):
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.standard_normal(shape), dtype)


def _bce_args(rng, dtype, shape, kind):
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.random(shape), dtype)


def _empty_loss_case(make):
    def check(y, cots):
        _assert_equal(y, 0.0)
        assert cots[0].shape[0] == 0
    return EdgeCase("empty batch", make, "loss 0 (sum over nothing / max(n, 1)), empty gradients", check)


def _check_no_class_matches(y, cotangents):
    lse = np.log(np.exp(np.arange(4.0)).sum())
    np.testing.assert_allclose(y, lse, rtol=1e-14)
    softmax = np.exp(np.arange(4.0) - lse)
    np.testing.assert_allclose(cotangents[0], np.stack([softmax, softmax[::-1]]) / 2, rtol=1e-14)


def _sce_probs(res):
    """softmax recomputed from the residuals (logits, labels, lse)."""
    logits, _, lse = res
    return jnp.exp(logits - lse[:, None])


def _sce_onehot(res):
    logits, labels, _ = res
    return jnp.eye(logits.shape[1])[labels]


def _sce_n(res):
    _, labels, _ = res
    return max(labels.shape[0], 1)


def _mse_grad(res, g, factor=2):
    """``factor * g * diff / n`` from the residuals (diff, target dtype token)."""
    diff, _ = res
    return factor * g * diff / max(diff.size, 1)


def _bce_terms(res):
    """``(x, t, n)`` from the residuals (logits x, targets t)."""
    x, t = res
    return x, t, max(x.size, 1)


def _bce_targets_dropped(res, g):
    x, t, n = _bce_terms(res)
    return g * (jax.nn.sigmoid(x) - t) / n, None


def _bce_plus_t(res, g):
    x, t, n = _bce_terms(res)
    return g * (jax.nn.sigmoid(x) + t) / n, -g * x / n


_LOGITS, _INT_LABELS = jnp.ones((4, 3)), jnp.zeros(4, jnp.int32)
SOFTMAX_CROSS_ENTROPY = LayerInfo(
    softmax_cross_entropy, _sce_args, ((1, 1), (6, 4), (0, 4)), bench_shape=(2048, 8192),
    edge_cases=(
        _empty_loss_case(lambda dt: (jnp.zeros((0, 4), dt), jnp.zeros(0, jnp.int32))),
        EdgeCase("huge logits", lambda dt: (jnp.asarray([[1e4, -1e4, 0.0], [3e4, 1e4, -3e4]], dt), jnp.asarray([1, 0])),
                 "finite loss and gradients", lambda y, cots: _assert_finite(y, cots[0])),
        EdgeCase("labels outside [0, C)", lambda dt: (jnp.asarray([[0, 1, 2, 3], [3, 2, 1, 0]], dt), jnp.asarray([-1, 4])),
                 "no class matches: loss = mean(lse), logits_bar = softmax / n", _check_no_class_matches),
    ),
    error_cases=(
        ErrorCase("float labels", lambda: (_LOGITS, jnp.zeros(4)), TypeError, r"softmax_cross_entropy: labels must be an integer array"),
        ErrorCase("batch mismatch", lambda: (_LOGITS, jnp.zeros(5, jnp.int32)), ValueError,
                  r"softmax_cross_entropy: labels.shape\[0\] must equal logits.shape\[0\]"),
        ErrorCase("rank of logits", lambda: (jnp.ones(3), jnp.zeros(3, jnp.int32)), ValueError,
                  r"softmax_cross_entropy: logits must have exactly 2"),
        ErrorCase("rank of labels", lambda: (_LOGITS, jnp.zeros((4, 1), jnp.int32)), ValueError,
                  r"softmax_cross_entropy: labels must have exactly 1"),
    ),
    mutants=(
        Mutant("sum instead of mean", lambda res, g: (g * (_sce_probs(res) - _sce_onehot(res)), None)),
        Mutant("missing the one-hot", lambda res, g: (g * _sce_probs(res) / _sce_n(res), None)),
    ),
)
MSE = LayerInfo(
    mse, _pair_args, ((1,), (4, 3), (0, 3)),
    edge_cases=(_empty_loss_case(lambda dt: (jnp.zeros((0, 3), dt), jnp.zeros((0, 3), dt))),),
    error_cases=(
        ErrorCase("silent broadcasting", lambda: (jnp.ones((4, 1)), jnp.ones(4)), ValueError,
                  r"mse: pred and target must have the same shape \(no broadcasting\); got pred shape=\(4, 1\)"),
        ErrorCase("integer target", lambda: (jnp.ones(4), jnp.ones(4, jnp.int32)), TypeError, r"mse: target must be a floating-point array"),
    ),
    mutants=(
        Mutant("target cotangent with the wrong sign", lambda res, g: (_mse_grad(res, g),) * 2),
        Mutant("missing the factor 2", lambda res, g: (_mse_grad(res, g, 1), -_mse_grad(res, g, 1))),
        Mutant("wrong dtype", lambda res, g: (_mse_grad(res, g).astype(jnp.float32), -_mse_grad(res, g))),
    ),
)
BCE = LayerInfo(
    binary_cross_entropy_with_logits, _bce_args, ((1,), (4, 3), (0, 3)),
    edge_cases=(
        _empty_loss_case(lambda dt: (jnp.zeros((0, 3), dt), jnp.zeros((0, 3), dt))),
        EdgeCase("saturated logits", lambda dt: (jnp.asarray([-1e4, 1e4, 0.0], dt), jnp.asarray([1.0, 0.0, 0.5], dt)),
                 "finite loss (1e4 per wrong entry) and gradients", lambda y, cots: _assert_finite(y, *cots)),
    ),
    error_cases=(
        ErrorCase("shape mismatch", lambda: (jnp.ones((4, 2)), jnp.ones((4, 1))), ValueError,
                  r"binary_cross_entropy_with_logits: logits and targets must have the same shape"),
        ErrorCase("integer logits", lambda: (jnp.ones(4, jnp.int32), jnp.ones(4)), TypeError,
                  r"binary_cross_entropy_with_logits: logits must be a floating-point array"),
    ),
    mutants=(
        Mutant("targets cotangent dropped", _bce_targets_dropped),
        Mutant("sigmoid(x) + t", _bce_plus_t),
    ),
)

ENTRIES = (LINEAR, RELU, LEAKY_RELU, SIGMOID, TANH, GELU, SOFTPLUS, SILU, SOFTMAX, LOG_SOFTMAX,
           SOFTMAX_CROSS_ENTROPY, MSE, BCE)
