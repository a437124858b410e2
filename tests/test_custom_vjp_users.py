"""check_vjp on code as users write it: plain jax.custom_vjp functions, no jaxback Layer.

Each correct rule passes in float64, float32 and bfloat16; each wrong one (sign, missing term, sum
for mean, ignored output, a 1e-4 scale, a wrong cotangent dtype) is killed with AssertionError.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxback.testing import check_vjp

DTYPES = [jnp.float64, jnp.float32, jnp.bfloat16]
by_dtype = pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: jnp.dtype(d).name)


def _normal(seed, shape, dtype):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


# a dense layer over a dict of params with a None entry ----------------------------------------------
def dense_plain(params, x):
    return jnp.tanh(x @ params["w"] + params["b"]) * params["g"]


def make_dense(edit=lambda cots, res: cots):
    """``dense_plain`` with a hand rule; ``edit(cotangents, res)`` makes it wrong."""
    @jax.custom_vjp
    def dense(params, x):
        return dense_plain(params, x)

    def fwd(params, x):
        t = jnp.tanh(x @ params["w"] + params["b"])
        return t * params["g"], (params, x, t)

    def bwd(res, y_bar):
        params, x, t = res
        z_bar = y_bar * params["g"] * (1 - t * t)                       # (N, m)
        params_bar = {"w": (x.T @ z_bar).astype(params["w"].dtype), "b": z_bar.sum(0).astype(params["b"].dtype),
                      "g": (y_bar * t).sum(0).astype(params["g"].dtype), "frozen": None}
        return edit((params_bar, (z_bar @ params["w"].T).astype(x.dtype)), res)

    dense.defvjp(fwd, bwd)
    return dense


def _dense_args(dtype):
    params = {"w": _normal(0, (4, 3), dtype), "b": _normal(1, (3,), dtype), "g": _normal(2, (3,), dtype),
              "frozen": None}
    return params, _normal(3, (5, 4), dtype)


# softmax cross-entropy with integer labels ------------------------------------------------------------
def xent_plain(logits, labels):
    logp = jax.nn.log_softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
    return -jnp.take_along_axis(logp, labels[:, None], 1).mean().astype(logits.dtype)


def make_xent(grad_rule=lambda p, onehot, n: (p - onehot) / n, cast_to=None):
    @jax.custom_vjp
    def xent(logits, labels):
        return xent_plain(logits, labels)

    def fwd(logits, labels):
        return xent_plain(logits, labels), (logits, labels)

    def bwd(res, y_bar):
        logits, labels = res
        p = jax.nn.softmax(logits.astype(jnp.promote_types(logits.dtype, jnp.float32)))
        onehot = jax.nn.one_hot(labels, logits.shape[1], dtype=p.dtype)
        logits_bar = y_bar * grad_rule(p, onehot, logits.shape[0])
        return logits_bar.astype(cast_to or logits.dtype), None   # labels: no cotangent

    xent.defvjp(fwd, bwd)
    return xent


def _xent_args(dtype):
    return _normal(4, (6, 5), dtype), jnp.asarray([0, 4, 2, 2, 1, 3])


# a tuple output: (mean, centred) of a NamedTuple input --------------------------------------------------
class Pair(NamedTuple):
    x: jax.Array
    scale: jax.Array


def moments_plain(pair):
    mean = (pair.x * pair.scale).mean(0)
    return mean, pair.x * pair.scale - mean


def make_moments(use_second_output=True):
    @jax.custom_vjp
    def moments(pair):
        return moments_plain(pair)

    def fwd(pair):
        return moments_plain(pair), pair

    def bwd(pair, y_bar):
        mean_bar, centred_bar = y_bar
        n = pair.x.shape[0]
        u_bar = jnp.broadcast_to(mean_bar / n, pair.x.shape)          # d mean / d (x * scale)
        if use_second_output:
            u_bar = u_bar + centred_bar - centred_bar.mean(0)          # d centred / d (x * scale)
        return (Pair((u_bar * pair.scale).astype(pair.x.dtype), (u_bar * pair.x).sum(0).astype(pair.scale.dtype)),)

    moments.defvjp(fwd, bwd)
    return moments


def _moments_args(dtype):
    return (Pair(_normal(5, (4, 3), dtype), _normal(6, (3,), dtype)),)


# nondiff_argnums: a static axis, given through a closure ------------------------------------------------
@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def softmax(x, axis):
    return jax.nn.softmax(x, axis=axis)


def _softmax_fwd(x, axis):
    y = jax.nn.softmax(x, axis=axis)
    return y, y


def _softmax_bwd(axis, y, y_bar):
    return (y * (y_bar - (y * y_bar).sum(axis, keepdims=True)),)


softmax.defvjp(_softmax_fwd, _softmax_bwd)


# every correct rule, in every dtype -------------------------------------------------------------------
CORRECT = {
    "dense (dict params, None entry)": (make_dense(), dense_plain, _dense_args),
    "xent (integer labels)": (make_xent(), xent_plain, _xent_args),
    "moments (NamedTuple in, tuple out)": (make_moments(), moments_plain, _moments_args),
    "softmax (nondiff_argnums via closure)": (lambda x: softmax(x, 0), lambda x: jax.nn.softmax(x, axis=0),
                                              lambda dt: (_normal(7, (3, 4), dt),)),
}


@pytest.mark.parametrize("name", CORRECT)
@by_dtype
def test_a_correct_rule_passes(name, dtype):
    f, reference, args = CORRECT[name]
    check_vjp(f, *args(dtype), reference=reference, fd=dtype == jnp.float64)


def test_float32_finite_differences_pass_on_a_correct_rule():
    check_vjp(make_dense(), *_dense_args(jnp.float32), reference=dense_plain)


# every wrong rule, killed -------------------------------------------------------------------------------
def _edit_x_bar(fn):
    return lambda cots, res: (cots[0], fn(cots[1]))


def _edit_param(name, fn):
    return lambda cots, res: ({**cots[0], name: fn(cots[0][name])}, cots[1])


WRONG = {
    "sign of x_bar": (make_dense(_edit_x_bar(lambda x_bar: -x_bar)), dense_plain, _dense_args, r"args\[1\]"),
    "1e-4 scale on w_bar": (make_dense(_edit_param("w", lambda w: w * (1 + 1e-4))), dense_plain, _dense_args,
                            r"args\[0\]\['w'\]"),
    "w_bar in float32": (make_dense(_edit_param("w", lambda w: w.astype(jnp.float32))), dense_plain, _dense_args,
                         r"args\[0\]\['w'\]: cotangent has shape=\(4, 3\) dtype=float32"),
    "missing onehot term": (make_xent(lambda p, onehot, n: p / n), xent_plain, _xent_args, r"args\[0\]"),
    "sum for mean": (make_xent(lambda p, onehot, n: p - onehot), xent_plain, _xent_args, r"args\[0\]"),
    "logits_bar in float32": (make_xent(cast_to=jnp.float32), xent_plain, _xent_args,
                              r"VJP: args\[0\]: cotangent has shape=\(6, 5\) dtype=float32"),
    "ignored second output": (make_moments(use_second_output=False), moments_plain, _moments_args,
                              r"args\[0\]\.x"),
}


@pytest.mark.parametrize("name", WRONG)
def test_a_wrong_rule_is_killed(name):
    f, reference, args, where = WRONG[name]
    with pytest.raises(AssertionError, match=where):
        check_vjp(f, *args(jnp.float64), reference=reference)


def test_a_wrong_dtype_is_killed_in_bfloat16():
    with pytest.raises(AssertionError, match=r"dtype=float32 but the primal \(bfloat16\[6, 5\]\)"):
        check_vjp(WRONG["logits_bar in float32"][0], *_xent_args(jnp.bfloat16), reference=xent_plain, fd=False)


# the API around it -------------------------------------------------------------------------------------
def test_a_plain_callable_needs_a_reference():
    with pytest.raises(TypeError, match=r"check_vjp\(dense\): f is not a jaxback Layer.*reference="):
        check_vjp(make_dense(), *_dense_args(jnp.float64))
    with pytest.raises(TypeError, match=r"check_vjp\(<lambda>\)"):
        check_vjp(lambda x: x, jnp.ones(2))


def test_grad_of_grad_is_checked_with_order_2():
    """The xent rule above has the right first derivative; its bwd is made of JAX ops, so reverse
    over reverse works, and a rule whose second derivative is wrong is caught."""
    check_vjp(make_xent(), *_xent_args(jnp.float64), reference=xent_plain, order=2)
    frozen = make_xent(lambda p, onehot, n: (jax.lax.stop_gradient(p) - onehot) / n)
    check_vjp(frozen, *_xent_args(jnp.float64), reference=xent_plain)   # first order: right
    with pytest.raises(AssertionError, match=r"grad of grad, args\[0\]"):
        check_vjp(frozen, *_xent_args(jnp.float64), reference=xent_plain, order=2)


def test_boolean_and_python_scalar_arguments_take_no_cotangent():
    @jax.custom_vjp
    def masked_scale(x, mask, c):
        return jnp.where(mask, x * c, 0.0)

    masked_scale.defvjp(lambda x, mask, c: (masked_scale(x, mask, c), (mask, c)),
                        lambda res, g: (jnp.where(res[0], g * res[1], 0.0), None, None))
    x, mask = _normal(8, (5,), jnp.float64), jnp.asarray([True, False, True, True, False])
    with pytest.raises(AssertionError, match=r"args\[2\]"):  # c is a float: its None cotangent is wrong
        check_vjp(masked_scale, x, mask, 3.0, reference=lambda x, m, c: jnp.where(m, x * c, 0.0))
    check_vjp(lambda x, mask: masked_scale(x, mask, 3.0), x, mask,
              reference=lambda x, m: jnp.where(m, x * 3.0, 0.0))


def _equinox_scaled(eqx, b_bar_rule):
    @eqx.filter_custom_vjp
    def scaled(params, x):
        return params["a"] * jnp.sin(x) + params["b"]

    @scaled.def_fwd
    def fwd(perturbed, params, x):
        return params["a"] * jnp.sin(x) + params["b"], None

    @scaled.def_bwd
    def bwd(res, y_bar, perturbed, params, x):
        return {"a": (y_bar * jnp.sin(x)).sum(), "b": b_bar_rule(y_bar)}

    return scaled


def test_equinox_filter_custom_vjp():
    """equinox differentiates only the first argument of a filter_custom_vjp: close over the rest."""
    eqx = pytest.importorskip("equinox")
    params, x = {"a": jnp.asarray(1.5), "b": jnp.asarray(0.5)}, _normal(9, (4,), jnp.float64)
    reference = lambda p: p["a"] * jnp.sin(x) + p["b"]
    scaled = _equinox_scaled(eqx, lambda y_bar: y_bar.sum())
    check_vjp(lambda p: scaled(p, x), params, reference=reference)
    wrong = _equinox_scaled(eqx, lambda y_bar: y_bar.mean())
    with pytest.raises(AssertionError, match=r"cotangent of args\[0\]\['b'\]"):
        check_vjp(lambda p: wrong(p, x), params, reference=reference)
    with pytest.raises(AssertionError, match="the VJP of f failed to trace: RuntimeError: Unexpected tangent"):
        check_vjp(scaled, params, x, reference=lambda p, x: p["a"] * jnp.sin(x) + p["b"])
