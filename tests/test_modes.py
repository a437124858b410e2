"""The three gradient modes (``jb.value_and_grad(model, loss, mode=...)``): explicit (backprop), vjp
(jax.grad through our rules), auto; per-call array keywords through models; the Layer record."""

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


MODES_OF_MODEL = {mode: jb.value_and_grad(MODEL, jb.softmax_cross_entropy, mode=mode) for mode in jb.MODES}
explicit, vjp_mode, auto_mode = (MODES_OF_MODEL[m] for m in ("explicit", "vjp", "auto"))


def test_value_and_grad_is_what_each_mode_means_by_hand():
    """Each mode is the code it names: backprop, jax.grad through apply, jax.grad through auto."""
    params, x, labels = _problem()
    by_hand = {"explicit": jb.backprop(MODEL, jb.softmax_cross_entropy, params, x, labels),
               "vjp": jax.value_and_grad(lambda p: jb.softmax_cross_entropy(MODEL(p, x), labels))(params),
               "auto": jax.value_and_grad(lambda p: jb.softmax_cross_entropy.auto(MODEL.auto(p, x), labels))(params)}
    for mode, expected in by_hand.items():
        jax.tree_util.tree_map(np.testing.assert_array_equal, MODES_OF_MODEL[mode](params, x, labels), expected)


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


def test_value_and_grad_with_state_key_and_record():
    """A stateful model with dropout: the backprop layout ((loss, new_state), grads) in every mode,
    the same state update, and the record in explicit mode only."""
    model = jb.serial(jb.linear.sized(8), jb.batch_norm, jb.relu, jb.bind(jb.dropout, rate=0.5), jb.linear.sized(4))
    _, x, labels = _problem()
    params, state = model.init(jax.random.PRNGKey(2), x)
    key = jax.random.PRNGKey(3)
    out = {m: jax.jit(jb.value_and_grad(model, jb.softmax_cross_entropy, mode=m))(params, x, labels, state=state,
                                                                                    key=key)
           for m in jb.MODES}
    (l_e, s_e), g_e = out["explicit"]
    for mode in ("vjp", "auto"):
        (l, s), g = out[mode]
        np.testing.assert_allclose(l, l_e, rtol=1e-12)
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12), (s, g), (s_e, g_e))
    *_, record = jb.value_and_grad(model, jb.softmax_cross_entropy)(params, x, labels, state=state, key=key,
                                                                      record=True)
    assert list(record)[0] == "serial[0].linear" and set(record["serial[0].linear"]) == {"x", "x_bar", "params_bar"}
    with pytest.raises(TypeError, match=r"value_and_grad\(mode='vjp'\): record=True needs mode='explicit'"):
        jb.value_and_grad(model, jb.softmax_cross_entropy, mode="vjp")(params, x, labels, state=state, record=True)
    with pytest.raises(ValueError, match="value_and_grad: serial carries state"):
        jb.value_and_grad(model, jb.softmax_cross_entropy, mode="auto")(params, x, labels)


def test_value_and_grad_refuses_an_unknown_mode_or_a_plain_loss():
    with pytest.raises(ValueError, match="mode must be one of 'explicit', 'vjp', 'auto'; got 'manual'"):
        jb.value_and_grad(MODEL, jb.mse, mode="manual")
    with pytest.raises(TypeError, match="loss must be a jaxback Layer"):
        jb.value_and_grad(MODEL, lambda y, t: ((y - t) ** 2).mean())


def _padded_attention_problem():
    """A block whose batch rows are padded to T: a per-batch (N, 1, T, T) mask hides the padding."""
    block = jb.serial(jb.layer_norm, jb.bind(jb.attention, num_heads=2), jb.linear.sized(3))
    x = jax.random.normal(jax.random.PRNGKey(5), (3, 6, 8), jnp.float64)
    lengths = jnp.array([6, 4, 2])
    seen = jnp.arange(6)[None, :] < lengths[:, None]                    # (N, T): real tokens
    mask = (seen[:, None, :, None] & seen[:, None, None, :])            # (N, 1, T, T)
    params, _ = block.init(jax.random.PRNGKey(6), x)
    return block, params, x, mask, seen


def test_a_per_call_mask_reaches_attention_inside_a_model_in_every_mode():
    block, params, x, mask, seen = _padded_attention_problem()
    y = block(params, x, mask=mask)
    direct = jb.attention(params[1], jb.layer_norm(params[0], x), num_heads=2, mask=mask)
    np.testing.assert_allclose(y, jb.linear(params[2], direct), rtol=1e-12)
    assert not np.allclose(y, block(params, x))  # the mask changes the output: it arrived
    target = jnp.zeros_like(y)
    out = {m: jax.jit(jb.value_and_grad(block, jb.mse, mode=m))(params, x, target, mask=mask) for m in jb.MODES}
    jax.tree_util.tree_map(np.testing.assert_array_equal, out["explicit"], out["vjp"])
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
                           out["explicit"], out["auto"])
    # the padded rows of the last sequence see nothing real beyond its 2 tokens: changing them
    # leaves the real rows' outputs unchanged
    x_changed = x.at[2, 2:].set(7.0)
    np.testing.assert_allclose(block(params, x_changed, mask=mask)[2, :2], y[2, :2], rtol=1e-12)


def test_per_call_keywords_are_checked_against_the_models_layers():
    block, params, x, mask, _ = _padded_attention_problem()
    with pytest.raises(TypeError, match=r"serial: no layer of this model takes the keyword\(s\) 'msk'; its layers "
                                        r"take block_size, causal, dropout_rate, eps, mask, num_kv_heads"):
        block(params, x, msk=mask)
    with pytest.raises(TypeError, match=r"per-call keywords must be arrays .* got causal=True\. Fix hyperparameters "
                                        r"with jb.bind"):
        jb.backprop(block, jb.mse, params, x, x[..., :3], causal=True)


def test_the_layer_record_is_keyword_built_with_kind_and_derived_fields():
    bound = jb.bind(jb.leaky_relu, negative_slope=0.1)
    assert (bound.kind, bound.name) == ("leaky_relu", "leaky_relu(negative_slope=0.1)")
    assert not bound.takes_params and jb.linear.takes_params and not jb.linear.composed and MODEL.composed
    with pytest.raises(TypeError):
        jb.Layer(jb.tanh.apply, jb.tanh.auto, jb.tanh.fwd, jb.tanh.bwd, kind="tanh")  # positional: refused
    model = jb.serial(jb.linear.sized(8), bound, jb.residual(jb.serial(jb.linear.sized(8), jb.tanh)))
    assert model.name == "serial(linear, leaky_relu, residual)"
    assert list(model.paths(model.init(jax.random.PRNGKey(0), jnp.ones((2, 4)))[0]))[0] == "serial[0].linear.w"


def test_help_of_a_model_lists_its_layers_and_summary_counts_parameters():
    model = jb.serial(jb.linear.sized(8), jb.tanh, jb.linear.sized(3))
    doc = model.__doc__
    for line in ("serial(linear, tanh, linear): a jaxback Model of 3 layers", "serial[1].tanh", "model.summary(params)"):
        assert line in doc, doc
    params, _ = model.init(jax.random.PRNGKey(0), jnp.ones((2, 5)))
    summary = model.summary(params).splitlines()
    assert summary[1].split() == ["serial[0].linear.w", "(5,", "8)", "40"]
    assert summary[-1].split() == ["total", str(5 * 8 + 8 + 8 * 3 + 3)]
