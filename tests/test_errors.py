"""Bad input: clear errors at trace time that name the layer, the argument, expected and received."""

import jax
import jax.numpy as jnp
import pytest

import jaxback as jb

F = jnp.float64
PARAMS = jb.LinearParams(jnp.ones((3, 2), F), jnp.zeros(2, F))


@pytest.mark.parametrize("call, error, pattern", [
    (lambda: jb.linear(PARAMS, jnp.ones((4, 5), F)), ValueError,
     r"linear: x.shape\[-1\] must equal w.shape\[0\]; got x shape=\(4, 5\).*w shape=\(3, 2\).*transpose"),
    (lambda: jb.linear(PARAMS, jnp.ones((4, 3), jnp.int32)), TypeError, r"linear: x must be a floating-point array; got shape=\(4, 3\) dtype=int32"),
    (lambda: jb.linear(jb.LinearParams(jnp.ones(3, F), jnp.zeros(2, F)), jnp.ones((4, 3), F)), ValueError, r"linear: params.w must have exactly 2"),
    (lambda: jb.linear(jb.LinearParams(jnp.ones((3, 2), F), jnp.zeros(3, F)), jnp.ones((4, 3), F)), ValueError, r"linear: b must have shape"),
    (lambda: jb.linear(PARAMS, jnp.ones((), F)), ValueError, r"linear: x must have at least 1"),
    (lambda: jb.relu(jnp.arange(3)), TypeError, r"relu: x must be a floating-point array"),
    (lambda: jb.leaky_relu(jnp.ones(3), negative_slope=jnp.array(0.1)), TypeError, r"leaky_relu: hyperparameters must be hashable|leaky_relu: negative_slope"),
    (lambda: jb.leaky_relu(jnp.ones(3), negative_slope="0.1"), TypeError, r"leaky_relu: negative_slope must be a Python real number"),
    (lambda: jb.gelu(jnp.ones(3), approximate="tanh"), TypeError, r"gelu: approximate must be True or False"),
    (lambda: jb.softmax(jnp.ones((2, 3)), axis=2), ValueError, r"softmax: axis must be a Python int in \[-2, 2\); got axis=2"),
    (lambda: jb.log_softmax(jnp.ones((2, 3)), axis=1.0), ValueError, r"log_softmax: axis must be a Python int"),
    (lambda: jb.softmax_cross_entropy(jnp.ones((4, 3)), jnp.zeros(4)), TypeError, r"softmax_cross_entropy: labels must be an integer array"),
    (lambda: jb.softmax_cross_entropy(jnp.ones((4, 3)), jnp.zeros(5, jnp.int32)), ValueError, r"softmax_cross_entropy: labels.shape\[0\] must equal logits.shape\[0\]"),
    (lambda: jb.softmax_cross_entropy(jnp.ones(3), jnp.zeros(3, jnp.int32)), ValueError, r"softmax_cross_entropy: logits must have exactly 2"),
    (lambda: jb.softmax_cross_entropy(jnp.ones((4, 3)), jnp.zeros((4, 1), jnp.int32)), ValueError, r"softmax_cross_entropy: labels must have exactly 1"),
    (lambda: jb.mse(jnp.ones((4, 1)), jnp.ones(4)), ValueError, r"mse: pred and target must have the same shape \(no broadcasting\); got pred shape=\(4, 1\)"),
    (lambda: jb.mse(jnp.ones(4), jnp.ones(4, jnp.int32)), TypeError, r"mse: target must be a floating-point array"),
    (lambda: jb.binary_cross_entropy_with_logits(jnp.ones((4, 2)), jnp.ones((4, 1))), ValueError, r"binary_cross_entropy_with_logits: logits and targets must have the same shape"),
    (lambda: jb.serial(jb.linear, jb.relu)((PARAMS,), jnp.ones((4, 3))), ValueError, r"serial\(linear, relu\): params must be a tuple with one entry per layer \(2"),
    (lambda: jb.serial(jb.linear, jnp.tanh), TypeError, r"serial: every argument must be a jaxback Layer"),
], ids=lambda v: "" if callable(v) or isinstance(v, type) else v[:40])
def test_bad_input_raises_a_clear_error(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


def test_errors_are_raised_at_trace_time_under_jit_and_grad():
    with pytest.raises(ValueError, match="linear: x.shape"):
        jax.jit(jb.linear)(PARAMS, jnp.ones((4, 5), F))
    with pytest.raises(ValueError, match="mse: pred and target"):
        jax.jit(jax.grad(jb.mse))(jnp.ones((4, 1)), jnp.ones(4))
    with pytest.raises(ValueError, match="linear: x.shape"):
        jax.grad(lambda p: jb.linear(p, jnp.ones((4, 5), F)).sum())(PARAMS)
