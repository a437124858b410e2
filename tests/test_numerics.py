"""Numerically hard input: stable, documented answers that match autodiff's convention.

Also an independent forward witness: our forwards against jax.nn / optax on ordinary values.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxback as jb
from jaxback.testing import check_vjp

INF = jnp.inf


def _grad(fn, x, **hyper):
    return jax.vmap(jax.grad(lambda v: fn(v, **hyper)))(x)


@pytest.mark.parametrize("layer, reference", [
    (jb.relu, jax.nn.relu), (jb.leaky_relu, jax.nn.leaky_relu), (jb.sigmoid, jax.nn.sigmoid),
    (jb.tanh, jnp.tanh), (jb.softplus, jax.nn.softplus), (jb.silu, jax.nn.silu),
    (jb.gelu, functools.partial(jax.nn.gelu, approximate=False)),
    (jb.bind(jb.gelu, approximate=True), functools.partial(jax.nn.gelu, approximate=True)),
    (jb.softmax, jax.nn.softmax), (jb.log_softmax, jax.nn.log_softmax),
], ids=lambda v: getattr(v, "name", ""))
def test_forward_and_gradient_match_jax_nn_on_ordinary_values(layer, reference):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 7)) * 3)
    np.testing.assert_allclose(layer(x), reference(x), rtol=1e-12, atol=1e-14)
    y_bar = jnp.asarray(np.random.default_rng(1).standard_normal((5, 7)))
    ours = jax.vjp(layer, x)[1](y_bar)[0]
    theirs = jax.vjp(reference, x)[1](y_bar)[0]
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_losses_match_optax():
    rng = np.random.default_rng(2)
    logits, labels = jnp.asarray(rng.standard_normal((6, 4))), jnp.asarray(rng.integers(0, 4, 6))
    np.testing.assert_allclose(
        jb.softmax_cross_entropy(logits, labels),
        optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), rtol=1e-12)
    targets = jnp.asarray(rng.random((6, 4)))
    np.testing.assert_allclose(
        jb.binary_cross_entropy_with_logits(logits, targets),
        optax.sigmoid_binary_cross_entropy(logits, targets).mean(), rtol=1e-12)
    np.testing.assert_allclose(jb.mse(logits, targets), optax.l2_loss(logits, targets).mean() * 2, rtol=1e-12)


def test_kink_conventions_match_jax_nn():
    """NOTE-documented subgradients: relu'(0) = 0, leaky_relu'(0) = 1, as jax.nn."""
    zero = jnp.zeros(1)
    assert _grad(jb.relu, zero)[0] == 0.0 == jax.grad(jax.nn.relu)(0.0)
    assert _grad(jb.leaky_relu, zero)[0] == 1.0 == jax.grad(jax.nn.leaky_relu)(0.0)
    assert _grad(jb.relu.auto, zero)[0] == 0.0 and _grad(jb.leaky_relu.auto, zero)[0] == 1.0
    np.testing.assert_allclose(_grad(jb.softplus, zero), [0.5])  # smooth: no kink artefact
    np.testing.assert_allclose(_grad(jb.softplus.auto, zero), [0.5])


def test_huge_logits_give_finite_cross_entropy_and_gradients():
    logits = jnp.array([[1e4, -1e4, 0.0], [3e300, 1e300, -3e300]])
    labels = jnp.array([1, 0])
    loss, grad = jax.value_and_grad(jb.softmax_cross_entropy)(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, jax.grad(jb.softmax_cross_entropy.auto)(logits, labels), rtol=1e-12)
    np.testing.assert_allclose(jb.softmax(jnp.array([1e4, 0.0])), [1.0, 0.0])


def test_minus_inf_masks_softmax_entries_and_nan_stays_in_its_row():
    x = jnp.array([[0.0, -INF, 1.0], [jnp.nan, 0.0, 1.0], [1.0, 2.0, 3.0]])
    y_bar = jnp.ones_like(x).at[:, 0].set(2.0)
    y, vjp = jax.vjp(jb.softmax, x)
    (x_bar,) = vjp(y_bar)
    assert y[0, 1] == 0 and x_bar[0, 1] == 0 and np.all(np.isfinite(x_bar[0]))
    assert np.all(np.isnan(y[1])) and np.all(np.isfinite(y[::2]))
    assert np.all(np.isfinite(x_bar[::2]))


def test_empty_batches_work():
    params = jb.linear.init(jax.random.PRNGKey(0), 5, 3, jnp.float64)
    check_vjp(jb.linear, params, jnp.zeros((0, 5)))
    loss, grads = jax.value_and_grad(jb.softmax_cross_entropy)(jnp.zeros((0, 4)), jnp.zeros(0, jnp.int32))
    assert loss == 0.0 and grads.shape == (0, 4)
    assert jb.mse(jnp.zeros((0, 3)), jnp.zeros((0, 3))) == 0.0


def test_cotangents_keep_each_primal_dtype():
    params = jb.linear.init(jax.random.PRNGKey(0), 4, 2, jnp.float32)
    x = jnp.ones((3, 4), jnp.bfloat16)
    y, res = jb.linear.fwd(params, x)
    params_bar, x_bar = jb.linear.bwd(res, jnp.ones_like(y))
    assert y.dtype == jnp.float32 and x_bar.dtype == jnp.bfloat16
    assert params_bar.w.dtype == params_bar.b.dtype == jnp.float32
    check_vjp(jb.linear, params, x)
    logits, labels = jnp.ones((3, 4), jnp.float32), jnp.array([0, 1, 2])
    _, res = jb.softmax_cross_entropy.fwd(logits, labels)
    logits_bar, labels_bar = jb.softmax_cross_entropy.bwd(res, jnp.float32(1))
    assert logits_bar.dtype == jnp.float32 and labels_bar is None
    assert jax.vjp(jb.softmax_cross_entropy, logits, labels)[1](jnp.float32(1))[1].dtype == jax.dtypes.float0
