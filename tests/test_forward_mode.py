"""Forward mode through models: ``jax.jvp``, ``jacfwd``, ``linearize``, a Hessian-vector product
(jvp of grad), ``jax.hessian`` and vmap of jvp through serial, residual, parallel and remat chain the
layers' hand JVPs and match autodiff of the model's ``.auto`` in float64. A poisoned jvp changes
``jax.jvp`` and not ``jax.grad``, a poisoned bwd the reverse: the hand rules are what runs, each in
its own mode (remat's tangent rule is its inner layers')."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

import jaxback as jb
from jaxback.testing import random_cotangent

KEY = jax.random.PRNGKey(0)
X = tuple(jax.random.normal(jax.random.PRNGKey(i), (2, 3), jnp.float64) for i in (1, 2))  # parallel's two inputs


def _model(inner=jb.tanh):
    """Every combinator on main (``inner`` sits inside remat), on layers with hand JVPs."""
    chain = jb.serial(jb.linear.sized(4), jb.tanh, jb.residual(jb.serial(jb.linear.sized(4), jb.gelu)),
                      jb.remat(jb.serial(jb.linear.sized(4), inner)), jb.linear.sized(3))
    return jb.parallel(chain, jb.serial(jb.relu, jb.linear.sized(2)))


MODEL = _model()
PARAMS = random_cotangent(MODEL.init(KEY, X)[0], seed=3)  # weights of order 1: every layer matters
TANGENTS = random_cotangent((PARAMS, X), seed=4)


def _close(a, b, tol=1e-10):
    jax.tree_util.tree_map(lambda u, v: np.testing.assert_allclose(u, v, rtol=tol, atol=tol), a, b)


def _loss(forward):
    return lambda params, x: sum(jnp.sum(jnp.sin(y)) for y in forward(params, x))


@functools.cache  # each model's jvp compiles once for the whole file
def _jvp(forward):
    return jax.jit(lambda p, x, t: jax.jvp(forward, (p, x), t))(PARAMS, X, TANGENTS)


def _both(transform):
    """``transform(f)(PARAMS, X)`` jitted, for the model and for its ``.auto``."""
    return [jax.jit(transform(f))(PARAMS, X) for f in (MODEL, MODEL.auto)]


def _linearized(params, x, tangents):
    y, tangent_map = jax.linearize(MODEL, params, x)
    return y, tangent_map(*tangents)


def test_jvp_linearize_jacfwd_match_autodiff():
    y, y_dot = _jvp(MODEL)
    _close((y, y_dot), _jvp(MODEL.auto))
    _close(jax.jit(_linearized)(PARAMS, X, TANGENTS), (y, y_dot))
    _close(*_both(lambda f: jax.jacfwd(f, argnums=1)))


def test_hessian_vector_product_hessian_and_vmap_of_jvp_match_autodiff():
    _close(*_both(lambda f: lambda p, x: jax.jvp(jax.grad(_loss(f), argnums=(0, 1)), (p, x), TANGENTS)))
    _close(*_both(lambda f: jax.hessian(_loss(f), argnums=1)))
    batch = random_cotangent(jax.tree_util.tree_map(lambda a: jnp.stack([a] * 3), (PARAMS, X)), seed=5)
    _close(*_both(lambda f: lambda p, x: jax.vmap(lambda t: jax.jvp(f, (p, x), t)[1])(batch)))


def _poisoned(jvp=None, bwd=None):
    """The model with the tanh inside remat rebuilt with a wrong jvp or a wrong bwd."""
    tanh = jb.tanh
    return _model(jb.make_layer(tanh.auto, tanh.fwd, bwd or tanh.bwd, name="tanh", jvp=jvp or tanh.jvp))


def _differ(a, b):
    return any(not np.allclose(u, v, rtol=1e-6) for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def test_the_hand_jvp_runs_in_forward_mode_and_the_hand_bwd_in_reverse():
    doubled_tangent = lambda primals, tangents: (lambda y, y_dot: (y, 2 * y_dot))(*jb.tanh.jvp(primals, tangents))  # noqa: E731
    doubled_cotangent = lambda res, y_bar: tuple(2 * g for g in jb.tanh.bwd(res, y_bar))  # noqa: E731
    grad = lambda model: jax.jit(jax.grad(_loss(model), argnums=(0, 1)))(PARAMS, X)  # noqa: E731
    clean_jvp, clean_grad = _jvp(MODEL), grad(MODEL)
    bad_jvp = _poisoned(jvp=doubled_tangent)
    y, y_dot = _jvp(bad_jvp)
    assert _differ(y_dot, clean_jvp[1])
    _close(y, clean_jvp[0])
    _close(grad(bad_jvp), clean_grad, tol=1e-13)
    bad_bwd = _poisoned(bwd=doubled_cotangent)
    assert _differ(grad(bad_bwd), clean_grad)
    _close(_jvp(bad_bwd), clean_jvp, tol=1e-13)
