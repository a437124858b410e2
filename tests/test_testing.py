"""jaxback.testing itself: the report is readable, the strategies keep their promises, limits hold."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import jaxback as jb
from jaxback.testing import check_jvp, check_vjp, strategies
from jaxback.testing._tolerances import mismatch


def test_report_names_layer_argument_error_and_index():
    def bwd(res, y_bar):
        (x_bar,) = jb.tanh.bwd(res, y_bar)
        return (x_bar.at[1, 2].multiply(1.001),)  # one entry off by 0.1 %

    layer = jb.make_layer(jb.tanh.auto, jb.tanh.fwd, bwd, name="my_tanh")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 4)))
    with pytest.raises(AssertionError) as err:
        check_vjp(layer, x)
    message = str(err.value)
    assert message.startswith("check_vjp(my_tanh) failed (seed=0; inputs: args[0] float64[3, 4]):")
    assert "cotangent of args[0]: worst at index (1, 2): hand=" in message and "rtol=1e-10" in message
    assert "largest abs err" not in message  # the worst entry is also the largest error here


def test_report_names_the_hyperparameters():
    def bwd(res, y_bar, negative_slope):
        (x_bar,) = jb.leaky_relu.bwd(res, y_bar, negative_slope=negative_slope)
        return (x_bar.at[0].add(1e-6),)

    layer = jb.make_layer(jb.leaky_relu.auto, jb.leaky_relu.fwd, bwd, name="my_leaky")
    with pytest.raises(AssertionError) as err:
        check_vjp(layer, jnp.asarray([1e-3, 1e3, -2.0]), negative_slope=0.2, fd=False)
    assert str(err.value).startswith("check_vjp(my_leaky, negative_slope=0.2) failed")
    assert "cotangent of args[0]: worst at index (0,)" in str(err.value)


def test_the_worst_entry_and_the_largest_error_are_reported_each_with_its_own_index():
    """The entry furthest beyond its tolerance need not hold the largest absolute error (more is
    allowed where |autodiff| is larger): both are named, each with its index and its values."""
    auto = np.array([1.0, 1000.0])
    found = mismatch(auto + np.array([1e-5, 1.5e-5]), auto, 1e-10)
    assert found.startswith("worst at index (0,): hand=1.0000100000000001, autodiff=1 (abs err 1e-05, rel err 1e-05, 99.9x")
    assert found.endswith("the largest abs err, 1.5e-05, is at index (1,) (hand=1000.000015, autodiff=1000) "
                          "where more is allowed")


def test_report_names_pytree_paths_as_written():
    def bwd(res, y_bar):
        params_bar, x_bar = jb.linear.bwd(res, y_bar)
        return params_bar._replace(b=-params_bar.b), x_bar

    layer = jb.make_layer(jb.linear.auto, jb.linear.fwd, bwd, name="bad_bias", init=jb.linear.init)
    params = jb.linear.init(jax.random.PRNGKey(0), 4, 3)
    with pytest.raises(AssertionError, match=r"- cotangent of args\[0\]\.b: worst at index"):
        check_vjp(layer, params, jnp.ones((2, 4)))


def test_serial_with_parameter_free_layers_passes():
    """bwd returns None for relu's params: the structure check compared a tree with None leaves
    against one with None as an empty node, and reported two identical trees as different."""
    model = jb.serial(jb.linear, jb.relu, jb.linear)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = (jb.linear.init(k1, 4, 8), None, jb.linear.init(k2, 8, 2))
    check_vjp(model, params, jax.random.normal(k3, (5, 4)))


def _as_plain_layer(model):
    """``model``'s fields in a plain (not composed) Layer: checkers then see only ``apply``'s VJP."""
    return jb.Layer(**{f.name: getattr(model, f.name) for f in dataclasses.fields(jb.Layer)})


def test_a_composed_layers_explicit_bwd_is_compared_with_autodiff():
    """For a model, apply chains the children's rules and fwd/bwd are a separate explicit chain:
    a wrong explicit bwd is invisible through apply and must be caught on its own."""
    model = jb.serial(jb.linear, jb.tanh, jb.linear)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
    params = (jb.linear.init(k1, 4, 8), None, jb.linear.init(k2, 8, 2))
    x = jax.random.normal(k3, (5, 4))
    check_vjp(model, params, x)

    def sign_flipped_bwd(res, y_bar):
        params_bar, x_bar = model.bwd(res, y_bar)
        return params_bar, -x_bar

    wrong = dataclasses.replace(model, bwd=sign_flipped_bwd)
    check_vjp(_as_plain_layer(wrong), params, x)  # only apply's VJP: fooled
    with pytest.raises(AssertionError, match=r"explicit bwd: cotangent of args\[1\]: worst"):
        check_vjp(wrong, params, x)


def test_a_relative_error_of_1e_minus_6_is_caught_in_float64():
    auto = np.random.default_rng(1).standard_normal(50)
    assert mismatch(auto * (1 + 1e-6), auto, 1e-10) is not None
    assert mismatch(auto * (1 + 1e-14), auto, 1e-10) is None
    assert mismatch(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]), 1e-10) is None
    assert mismatch(np.array([np.inf]), np.array([-np.inf]), 1e-10) is not None


def test_check_vjp_rejects_a_cotangent_of_the_wrong_dtype():
    layer = jb.make_layer(jb.relu.auto, jb.relu.fwd,
                          lambda y, g: (jb.relu.bwd(y, g)[0].astype(jnp.float32),), name="relu_f32")
    with pytest.raises(AssertionError, match=r"bwd: args\[0\]: cotangent has shape=\(3,\) dtype=float32 but the primal \(float64\[3\]\) needs shape=\(3,\) dtype=float64"):
        check_vjp(layer, jnp.ones(3))


@given(strategies.arrays((2, 3), jnp.bfloat16, kinds=strategies.VALUE_KINDS))
def test_array_strategy_has_the_promised_shape_and_dtype(x):
    assert x.shape == (2, 3) and x.dtype == jnp.bfloat16


def test_value_kinds_contain_kinks_ties_and_infinities():
    rng = np.random.default_rng(0)
    ties = strategies.values(rng, (100,), "ties")
    assert np.any(ties == 0) and len(np.unique(ties)) < 100
    assert np.any(np.isinf(strategies.values(rng, (100,), "inf")))
    assert np.all(np.isfinite(strategies.values(rng, (100,), "extreme")))
    with pytest.raises(ValueError, match="unknown value kind"):
        strategies.values(rng, (2,), "weird")


def test_forward_mode_is_refused_by_a_layer_without_jvp_as_documented():
    reverse_only = jb.make_layer(jb.tanh.auto, jb.tanh.fwd, jb.tanh.bwd, name="tanh_reverse_only")
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(reverse_only, (jnp.ones(3),), (jnp.ones(3),))
    with pytest.raises(TypeError, match=r"check_jvp\(tanh_reverse_only\): the layer has no hand JVP"):
        check_jvp(reverse_only, jnp.ones(3))
    jax.jvp(jb.tanh, (jnp.ones(3),), (jnp.ones(3),))  # jaxback's own tanh has its hand JVP


def test_check_jvp_verifies_a_users_custom_jvp_and_catches_a_wrong_slope():
    x = jnp.asarray(np.random.default_rng(4).standard_normal(5))

    def sin_with_slope(k):
        f = jax.custom_jvp(jnp.sin)
        f.defjvp(lambda p, t: (jnp.sin(p[0]), k * jnp.cos(p[0]) * t[0]))
        return f

    check_jvp(sin_with_slope(1.0), x, reference=jnp.sin)
    with pytest.raises(AssertionError, match=r"(?s)check_jvp\(sin\) failed.*tangent output"):
        check_jvp(sin_with_slope(2.0), x, reference=jnp.sin)


def test_bind_fixes_hyperparameters_and_names_them():
    layer = jb.bind(jb.leaky_relu, negative_slope=0.2)
    assert layer.name == "leaky_relu(negative_slope=0.2)"
    np.testing.assert_array_equal(layer(jnp.array([-1.0])), jb.leaky_relu(jnp.array([-1.0]), negative_slope=0.2))
    check_vjp(layer, jnp.array([-1.0, 2.0]))


def test_finite_differences_catch_a_rule_that_agrees_with_a_wrong_autodiff():
    """The third witness: hand rule and 'autodiff' agree on a wrong slope; only FD can tell."""
    @jax.custom_jvp
    def sin_with_a_wrong_slope(x):
        return jnp.sin(x)

    sin_with_a_wrong_slope.defjvp(lambda p, t: (jnp.sin(p[0]), 2 * jnp.cos(p[0]) * t[0]))
    layer = jb.make_layer(sin_with_a_wrong_slope, lambda x: (jnp.sin(x), x),
                          lambda x, g: (2 * jnp.cos(x) * g,), name="double_slope_sin")
    x = jnp.asarray(np.random.default_rng(3).standard_normal(5))
    check_vjp(layer, x, fd=False)  # hand == "autodiff": the comparison alone is fooled
    with pytest.raises(AssertionError, match="finite differences disagree"):
        check_vjp(layer, x)


def test_finite_differences_use_the_least_precise_arguments_tolerance():
    """float32 weights beside float64 inputs: the FD witness must judge at float32 precision."""
    params = jb.linear.init(jax.random.PRNGKey(0), 64, 10, jnp.float32)
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 64), jnp.float64)
    check_vjp(jb.linear, params, x)


def _bn_dropout(bn, dropout):
    def model(params, x, state, *, key, training=True):
        h, new_state = bn(params, x, state, training=training)
        return dropout(h, key, rate=0.5, training=training), new_state
    return model


def _bn_dropout_fwd(params, x, state, *, key, training=True):
    (h, new_state), bn_res = jb.batch_norm.fwd(params, x, state, training=training)
    y, dropout_res = jb.dropout.fwd(h, key, rate=0.5, training=training)
    return (y, new_state), (bn_res, dropout_res)


def _bn_dropout_bwd(res, out_bar, *, training=True, wrong=False):
    bn_res, dropout_res = res
    y_bar, state_bar = out_bar
    h_bar, _ = jb.dropout.bwd(dropout_res, y_bar, rate=0.5, training=training)
    return jb.batch_norm.bwd(bn_res, (2 * h_bar if wrong else h_bar, state_bar), training=training)


def test_a_composed_model_with_state_and_a_key():
    """The models' calling convention: state positional, the key an array keyword, (y, new_state)
    out, bwd given the static keywords only; a wrong explicit chain is caught."""
    class Composed(jb.Layer):  # a user's composed layer: its fwd/bwd are a path separate from apply
        composed = property(lambda self: True)

    def build(bwd):
        return Composed(apply=_bn_dropout(jb.batch_norm, jb.dropout), auto=_bn_dropout(jb.batch_norm.auto, jb.dropout.auto),
                        fwd=_bn_dropout_fwd, bwd=bwd, kind="bn_dropout", roles=("params", "x", "state"))

    rng = np.random.default_rng(4)
    params = jb.BatchNormParams(jnp.asarray(rng.standard_normal(3)), jnp.asarray(rng.standard_normal(3)))
    x, state = jnp.asarray(rng.standard_normal((6, 3))), jb.batch_norm_state(3)
    key = jax.random.PRNGKey(0)
    check_vjp(build(_bn_dropout_bwd), params, x, state, key=key, training=True, fd=False)
    wrong = build(functools.partial(_bn_dropout_bwd, wrong=True))
    with pytest.raises(AssertionError) as err:
        check_vjp(wrong, params, x, state, key=key, training=True, fd=False)
    assert "check_vjp(bn_dropout, training=True, key=<uint32[2]>) failed" in str(err.value)
    assert "explicit bwd: cotangent of args[1]: worst" in str(err.value)
