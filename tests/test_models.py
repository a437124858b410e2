"""Models: the calling convention (params, state, key, training), init, paths, the three gradient
modes on every network the experiments train, the backprop record, and the errors."""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxback as jb
from jaxback.testing import check_vjp

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "experiments"))
import models  # noqa: E402  (the experiments' networks)
from _setup import gradients  # noqa: E402  (the experiments' three modes: jb.value_and_grad)

KEY = jax.random.PRNGKey(0)


def _ids(shape, vocab, seed=0):
    return jax.random.randint(jax.random.PRNGKey(seed), shape, 0, vocab)


def _problems():
    """``name -> (network, params, state, x, target)`` for every network the experiments train
    (``experiments/models.py``, tiny), on inputs of their data's shapes."""
    copy_ids, answers = _ids((3, 5), 7), _ids((3, 2), 7, 1)
    cases = {"mlp": (models.mlp(classes=10, size="tiny"), jax.random.normal(KEY, (8, 64)), jnp.arange(8) % 10),
             "cnn": (models.cnn(classes=10, size="tiny"), jax.random.normal(KEY, (8, 8, 8, 1)), jnp.arange(8) % 10),
             "lm": (models.lm(vocab=11, length=6, size="tiny"), _ids((2, 6), 11), _ids((12,), 11, 1)),
             "copy-attention": (models.copy_attention(vocab=7, length=5, size="tiny"), copy_ids, answers),
             "copy-lstm": (models.copy_lstm(vocab=7, size="tiny"), copy_ids, answers)}
    assert set(cases) == set(models.NETWORKS)
    out = {}
    for name, (network, x, target) in cases.items():
        params, state = network.model.init(KEY, network.feed(x))
        out[name] = (network, params, state, x, target)
    return out


PROBLEMS = _problems()


@pytest.mark.parametrize("name", PROBLEMS)
def test_three_modes_agree_on_every_experiment_network(name):
    network, params, state, x, target = PROBLEMS[name]
    run = lambda mode: jax.jit(gradients(network, mode))(params, state, x, target, KEY)
    (l_e, s_e, g_e), (l_v, s_v, g_v), (l_a, s_a, g_a) = (run(m) for m in jb.MODES)
    assert l_e == l_v  # the same rules in the same order: bit for bit
    jax.tree_util.tree_map(np.testing.assert_array_equal, (g_e, s_e), (g_v, s_v))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5), g_e, g_a)
    np.testing.assert_allclose(l_e, l_a, rtol=1e-5)
    if network.model.has_state:  # the running statistics moved, alike in every mode
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), s_e, s_a)
        assert not all(jax.tree_util.tree_leaves(jax.tree_util.tree_map(np.array_equal, s_e, state)))


def test_explicit_mode_uses_no_jax_autodiff_on_any_experiment_network(monkeypatch):
    def forbidden(*a, **k):
        raise AssertionError("explicit mode must not call JAX autodiff")
    for name in ("grad", "vjp", "value_and_grad", "jacrev", "linearize"):
        monkeypatch.setattr(jax, name, forbidden)
    for name, (network, params, state, x, target) in PROBLEMS.items():
        # tracing runs every line of the explicit path (a forbidden call would raise); the values
        # are checked by the three-modes test above
        value, _, grads = jax.eval_shape(gradients(network, "explicit"), params, state, x, target, KEY)
        assert value.shape == (), name
        assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(params), name


def _nested_cnn():
    """A CNN of nested serials and a residual block (the experiments' own are flat): the paths of
    params and state through every kind of node."""
    block = lambda: jb.serial(*models.conv_bn_relu(4))
    model = jb.serial(block(), jb.residual(block()), jb.max_pool2d, block(), jb.max_pool2d, jb.flatten,
                      jb.bind(jb.dropout, rate=0.25), jb.linear.sized(10))
    x = jax.random.normal(KEY, (8, 8, 8, 1))
    return (model, *model.init(KEY, x), x)


NESTED = _nested_cnn()


def test_init_infers_sizes_and_names_every_parameter():
    model, params, state, x = NESTED
    paths = model.paths(params)
    assert paths["serial[0].serial[0].conv2d.w"].shape == (3, 3, 1, 4)
    assert paths["serial[1].residual.serial[1].batch_norm.scale"].shape == (4,)
    assert paths["serial[7].linear.w"].shape == (2 * 2 * 4, 10)
    assert set(model.paths(state)) == {"serial[0].serial[1].batch_norm.mean", "serial[0].serial[1].batch_norm.var",
                                       "serial[1].residual.serial[1].batch_norm.mean",
                                       "serial[1].residual.serial[1].batch_norm.var",
                                       "serial[3].serial[1].batch_norm.mean", "serial[3].serial[1].batch_norm.var"}
    assert params[2] is None and params[5] is None  # pool and flatten: no parameters


def test_state_is_returned_updated_and_never_mutated():
    model, params, state, x = NESTED
    before = jax.tree_util.tree_map(np.array, state)
    y, new_state = model(params, x, state, key=KEY)
    jax.tree_util.tree_map(np.testing.assert_array_equal, state, before)
    assert not np.allclose(new_state[0][1].mean, state[0][1].mean)
    y_eval, same = model(params, x, new_state, training=False)  # inference: no key, state unchanged
    jax.tree_util.tree_map(np.testing.assert_array_equal, same, new_state)
    assert y_eval.shape == y.shape


def test_keys_split_per_layer_and_per_call():
    model = jb.serial(jb.bind(jb.dropout, rate=0.5), jb.bind(jb.dropout, rate=0.5))
    first = jb.serial(jb.bind(jb.dropout, rate=0.5))
    x = jnp.ones((64,))
    one = first((None,), x, key=KEY)
    two = model((None, None), x, key=KEY)
    # the second dropout draws its own mask: the kept pattern is not the first one's
    assert not np.array_equal(np.asarray(one) != 0, np.asarray(two) != 0)
    np.testing.assert_array_equal(model((None, None), x, key=KEY), two)  # same key, same masks
    assert not np.array_equal(model((None, None), x, key=jax.random.fold_in(KEY, 1)), two)  # new step, new masks
    np.testing.assert_array_equal(model((None, None), x, training=False), x)


def test_backprop_record_holds_each_layers_input_and_gradients():
    model = jb.serial(jb.linear.sized(5), jb.tanh, jb.linear.sized(3))
    x = jax.random.normal(KEY, (4, 2))
    labels = jnp.arange(4) % 3
    params, _ = model.init(KEY, x)
    loss, grads, record = jb.backprop(model, jb.softmax_cross_entropy, params, x, labels, record=True)
    assert list(record) == ["serial[0].linear", "serial[1].tanh", "serial[2].linear"]
    np.testing.assert_array_equal(record["serial[0].linear"]["x"], x)
    objective = lambda p, x: jb.softmax_cross_entropy.auto(model.auto(p, x), labels)
    g_params, g_x = jax.grad(objective, argnums=(0, 1))(params, x)
    np.testing.assert_allclose(record["serial[0].linear"]["x_bar"], g_x, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(record["serial[2].linear"]["params_bar"].w, g_params[2].w, rtol=1e-5, atol=1e-7)
    assert record["serial[1].tanh"]["params_bar"] is None
    hidden = jb.tanh(jb.linear(params[0], x))
    np.testing.assert_allclose(record["serial[2].linear"]["x"], hidden, rtol=1e-6)


def test_quick_start_chain_is_checked_by_check_vjp_with_its_none_entry():
    model = jb.serial(jb.linear, jb.relu, jb.linear)
    k1, k2 = jax.random.split(KEY)
    params = (jb.linear.init(k1, 4, 6, jnp.float64), None, jb.linear.init(k2, 6, 3, jnp.float64))
    check_vjp(model, params, jax.random.normal(KEY, (5, 4), jnp.float64))


def test_the_copy_task_loss_rule_is_right():
    logits = jax.random.normal(KEY, (3, 5, 7), jnp.float64)
    check_vjp(models.answer_loss, logits, _ids((3, 2), 7))
    check_vjp(models.answer_loss, jnp.swapaxes(logits, 0, 1), _ids((3, 2), 7), time_major=True)


# errors: the model path, what was expected and what came --------------------------------------------
CNN, CNN_PARAMS, CNN_STATE, CNN_X = NESTED


@pytest.mark.parametrize("call, error, match", [
    (lambda: CNN(CNN_PARAMS, CNN_X, key=KEY), ValueError, r"serial: this model carries state"),
    (lambda: CNN(CNN_PARAMS, CNN_X, CNN_STATE), ValueError, r"serial\[6\].dropout: needs a PRNG key while training"),
    (lambda: CNN(CNN_PARAMS[:3], CNN_X, CNN_STATE, key=KEY), ValueError,
     r"serial: params must be a tuple with one entry per layer \(8: serial, residual, max_pool2d"),
    (lambda: CNN(CNN_STATE, CNN_X, CNN_STATE, key=KEY), ValueError,
     r"serial\[0\].serial\[0\].conv2d: conv2d has parameters, got None"),
    (lambda: CNN(CNN_PARAMS, CNN_X[..., :0], CNN_STATE, key=KEY), ValueError, r"serial\[0\].serial\[0\].conv2d: "),
    (lambda: CNN(CNN_PARAMS, jnp.ones((8, 8, 8, 2)), CNN_STATE, key=KEY), ValueError,
     r"serial\[0\].serial\[0\].conv2d: x.shape\[-1\] must equal w.shape\[2\]"),
    (lambda: CNN(CNN_PARAMS, CNN_X, CNN_STATE, key=KEY, training=1), TypeError, r"serial: training must be True or False"),
    (lambda: jb.bind(jb.leaky_relu, negative_slop=0.1), TypeError,
     r"bind\(leaky_relu\): unknown keyword argument\(s\) 'negative_slop'; bind\(leaky_relu\) accepts negative_slope"),
    (lambda: jb.leaky_relu(jnp.ones(3), negative_slop=0.1), TypeError, r"leaky_relu: unknown keyword argument"),
    (lambda: jb.serial(jb.linear).init(KEY, jnp.ones((2, 3))), TypeError,
     r"serial\[0\].linear: model.init needs the sizes of linear; use linear.sized"),
    (lambda: jb.residual(jb.linear.sized(2)).init(KEY, jnp.ones((2, 3))), ValueError,
     r"residual: the inner linear must keep its input's shape and dtype"),
    (lambda: jb.parallel(jb.relu, jb.tanh)((None, None), jnp.ones(3)), ValueError,
     r"parallel: x must be a tuple with one input per branch \(2\)"),
    (lambda: jb.serial(jb.lstm.sized(3)).init(KEY, jnp.ones((4, 2, 3))), ValueError,
     r"serial\[0\].lstm: lstm takes a tuple of 2 inputs \(xs, state\)"),
    (lambda: jb.linear.sized(1, 2), TypeError, r"linear.sized\(1, 2\): too many positional arguments"),
    (lambda: jb.serial(jb.relu, jnp.tanh), TypeError, r"a model's children must be jaxback Layers or models"),
    (lambda: jb.backprop(CNN, jb.softmax_cross_entropy, CNN_PARAMS, CNN_X, jnp.zeros(8, int), key=KEY), ValueError,
     r"backprop: serial carries state"),
], ids=lambda v: None)
def test_bad_input_names_the_model_path(call, error, match):
    with pytest.raises(error, match=match):
        call()
