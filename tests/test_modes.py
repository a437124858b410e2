"""The three gradient modes on an MLP: explicit (backprop), vjp (jax.grad through our rules), auto."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxback as jb

MODEL = jb.serial(jb.linear, jb.tanh, jb.linear, jb.bind(jb.leaky_relu, negative_slope=0.1), jb.linear)


def _problem(dtype=jnp.float64):
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    params = (jb.linear.init(keys[0], 6, 8, dtype), None, jb.linear.init(keys[1], 8, 8, dtype), None,
              jb.linear.init(keys[2], 8, 4, dtype))
    x = jax.random.normal(keys[3], (16, 6), dtype)
    labels = jnp.arange(16) % 4
    return params, x, labels


def explicit(params, x, labels):
    return jb.backprop(MODEL, jb.softmax_cross_entropy, params, x, labels)


def vjp_mode(params, x, labels):
    return jax.value_and_grad(lambda p: jb.softmax_cross_entropy(MODEL(p, x), labels))(params)


def auto_mode(params, x, labels):
    return jax.value_and_grad(lambda p: jb.softmax_cross_entropy.auto(MODEL.auto(p, x), labels))(params)


@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32], ids=str)
def test_three_modes_agree(dtype):
    args = _problem(dtype)
    (l_e, g_e), (l_v, g_v), (l_a, g_a) = (jax.jit(m)(*args) for m in (explicit, vjp_mode, auto_mode))
    # explicit and vjp run the same rules in the same order: bit-for-bit on one backend
    assert l_e == l_v
    jax.tree_util.tree_map(np.testing.assert_array_equal, g_e, g_v)
    rtol = 1e-12 if dtype == jnp.float64 else 1e-5
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol), g_e, g_a)
    np.testing.assert_allclose(l_e, l_a, rtol=rtol)


def test_explicit_mode_uses_no_jax_autodiff(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("explicit mode must not call JAX autodiff")
    for name in ("grad", "vjp", "value_and_grad", "jacrev", "linearize"):
        monkeypatch.setattr(jax, name, forbidden)
    loss, grads = explicit(*_problem())
    assert np.isfinite(loss) and grads[1] is None and grads[0].w.shape == (6, 8)


def test_seed_update_rule_is_optax_weight_decay_then_sgd():
    """W <- W - lr * (dW + lam * W), with every dW taken from the weights before the update."""
    params, x, labels = _problem()
    lr, lam = 0.1, 1e-3
    _, grads = explicit(params, x, labels)
    opt = optax.chain(optax.add_decayed_weights(lam), optax.sgd(lr))
    updates, _ = opt.update(grads, opt.init(params), params)
    new = optax.apply_updates(params, updates)
    by_hand = jax.tree_util.tree_map(lambda w, dw: w - lr * (dw + lam * w), params, grads)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-14), new, by_hand)


def test_nested_serial_and_parameter_free_models():
    inner = jb.serial(jb.linear, jb.sigmoid)
    model = jb.serial(inner, jb.linear)
    params, x, labels = _problem()
    nested = ((params[0], None), params[2])
    x8 = x
    l_e, g_e = jb.backprop(model, jb.softmax_cross_entropy, nested, x8, labels % 8)
    l_a, g_a = jax.value_and_grad(lambda p: jb.softmax_cross_entropy.auto(model.auto(p, x8), labels % 8))(nested)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), g_e, g_a)
    free = jb.serial(jb.tanh, jb.softmax)
    loss, grads = jb.backprop(free, jb.mse, (None, None), x, x)
    assert grads == (None, None)


def test_per_example_gradients_with_vmap():
    params, x, labels = _problem()

    def one(p, xi, li):
        return jb.backprop(MODEL, jb.softmax_cross_entropy, p, xi[None], li[None])[1]

    per_example = jax.jit(jax.vmap(one, in_axes=(None, 0, 0)))(params, x, labels)
    mean_of_per_example = jax.tree_util.tree_map(lambda g: g.mean(0), per_example)
    _, batch_grads = explicit(params, x, labels)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15),
                           mean_of_per_example, batch_grads)
