"""Registry entries for layer_norm, rms_norm and batch_norm (``ENTRIES``, loaded by ``_builtin.builtin_registry()``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._batch_norm import BatchNormParams, BatchNormState, batch_norm
from .._norm import LayerNormParams, RMSNormParams, layer_norm, rms_norm
from .._statistics import centered, sum_rows
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

__all__ = ["ENTRIES"]

NORM_SHAPES = ((3, 1), (4, 5), (2, 3, 4), (0, 5))  # size-1 feature axis, a batch, two batch dims, empty
BATCH_NORM_SHAPES = ((1, 3), (6, 3), (2, 2, 2, 3))  # batch of one, (N, C), NHWC
KINDS = ("wide", "ties", "extreme")


# sample arguments ---------------------------------------------------------------------------------
def _params(cls, rng, n, dtype):
    """scale ~ 1 + N(0, 1/4), bias ~ N(0, 1): the fields ``cls`` has."""
    fields = (1 + 0.5 * rng.standard_normal(n), rng.standard_normal(n))[: len(cls._fields)]
    return cls(*(jnp.asarray(v, dtype) for v in fields))


def _norm_args(cls):
    def sample_args(rng, dtype, shape, kind):
        return _params(cls, rng, shape[-1], dtype), jnp.asarray(values(rng, shape, kind), dtype)

    return sample_args


def _state(rng, c, dtype):
    mean, var = 0.5 * rng.standard_normal(c), 0.5 + rng.random(c)
    return BatchNormState(jnp.asarray(mean, dtype), jnp.asarray(var, dtype))


def _batch_norm_args(rng, dtype, shape, kind):
    return (*_norm_args(BatchNormParams)(rng, dtype, shape, kind), _state(rng, shape[-1], dtype))


# edge-case inputs and checks ----------------------------------------------------------------------
def _affine(d, dtype, cls=LayerNormParams):
    fields = (jnp.linspace(0.5, 1.5, d, dtype=dtype), jnp.linspace(-1.0, 1.0, d, dtype=dtype))
    return cls(*fields[: len(cls._fields)])


def _bn_args(x, dtype):
    """batch_norm edge arguments: fixed params, ``x`` as ``dtype``, the initial state."""
    c = np.shape(x)[-1]
    state = BatchNormState(jnp.zeros(c, dtype), jnp.ones(c, dtype))
    return _affine(c, dtype, BatchNormParams), jnp.asarray(x, dtype), state


def _f64(a):
    return np.asarray(a, np.float64)


def _tol(y):
    return 64 * float(jnp.finfo(y.dtype).eps)


def _finite_tree(tree):
    for leaf in jax.tree_util.tree_leaves(tree):
        assert np.all(np.isfinite(_f64(leaf))), f"non-finite cotangent {leaf}"


_CONSTANT_ROWS = np.array([[-2.0], [0.0], [0.1], [1e3]]) * np.ones((1, 5))
_NEAR_CONSTANT = 1e8 + 1e-3 * np.random.default_rng(7).standard_normal((4, 5))


def _huge(dtype, shape=(4, 5)):
    """Values whose squares overflow the compute dtype (float32 for bfloat16, float16 itself)."""
    big = float(jnp.finfo(dtype).max) ** 0.75
    return jnp.asarray(np.random.default_rng(8).standard_normal(shape) * big, dtype)


def _check_bias_only(y, cotangents, x_bar_zero=False):
    """Zero variance: y = bias exactly (bias = linspace(-1, 1)), finite cotangents, scale_bar = 0."""
    y = y[0] if isinstance(y, tuple) else y  # batch_norm returns (y, new_state)
    np.testing.assert_array_equal(_f64(y), np.broadcast_to(_f64(_affine(y.shape[-1], y.dtype).bias), y.shape))
    _finite_tree(cotangents)
    np.testing.assert_array_equal(_f64(cotangents[0].scale), 0.0)
    if x_bar_zero:
        np.testing.assert_array_equal(_f64(cotangents[1]), 0.0)


def _check_near_constant(y, cotangents):
    _finite_tree(cotangents)
    if y.dtype == jnp.float64:  # the digits only exist in float64
        d = _NEAR_CONSTANT - 1e8  # exact: the numbers are close (Sterbenz)
        ref = (d - d.mean(-1, keepdims=True)) / np.sqrt(d.var(-1, keepdims=True) + 1e-5)
        params = _affine(5, jnp.float64)
        np.testing.assert_allclose(_f64(y), ref * _f64(params.scale) + _f64(params.bias), rtol=0, atol=1e-12)


def _check_huge(axes, cls):
    """y and x_bar * H of huge x = z * H equal those of z (degree 0 and -1 homogeneity; eps negligible)."""
    centred = cls is not RMSNormParams

    def check(out, cotangents):
        y = out[0] if isinstance(out, tuple) else out
        _finite_tree(cotangents)
        big = float(jnp.finfo(y.dtype).max) ** 0.75
        z, params = _f64(_huge(y.dtype, y.shape)) / big, _affine(y.shape[-1], jnp.float64, cls)
        mean = lambda t: t.mean(axes, keepdims=True) if centred else 0.0
        ms = lambda t: t.mean(axes, keepdims=True)
        rstd = 1 / np.sqrt(ms((z - mean(z)) ** 2))
        z_hat, g = (z - mean(z)) * rstd, _f64(params.scale) * np.ones(y.shape)  # g for an all-ones y_bar
        x_bar = rstd * (g - mean(g) - z_hat * ms(g * z_hat))
        expected = z_hat * _f64(params.scale) + (_f64(params.bias) if centred else 0.0)
        np.testing.assert_allclose(_f64(y), expected, rtol=_tol(y), atol=_tol(y))
        atol = _tol(y) * np.max(rstd * np.abs(g))  # cancellation in g - mean(g) leaves absolute error
        np.testing.assert_allclose(_f64(cotangents[1]) * big, x_bar, rtol=_tol(y), atol=atol)

    return check


def _check_rms_zero_rows(y, cotangents):
    np.testing.assert_array_equal(_f64(y), 0.0)
    expected = np.broadcast_to(_f64(_affine(5, jnp.float64, RMSNormParams).scale) / np.sqrt(1e-6), (4, 5))
    np.testing.assert_allclose(_f64(cotangents[1]), expected, rtol=_tol(y))


def _inference_args(dtype):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((6, 3)), dtype)
    return _affine(3, dtype, BatchNormParams), x, _state(rng, 3, dtype)


def _check_inference(out, cotangents):
    (y, new_state), (_, x_bar, state_bar) = out, cotangents
    params, x, state = _inference_args(jnp.float64)
    rstd = 1 / np.sqrt(_f64(state.var) + 1e-5)
    expected = (_f64(x) - _f64(state.mean)) * rstd * _f64(params.scale) + _f64(params.bias)
    np.testing.assert_allclose(_f64(y), expected, rtol=_tol(y), atol=_tol(y))
    np.testing.assert_array_equal(_f64(new_state.mean), _f64(state.mean.astype(y.dtype)))
    np.testing.assert_allclose(_f64(x_bar), np.broadcast_to(rstd * _f64(params.scale), x.shape), rtol=_tol(y))
    np.testing.assert_array_equal(_f64(state_bar.var), 0.0)


_BN_CONSTANT = np.array([-1.0, 0.1, 1e3]) * np.ones((2, 2, 2, 3))


def _check_bn_constant(out, cotangents):
    _check_bias_only(out, cotangents)
    y, new_state = out
    np.testing.assert_allclose(_f64(new_state.var), 0.9, rtol=_tol(y))  # (1 - 0.1) * 1 + 0.1 * 0
    np.testing.assert_allclose(_f64(new_state.mean), 0.1 * _BN_CONSTANT[0, 0, 0], rtol=4 * _tol(y))


# mutants: the true rule with one deliberate mistake -----------------------------------------------
def _rebuilt(kind, res, training):
    """``(params, x, x_hat, rstd, mean)`` from the true fwd's residuals; ``mean(t, axes=the layer's)``."""
    params, x, *center, rstd = res
    axes = tuple(range(x.ndim - 1)) if kind == "batch_norm" else (x.ndim - 1,)
    x_hat = (x if not center else centered(x, center[0], axes) if training else x - center[0]) * rstd
    return params, x, x_hat, rstd, lambda t, ax=axes: jnp.mean(t, ax, keepdims=True)


def _mutant(kind, name, x_bar_rule, params_bar_rule=None):
    """A wrong bwd for ``kind``: x_bar from ``x_bar_rule(g, x_hat, rstd, mean)`` (mean over the
    layer's axes unless given others); ``params_bar_rule(y_bar, x, x_hat, bars)`` edits the param bars."""

    def bwd(res, out_bar, training=True, **_):
        params, x, x_hat, rstd, mean = _rebuilt(kind, res, training)
        y_bar = out_bar[0] if kind == "batch_norm" else out_bar
        g = y_bar * params.scale
        x_bar = x_bar_rule(g, x_hat, rstd, mean) if training else rstd * g
        bars = [sum_rows(y_bar * x_hat, x.dtype), sum_rows(y_bar, x.dtype)][: len(params)]
        bars = params_bar_rule(y_bar, x, x_hat, bars) if params_bar_rule else bars
        return (type(params)(*bars), x_bar) + ((None,) if kind == "batch_norm" else ())

    return Mutant(name, bwd)


def _centered_rule(g, xh, r, mean):  # the true x_bar of layer_norm and batch_norm (and x_hat_dot, g = x_dot)
    return r * (g - mean(g) - xh * mean(g * xh))


def _affine_tangent(x_hat_dot, x_hat, params, params_dot):
    """The true y_dot = x_hat_dot * scale + x_hat * scale_dot (+ bias_dot where there is a bias)."""
    return x_hat_dot * params.scale + x_hat * params_dot.scale + (params_dot.bias if len(params) == 2 else 0.0)


_LAYERS = {"layer_norm": layer_norm, "rms_norm": rms_norm, "batch_norm": batch_norm}


def _jvp_mutant(kind, name, x_hat_dot_rule, y_dot_rule=_affine_tangent):
    """A wrong jvp for ``kind``: x_hat_dot from ``x_hat_dot_rule(x_dot, x_hat, rstd, mean)`` (training;
    inference keeps the true ``rstd * x_dot``), y_dot from ``y_dot_rule(x_hat_dot, x_hat, params, params_dot)``."""

    def jvp(primals, tangents, **hyper):
        out, res = _LAYERS[kind].fwd(*primals, **hyper)
        params, x, x_hat, rstd, mean = _rebuilt(kind, res, hyper.get("training", True))
        params_dot, x_dot = tangents[:2]
        x_hat_dot = x_hat_dot_rule(x_dot, x_hat, rstd, mean) if hyper.get("training", True) else rstd * x_dot
        y_dot = y_dot_rule(x_hat_dot, x_hat, params, params_dot).astype(x.dtype)
        return out, ((y_dot, None) if kind == "batch_norm" else y_dot)

    return Mutant(name, jvp=jvp)


LAYER_NORM_MUTANTS = (
    _mutant("layer_norm", "no mean(g) term", lambda g, xh, r, mean: r * (g - xh * mean(g * xh))),
    _mutant("layer_norm", "no x_hat * mean(g * x_hat) term", lambda g, xh, r, mean: r * (g - mean(g))),
    _mutant("layer_norm", "sign flip of the x_hat term",
            lambda g, xh, r, mean: r * (g - mean(g) + xh * mean(g * xh))),
    _mutant("layer_norm", "means over the rows (axis 0)",
            lambda g, xh, r, mean: r * (g - mean(g, (0,)) - xh * mean(g * xh, (0,)))),
    _mutant("layer_norm", "bias_bar mean instead of sum", _centered_rule,
            lambda y_bar, x, xh, bars: [bars[0], y_bar.mean(tuple(range(x.ndim - 1)))]),
    _jvp_mutant("layer_norm", "jvp: no mean(x_dot) term", lambda t, xh, r, mean: r * (t - xh * mean(t * xh))),
    _jvp_mutant("layer_norm", "jvp: scale_dot term dropped", _centered_rule,
                lambda xhd, xh, p, pd: xhd * p.scale + pd.bias),
)
RMS_NORM_MUTANTS = (
    _mutant("rms_norm", "layer_norm's extra mean(g) term", _centered_rule),
    _mutant("rms_norm", "no x_hat * mean(g * x_hat) term", lambda g, xh, r, mean: r * g),
    _mutant("rms_norm", "sign flip of the x_hat term", lambda g, xh, r, mean: r * (g + xh * mean(g * xh))),
    _mutant("rms_norm", "scale_bar from x instead of x_hat",
            lambda g, xh, r, mean: r * (g - xh * mean(g * xh)),
            lambda y_bar, x, xh, bars: [sum_rows(y_bar * x, x.dtype)]),
    _jvp_mutant("rms_norm", "jvp: rstd held constant (no x_hat * mean(x_dot * x_hat) term)",
                lambda t, xh, r, mean: r * t),
    _jvp_mutant("rms_norm", "jvp: layer_norm's extra mean(x_dot) term", _centered_rule),
)
BATCH_NORM_MUTANTS = (
    _mutant("batch_norm", "no mean(g) term", lambda g, xh, r, mean: r * (g - xh * mean(g * xh))),
    _mutant("batch_norm", "statistics per example (last axis) instead of per channel",
            lambda g, xh, r, mean: r * (g - mean(g, (-1,)) - xh * mean(g * xh, (-1,)))),
    _mutant("batch_norm", "inference rule in training (batch statistics as constants)",
            lambda g, xh, r, mean: r * g),
    _mutant("batch_norm", "sign flip of the x_hat term",
            lambda g, xh, r, mean: r * (g - mean(g) + xh * mean(g * xh))),
    _jvp_mutant("batch_norm", "jvp: batch statistics held constant in training (the inference tangent)",
                lambda t, xh, r, mean: r * t),
    _jvp_mutant("batch_norm", "jvp: statistics per example (last axis) instead of per channel",
                lambda t, xh, r, mean: r * (t - mean(t, (-1,)) - xh * mean(t * xh, (-1,)))),
)


# error cases --------------------------------------------------------------------------------------
def _norm_errors(name, cls):
    ok = lambda: (_affine(3, jnp.float32, cls), jnp.ones((2, 3)))
    return (
        ErrorCase("x is a scalar", lambda: (_affine(1, jnp.float32, cls), jnp.float32(1.0)), ValueError,
                  rf"{name}: x must have at least 1"),
        ErrorCase("feature size mismatch", lambda: (ok()[0], jnp.ones((2, 4))), ValueError,
                  rf"{name}: params.scale must have shape \(x.shape\[-1\],\) = \(4,\)"),
        ErrorCase("empty feature axis", lambda: (_affine(0, jnp.float32, cls), jnp.ones((2, 0))), ValueError,
                  r"x.shape\[-1\].*must be >= 1"),
        ErrorCase("integer x", lambda: (ok()[0], jnp.ones((2, 3), jnp.int32)), TypeError,
                  rf"{name}: x must be a floating"),
        ErrorCase("params a plain tuple", lambda: (tuple(ok()[0]), ok()[1]), TypeError,
                  rf"{name}: params must be a"),
        ErrorCase("eps = 0", ok, ValueError, r"eps must be > 0", {"eps": 0.0}),
        ErrorCase("eps not a number", ok, TypeError, r"eps must be a Python real number", {"eps": "small"}),
    )


def _bn(x, state_c=3):
    state = BatchNormState(np.zeros(state_c, np.float32), np.ones(state_c, np.float32))
    return lambda: (_affine(3, jnp.float32, BatchNormParams), x, state)


BATCH_NORM_ERRORS = (
    ErrorCase("x of rank 1", _bn(np.ones(3)), ValueError, r"batch_norm: x must have at least 2"),
    ErrorCase("channels first (NCHW)", _bn(np.ones((2, 3, 4, 4))), ValueError,
              r"batch_norm: params.scale must have shape \(x.shape\[-1\],\) = \(4,\)"),
    ErrorCase("state of the wrong size", _bn(np.ones((2, 3)), state_c=4), ValueError,
              r"batch_norm: state.mean must have"),
    ErrorCase("integer x", _bn(np.ones((2, 3), np.int32)), TypeError, r"batch_norm: x must be a floating"),
    ErrorCase("momentum > 1", _bn(np.ones((2, 3))), ValueError, r"momentum must be in \[0, 1\]",
              {"momentum": 1.5}),
    ErrorCase("eps < 0", _bn(np.ones((2, 3))), ValueError, r"eps must be > 0", {"eps": -1e-5}),
    ErrorCase("training not a bool", _bn(np.ones((2, 3))), TypeError, r"training must be True or False",
              {"training": "yes"}),
    ErrorCase("empty batch in training", _bn(np.ones((0, 3))), ValueError, r"at least one example"),
)


# the entries --------------------------------------------------------------------------------------
ENTRIES = (
    LayerInfo(
        layer_norm, _norm_args(LayerNormParams), NORM_SHAPES, hypers=({}, {"eps": 1e-3}), value_kinds=KINDS,
        edge_cases=(
            EdgeCase("constant rows", lambda dt: (_affine(5, dt), jnp.asarray(_CONSTANT_ROWS, dt)),
                     "zero variance: y = bias exactly, scale_bar = 0, finite x_bar = rstd * (g - mean(g))",
                     _check_bias_only),
            EdgeCase("nearly constant rows", lambda dt: (_affine(5, dt), jnp.asarray(_NEAR_CONSTANT, dt)),
                     "1e8 + 1e-3 * noise (float64): y to 1e-12 of the exact answer (shifted two-pass)",
                     _check_near_constant),
            EdgeCase("size-1 feature axis",
                     lambda dt: (_affine(1, dt), jnp.asarray([[3.0], [-1.0], [0.0]], dt)),
                     "D = 1: y = bias, x_bar = 0 exactly",
                     lambda y, c: _check_bias_only(y, c, x_bar_zero=True)),
            EdgeCase("huge values", lambda dt: (_affine(5, dt), _huge(dt)),
                     "x = z * max**0.75 (squares overflow): y = layer_norm(z), x_bar = x_bar(z) / max**0.75",
                     _check_huge((-1,), LayerNormParams)),
        ),
        error_cases=_norm_errors("layer_norm", LayerNormParams),
        mutants=LAYER_NORM_MUTANTS,
        bench_shape=(256, 1024),
    ),
    LayerInfo(
        rms_norm, _norm_args(RMSNormParams), NORM_SHAPES, hypers=({}, {"eps": 1e-2}), value_kinds=KINDS,
        edge_cases=(
            EdgeCase("zero rows", lambda dt: (_affine(5, dt, RMSNormParams), jnp.zeros((4, 5), dt)),
                     "y = 0 exactly, x_bar = scale / sqrt(eps) (finite)", _check_rms_zero_rows),
            EdgeCase("size-1 feature axis",
                     lambda dt: (_affine(1, dt, RMSNormParams), jnp.asarray([[3.0], [-1.0], [0.5]], dt)),
                     "D = 1: y = scale * x / sqrt(x**2 + eps), finite", lambda y, c: _finite_tree(c)),
            EdgeCase("huge values", lambda dt: (_affine(5, dt, RMSNormParams), _huge(dt)),
                     "x = z * max**0.75 (squares overflow): y = rms_norm(z), x_bar = x_bar(z) / max**0.75",
                     _check_huge((-1,), RMSNormParams)),
        ),
        error_cases=_norm_errors("rms_norm", RMSNormParams),
        mutants=RMS_NORM_MUTANTS,
        bench_shape=(256, 1024),
    ),
    LayerInfo(
        batch_norm, _batch_norm_args, BATCH_NORM_SHAPES, value_kinds=KINDS,
        hypers=({}, {"training": False}, {"training": True, "momentum": 0.5, "eps": 1e-3}),
        edge_cases=(
            EdgeCase("constant channels (training)", lambda dt: _bn_args(_BN_CONSTANT, dt),
                     "zero batch variance: y = bias, scale_bar = 0, finite x_bar; "
                     "the running var shrinks by 1 - momentum",
                     _check_bn_constant),
            EdgeCase("batch of one (training)", lambda dt: _bn_args([[1.0, -2.0, 5.0]], dt),
                     "M = 1: y = bias, x_bar = 0 exactly",
                     lambda out, c: _check_bias_only(out, c, x_bar_zero=True)),
            EdgeCase("inference mode", _inference_args,
                     "y = (x - state.mean) / sqrt(state.var + eps) * scale + bias; new_state = state; "
                     "x_bar = scale * rstd; no gradient for state", _check_inference, {"training": False}),
            EdgeCase("huge values (training)", lambda dt: _bn_args(_huge(dt, (6, 3)), dt),
                     "x = z * max**0.75 (squares overflow): y = batch_norm(z), x_bar = x_bar(z) / max**0.75",
                     _check_huge((0,), BatchNormParams)),
        ),
        error_cases=BATCH_NORM_ERRORS,
        mutants=BATCH_NORM_MUTANTS,
        bench_shape=(32, 16, 16, 64),
        finite_differences=False,
        notes="Running statistics are not differentiated by "
              "design (state's cotangent is None, new_state's is ignored), so finite differences, which "
              "see y (inference) and new_state depend on state and x, disagree; tests/test_norm.py checks "
              "finite differences of y w.r.t. (params, x) with state held fixed.",
    ),
)
