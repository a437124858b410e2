"""Bad input to the combinators, and errors at trace time under jit and grad.

Each layer's own error inputs live in its registry entry (tests/test_registry.py runs them).
"""

import jax
import jax.numpy as jnp
import pytest

import jaxback as jb

PARAMS = jb.LinearParams(jnp.ones((3, 2)), jnp.zeros(2))


def test_serial_refuses_params_of_the_wrong_length():
    with pytest.raises(ValueError, match=r"serial: params must be a tuple with one entry per layer \(2: linear, relu\)"):
        jb.serial(jb.linear, jb.relu)((PARAMS,), jnp.ones((4, 3)))


def test_serial_refuses_non_layers():
    with pytest.raises(TypeError, match=r"a model's children must be jaxback Layers or models"):
        jb.serial(jb.linear, jnp.tanh)


def test_unhashable_hyperparameters_are_refused_with_the_layer_name():
    with pytest.raises(TypeError, match=r"softmax: hyperparameters must be hashable"):
        jb.softmax(jnp.ones(3), axis=[0])


def test_errors_are_raised_at_trace_time_under_jit_and_grad():
    with pytest.raises(ValueError, match="linear: x.shape"):
        jax.jit(jb.linear)(PARAMS, jnp.ones((4, 5)))
    with pytest.raises(ValueError, match="mse: pred and target"):
        jax.jit(jax.grad(jb.mse))(jnp.ones((4, 1)), jnp.ones(4))
    with pytest.raises(ValueError, match="linear: x.shape"):
        jax.grad(lambda p: jb.linear(p, jnp.ones((4, 5))).sum())(PARAMS)
