"""layer_norm, rms_norm, batch_norm: the registry entries, plus what the generic checks cannot see
(the forward against a plain formula, the residuals, the running statistics, huge and low-precision
inputs, finite differences of batch_norm with its state held fixed)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxback._batch_norm import BatchNormParams, BatchNormState, batch_norm, batch_norm_state
from jaxback._layer import make_layer
from jaxback._norm import LayerNormParams, RMSNormParams, layer_norm, rms_norm
from jaxback.testing import check_vjp
from jaxback.testing._entries_norm import ENTRIES

INFO = {info.name: info for info in ENTRIES}
RNG = np.random.default_rng(0)


def _f64(a):
    return np.asarray(a, np.float64)


def _y_only(state, training):
    """batch_norm's y as a function of (params, x), state held fixed: what finite differences can check."""
    def fwd(params, x):
        (y, _), res = batch_norm.fwd(params, x, state, training=training)
        return y, res

    return make_layer(lambda params, x: batch_norm.auto(params, x, state, training=training)[0], fwd,
                      lambda res, y_bar: batch_norm.bwd(res, (y_bar, None), training=training)[:2],
                      name="batch_norm[y only]", takes_params=True)


# huge-value edge cases in float32 too (the registry runs edge cases in float64) -------------------
@pytest.mark.parametrize("info, case", [pytest.param(info, case, id=f"{info.name}-{case.name}")
                                        for info in ENTRIES for case in info.edge_cases if "huge" in case.name])
def test_huge_value_edge_cases_in_float32(info, case):
    args = case.args(jnp.float32)
    y, vjp = jax.vjp(functools.partial(info.layer.apply, **case.hyper), *args)
    case.check(y, vjp(jax.tree_util.tree_map(jnp.ones_like, y)))

# forward against the textbook formula --------------------------------------------------------------
def test_forwards_match_the_plain_formulas():
    x = RNG.standard_normal((2, 3, 4))  # shapes of the entries: each new shape compiles again
    s, b = RNG.standard_normal(4), RNG.standard_normal(4)
    xc = x - x.mean(-1, keepdims=True)
    ln = xc / np.sqrt((xc**2).mean(-1, keepdims=True) + 1e-5) * s + b
    y = layer_norm(LayerNormParams(jnp.asarray(s), jnp.asarray(b)), jnp.asarray(x))
    np.testing.assert_allclose(y, ln, rtol=1e-13)
    rms = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * s
    np.testing.assert_allclose(rms_norm(RMSNormParams(jnp.asarray(s)), jnp.asarray(x)), rms, rtol=1e-13)
    xb, s, b = RNG.standard_normal((2, 2, 2, 3)), s[:3], b[:3]
    xbc = xb - xb.mean((0, 1, 2))
    params = BatchNormParams(jnp.asarray(s), jnp.asarray(b))
    y, _ = batch_norm(params, jnp.asarray(xb), batch_norm_state(3, jnp.float64))
    bn = xbc / np.sqrt((xbc**2).mean((0, 1, 2)) + 1e-5) * s + b
    np.testing.assert_allclose(y, bn, rtol=1e-13, atol=1e-14)


def test_inits():
    p = layer_norm.init(jax.random.PRNGKey(0), 4, jnp.bfloat16)
    assert p.scale.dtype == jnp.bfloat16 and np.all(_f64(p.scale) == 1) and np.all(_f64(p.bias) == 0)
    assert np.all(_f64(rms_norm.init(None, 3).scale) == 1)
    bp, st = batch_norm.init(None, 3, jnp.float32), batch_norm_state(3)
    assert bp.scale.shape == st.mean.shape == (3,)
    assert np.all(_f64(st.var) == 1) and np.all(_f64(st.mean) == 0)


# residuals and dtypes ------------------------------------------------------------------------------
def test_residuals_are_x_and_per_row_statistics():
    params, x = INFO["layer_norm"].args(0, shape=(2, 3, 4))
    _, (p, saved_x, mu, rstd) = layer_norm.fwd(params, x)
    assert p is params and saved_x is x and mu.shape == rstd.shape == (2, 3, 1)
    _, (p, saved_x, rstd) = rms_norm.fwd(RMSNormParams(params.scale), x)
    assert saved_x is x and rstd.shape == (2, 3, 1)
    params, x, state = INFO["batch_norm"].args(0, shape=(2, 2, 2, 3))
    _, (_, saved_x, mu, rstd) = batch_norm.fwd(params, x, state)
    assert saved_x is x and mu.shape == rstd.shape == (1, 1, 1, 3)


def test_bfloat16_x_with_float32_params_keeps_each_dtype():
    params = LayerNormParams(jnp.ones(5, jnp.float32), jnp.zeros(5, jnp.float32))
    x = jnp.asarray(RNG.standard_normal((4, 5)), jnp.bfloat16)
    y, vjp = jax.vjp(layer_norm, params, x)
    params_bar, x_bar = vjp(jnp.ones_like(y))
    assert y.dtype == jnp.float32 and x_bar.dtype == jnp.bfloat16 and params_bar.scale.dtype == jnp.float32
    check_vjp(layer_norm, params, x, fd=False)


def test_float16_statistics_do_not_overflow():
    """1e4**2 overflows float16: the statistics are taken in float32."""
    x64 = np.array([[1e4, -1e4, 2e4, 0.0, 5.0], [3e4, 3e4, -3e4, 1.0, 0.0]] * 2)
    params = LayerNormParams(jnp.ones(5, jnp.float16), jnp.zeros(5, jnp.float16))
    y = layer_norm(params, jnp.asarray(x64, jnp.float16))
    xc = x64 - x64.mean(-1, keepdims=True)
    np.testing.assert_allclose(_f64(y), xc / np.sqrt((xc**2).mean(-1, keepdims=True)), atol=2e-3)
    check_vjp(layer_norm, params, jnp.asarray(x64, jnp.float16), fd=False)


@pytest.mark.parametrize("layer, params", [
    (layer_norm, LayerNormParams(jnp.asarray(RNG.standard_normal(5)), jnp.asarray(RNG.standard_normal(5)))),
    (rms_norm, RMSNormParams(jnp.asarray(RNG.standard_normal(5))))], ids=["layer_norm", "rms_norm"])
def test_huge_values_hand_and_autodiff_agree_entrywise(layer, params):
    """check_vjp judges x_bar ~ 1e-231 against y_bar's scale; here each entry is compared relatively."""
    x, y_bar = jnp.asarray(RNG.standard_normal((4, 5)) * 1e231), jnp.asarray(RNG.standard_normal((4, 5)))
    hand = jax.vjp(layer, params, x)[1](y_bar)
    auto = jax.vjp(layer.auto, params, x)[1](y_bar)
    for h, a in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves(auto)):
        np.testing.assert_allclose(h, a, rtol=1e-10)
    unscaled = jax.vjp(functools.partial(layer, eps=1e-300), params, x / 1e231)[1](y_bar)[1]
    np.testing.assert_allclose(_f64(hand[1]) * 1e231, unscaled, rtol=1e-10)


# batch_norm's running statistics -------------------------------------------------------------------
@pytest.mark.parametrize("momentum", [0.0, 0.3, 1.0])
def test_running_statistics_update(momentum):
    params, x, state = INFO["batch_norm"].args(1, shape=(2, 2, 2, 3))
    _, new = batch_norm(params, x, state, momentum=momentum)
    flat = _f64(x).reshape(-1, 3)
    expected_mean = (1 - momentum) * _f64(state.mean) + momentum * flat.mean(0)
    np.testing.assert_allclose(new.mean, expected_mean, rtol=1e-12)
    np.testing.assert_allclose(new.var, (1 - momentum) * _f64(state.var) + momentum * flat.var(0), rtol=1e-12)
    _, same = batch_norm(params, x, state, training=False)
    assert np.array_equal(same.mean, state.mean) and np.array_equal(same.var, state.var)


def test_momentum_one_then_inference_reproduces_training():
    """The running var is the biased batch var, the one training normalises with."""
    params, x, state = INFO["batch_norm"].args(2, shape=(6, 3))
    y_train, new = batch_norm(params, x, state, momentum=1.0)
    y_infer, _ = batch_norm(params, x, new, training=False)
    np.testing.assert_allclose(y_infer, y_train, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("training", [True, False])
def test_state_is_not_differentiated(training):
    params, x, state = INFO["batch_norm"].args(3, shape=(6, 3))

    def loss(layer, params, x, state):
        y, new = layer(params, x, state, training=training)
        return jnp.sum(y * y) + jnp.sum(new.mean) + jnp.sum(new.var)

    hand = jax.grad(functools.partial(loss, batch_norm), argnums=(0, 1, 2))(params, x, state)
    auto = jax.grad(functools.partial(loss, batch_norm.auto), argnums=(0, 1, 2))(params, x, state)
    for h, a in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves(auto)):
        np.testing.assert_allclose(h, a, rtol=1e-10, atol=1e-12)
    assert not np.any(_f64(hand[2].mean)) and not np.any(_f64(hand[2].var))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (2, 2, 2, 3)])
def test_batch_norm_y_matches_finite_differences_with_state_fixed(shape, training):
    params, x, state = INFO["batch_norm"].args(4, shape=shape)
    check_vjp(_y_only(state, training), params, x, fd=True)


def test_module_docstring_training_step_runs_under_jit():
    params, state = batch_norm.init(None, 3), batch_norm_state(3)
    x = jnp.asarray(RNG.standard_normal((8, 4, 4, 3)), jnp.float32)

    def loss(params, x, state):
        y, new_state = batch_norm(params, x, state)
        return jnp.mean(y**2), new_state

    (value, state), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, x, state)
    assert value.shape == () and isinstance(state, BatchNormState) and isinstance(grads, BatchNormParams)
    np.testing.assert_allclose(state.mean, 0.1 * _f64(x).reshape(-1, 3).mean(0), rtol=1e-5, atol=1e-7)
