"""Registry entry for group_norm (``ENTRIES``, loaded by ``_builtin.builtin_registry()``).

NHWC shapes with C = 4 or 8 (so 1, 2 and 4 groups divide every shape), a single pixel and a plain
(N, C); settings: one group (layer_norm over an example), two, four (instance norm at C = 4).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from .._group_norm import GroupNormParams, _grouped, group_norm, group_norm_bwd, group_norm_fwd
from .._norm import LayerNormParams, layer_norm
from .._statistics import centered, sum_rows
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

__all__ = ["ENTRIES"]

SHAPES = ((2, 3, 3, 4), (1, 2, 2, 8), (3, 4), (2, 1, 1, 4))


def _f64(a):
    return np.asarray(a, np.float64)


def _args(rng, dtype, shape, kind):
    c = shape[-1]
    params = GroupNormParams(jnp.asarray(1 + 0.5 * rng.standard_normal(c), dtype), jnp.asarray(rng.standard_normal(c), dtype))
    return params, jnp.asarray(values(rng, shape, kind), dtype)


def _with_x_bar(edit):
    """The true rule with x_bar replaced by ``edit(g, x_hat, rstd, axes)`` (grouped arrays)."""

    def bwd(res, y_bar, *, num_groups=None, eps=1e-5):
        params, x, mu, rstd = res
        params_bar, _ = group_norm_bwd(res, y_bar, num_groups=num_groups, eps=eps)
        xg, axes = _grouped(x.astype(rstd.dtype), num_groups)
        g, _ = _grouped(y_bar.astype(rstd.dtype) * params.scale, num_groups)
        x_bar = edit(g, centered(xg, mu, axes) * rstd, rstd, axes)
        return params_bar, x_bar.reshape(x.shape).astype(x.dtype)

    return bwd


def _with_x_hat_dot(edit):
    """The true jvp with x_hat_dot = ``edit(x_dot, x_hat, rstd, axes)`` (grouped arrays): the
    Jacobian is symmetric, so the x_bar edits below are tangent edits too."""

    def jvp(primals, tangents, *, num_groups=None, eps=1e-5):
        (params, x), (params_dot, x_dot) = primals, tangents
        y, (_, _, mu, rstd) = group_norm_fwd(params, x, num_groups=num_groups, eps=eps)
        xg, axes = _grouped(x.astype(rstd.dtype), num_groups)
        x_hat = centered(xg, mu, axes) * rstd
        x_hat_dot = edit(_grouped(x_dot, num_groups)[0], x_hat, rstd, axes).reshape(x.shape)
        y_dot = x_hat_dot * params.scale + x_hat.reshape(x.shape) * params_dot.scale + params_dot.bias
        return y, y_dot.astype(y.dtype)

    return jvp


def _no_projection(g, x_hat, rstd, axes):
    return rstd * (g - g.mean(axes, keepdims=True))  # drops the x_hat * mean(g * x_hat) term


def _group_mean_of_all(g, x_hat, rstd, axes):
    """Means over the whole example (all groups) instead of within each group."""
    every = axes + (g.ndim - 2,)
    return rstd * (g - g.mean(every, keepdims=True) - x_hat * (g * x_hat).mean(every, keepdims=True))


def _scale_bar_without_x_hat(res, y_bar, **hyper):
    params, x, _, _ = res
    params_bar, x_bar = group_norm_bwd(res, y_bar, **hyper)
    return GroupNormParams(sum_rows(y_bar, params.scale.dtype), params_bar.bias), x_bar


def _check_layer_norm(y, cots):
    """G = 1 with scale 1, bias 0 is layer_norm of each flattened example."""
    x = _X.reshape(2, -1)
    ref = layer_norm(LayerNormParams(jnp.ones(x.shape[1]), jnp.zeros(x.shape[1])), x)
    np.testing.assert_allclose(_f64(y).reshape(2, -1), _f64(ref), rtol=1e-10, atol=1e-12)


def _check_constant(y, cots):
    np.testing.assert_array_equal(_f64(y), np.broadcast_to(_f64(jnp.linspace(-1, 1, 4, dtype=y.dtype)), y.shape))
    assert all(np.isfinite(_f64(c)).all() for c in (cots[1], cots[0].scale, cots[0].bias))


_X = jnp.asarray(np.random.default_rng(5).standard_normal((2, 3, 3, 4)))
_P = GroupNormParams(jnp.ones(4), jnp.zeros(4))

GROUP_NORM = LayerInfo(
    group_norm, _args, SHAPES,
    hypers=({"num_groups": 2}, {"num_groups": 1}, {"num_groups": 4}, {"num_groups": 2, "eps": 1e-3}),
    edge_cases=(
        EdgeCase("one group is layer_norm", lambda dt: (GroupNormParams(jnp.ones(4, dt), jnp.zeros(4, dt)), _X.astype(dt)),
                 "num_groups=1, scale 1, bias 0: y = layer_norm of each example flattened", _check_layer_norm,
                 {"num_groups": 1}),
        EdgeCase("constant groups", lambda dt: (GroupNormParams(jnp.ones(4, dt), jnp.linspace(-1, 1, 4, dtype=dt)),
                                                jnp.full((1, 2, 2, 4), 3.0, dt)),
                 "zero variance: y = bias exactly and finite gradients", _check_constant, {"num_groups": 2}),
    ),
    error_cases=(
        ErrorCase("groups do not divide the channels", lambda: (_P, _X), ValueError,
                  r"group_norm: num_groups must be a positive int that divides the channels x.shape\[-1\] = 4; "
                  r"got num_groups=3", {"num_groups": 3}),
        ErrorCase("num_groups missing", lambda: (_P, _X), ValueError, r"group_norm: num_groups .* got num_groups=None"),
        ErrorCase("params of another channel count", lambda: (GroupNormParams(jnp.ones(8), jnp.zeros(8)), _X),
                  ValueError, r"group_norm: params.scale must have shape \(x.shape\[-1\],\) = \(4,\)", {"num_groups": 2}),
        ErrorCase("eps 0", lambda: (_P, _X), ValueError, r"group_norm: eps must be > 0", {"num_groups": 2, "eps": 0.0}),
        ErrorCase("rank 1 x", lambda: (_P, jnp.ones(4)), ValueError, r"group_norm: x must have at least 2 dim",
                  {"num_groups": 2}),
    ),
    mutants=(
        Mutant("x_bar without the x_hat * mean(g * x_hat) term", _with_x_bar(_no_projection)),
        Mutant("means over all groups of the example", _with_x_bar(_group_mean_of_all)),
        Mutant("scale_bar = sum(y_bar), no x_hat", _scale_bar_without_x_hat),
        Mutant("jvp: x_hat_dot without the x_hat * mean(x_dot * x_hat) term", jvp=_with_x_hat_dot(_no_projection)),
        Mutant("jvp: means over all groups of the example", jvp=_with_x_hat_dot(_group_mean_of_all)),
    ),
    bench_shape=(32, 16, 16, 64),  # batch_norm's benchmark images
    bench_hyper={"num_groups": 8},
)

ENTRIES = (GROUP_NORM,)
