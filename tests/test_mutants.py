"""Mutation tests: deliberately wrong rules that check_vjp must reject, every one.

A plausible but wrong bwd runs silently and even trains (jax #17496); these prove the checker sees
the classic mistakes. Each mutant keeps the layer's forward and swaps in a broken bwd.
"""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxback as jb
from jaxback._linear import linear_bwd
from jaxback.testing import check_vjp

RNG = np.random.default_rng(0)


def _linear_args(batch_shape=(4,), n=3, m=3, dtype=jnp.float64):
    params = jb.LinearParams(jnp.asarray(RNG.standard_normal((n, m)), dtype),
                             jnp.asarray(RNG.standard_normal(m), dtype))
    return params, jnp.asarray(RNG.standard_normal((*batch_shape, n)), dtype)


def _with_bwd(layer, bwd, name):
    return jb.make_layer(layer.auto, layer.fwd, bwd, name=name, init=layer.init)


def _linear_mutant(edit):
    def bwd(res, y_bar):
        (params, x), flat = res, res[1].reshape(-1, res[0].w.shape[0])
        g = y_bar.reshape(-1, params.w.shape[1])
        x_bar, w_bar, b_bar = y_bar @ params.w.T, flat.T @ g, g.sum(0)
        x_bar, w_bar, b_bar = edit(params, x, y_bar, x_bar, w_bar, b_bar)
        return jb.LinearParams(w_bar, b_bar), x_bar
    return bwd


LINEAR_MUTANTS = {
    "bias mean instead of sum": lambda p, x, g, xb, wb, bb: (xb, wb, g.reshape(-1, g.shape[-1]).mean(0)),
    "missing transpose in x_bar": lambda p, x, g, xb, wb, bb: (g @ p.w, wb, bb),
    "missing transpose in w_bar": lambda p, x, g, xb, wb, bb: (xb, wb.T, bb),
    "sign flip in w_bar": lambda p, x, g, xb, wb, bb: (xb, -wb, bb),
    "off by scale in x_bar": lambda p, x, g, xb, wb, bb: (2 * xb, wb, bb),
    "w_bar from the last example only": lambda p, x, g, xb, wb, bb: (
        xb, x.reshape(-1, x.shape[-1])[-1:].T @ g.reshape(-1, g.shape[-1])[-1:], bb),
    "no reduction over extra batch dims": lambda p, x, g, xb, wb, bb: (xb, wb, g.sum(0)),
    "wrong dtype in w_bar": lambda p, x, g, xb, wb, bb: (xb, wb.astype(jnp.float32), bb),
}


@pytest.mark.parametrize("mutant", LINEAR_MUTANTS, ids=list(LINEAR_MUTANTS))
def test_linear_mutant_is_killed(mutant):
    layer = _with_bwd(jb.linear, _linear_mutant(LINEAR_MUTANTS[mutant]), f"linear[{mutant}]")
    with pytest.raises(AssertionError, match=r"check_vjp\(linear\["):
        check_vjp(layer, *_linear_args(batch_shape=(2, 4)))


def test_unmutated_linear_passes_the_same_check():
    """The mutant harness itself is right: with no edit it passes (so kills are real)."""
    layer = _with_bwd(jb.linear, _linear_mutant(lambda p, x, g, xb, wb, bb: (xb, wb, bb)), "linear[none]")
    check_vjp(layer, *_linear_args(batch_shape=(2, 4)))


X = jnp.asarray(RNG.standard_normal((4, 5)))
LABELS = jnp.asarray(RNG.integers(0, 5, 4), jnp.int32)
TARGET = jnp.asarray(RNG.standard_normal((4, 5)))

OTHER_MUTANTS = {
    # name: (layer, args, wrong bwd)
    "sigmoid: y * y instead of y * (1 - y)": (jb.sigmoid, (X,), lambda y, g: (g * y * y,)),
    "tanh: 1 - y instead of 1 - y**2": (jb.tanh, (X,), lambda y, g: (g * (1 - y),)),
    "relu: passes the gradient everywhere": (jb.relu, (X,), lambda y, g: (g,)),
    "softmax: missing the sum term": (jb.softmax, (X,), lambda y, g: (y * g,)),
    "log_softmax: sign flip of the sum term": (
        jb.log_softmax, (X,), lambda y, g: (g + jnp.exp(y) * g.sum(-1, keepdims=True),)),
    "softmax_cross_entropy: sum instead of mean": (
        jb.softmax_cross_entropy, (X, LABELS),
        lambda res, g: (g * (jnp.exp(res[0] - res[2][:, None]) - jnp.eye(5)[res[1]]), None)),
    "mse: target cotangent with the wrong sign": (
        jb.mse, (X, TARGET), lambda res, g: ((2 * g * res[0] / res[0].size),) * 2),
    "mse: wrong dtype": (
        jb.mse, (X, TARGET), lambda res, g: ((2 * g * res[0] / res[0].size).astype(jnp.float32),
                                              (-2 * g * res[0] / res[0].size))),
}


@pytest.mark.parametrize("mutant", OTHER_MUTANTS, ids=list(OTHER_MUTANTS))
def test_layer_mutant_is_killed(mutant):
    layer, args, bwd = OTHER_MUTANTS[mutant]
    with pytest.raises(AssertionError, match="check_vjp"):
        check_vjp(_with_bwd(layer, bwd, f"{layer.name}[mutant]"), *args)
