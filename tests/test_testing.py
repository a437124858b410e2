"""jaxback.testing itself: the report is readable, the strategies keep their promises, limits hold."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given

import jaxback as jb
from jaxback.testing import check_vjp, strategies
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
    assert "check_vjp(my_tanh)" in message and "cotangent of argument 0" in message
    assert "worst at index (1, 2)" in message and "max abs err" in message and "rtol=1e-10" in message


def test_a_relative_error_of_1e_minus_6_is_caught_in_float64():
    auto = np.random.default_rng(1).standard_normal(50)
    assert mismatch(auto * (1 + 1e-6), auto, 1e-10) is not None
    assert mismatch(auto * (1 + 1e-14), auto, 1e-10) is None
    assert mismatch(np.array([np.nan, np.inf]), np.array([np.nan, np.inf]), 1e-10) is None
    assert mismatch(np.array([np.inf]), np.array([-np.inf]), 1e-10) is not None


def test_check_vjp_rejects_a_cotangent_of_the_wrong_dtype():
    layer = jb.make_layer(jb.relu.auto, jb.relu.fwd,
                          lambda y, g: (jb.relu.bwd(y, g)[0].astype(jnp.float32),), name="relu_f32")
    with pytest.raises(AssertionError, match=r"dtype=float32 but the primal has shape=\(3,\) dtype=float64"):
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


def test_forward_mode_is_refused_by_custom_vjp_as_documented():
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(jb.tanh, (jnp.ones(3),), (jnp.ones(3),))
    jax.jvp(jb.tanh.auto, (jnp.ones(3),), (jnp.ones(3),))  # the autodiff twin supports it


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
