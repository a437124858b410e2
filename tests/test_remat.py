"""remat: the same losses, gradients, new state, dropout masks and record as the model without it,
in all three modes; per-call masks reach the layers inside; and the memory it exists for (a jitted
step stores about one block input per rematerialised block)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxback as jb

KEY = jax.random.PRNGKey(0)
STEP_KEY = jax.random.PRNGKey(3)


def _lm_block(width=8, heads=2):
    attn = jb.residual(jb.serial(jb.layer_norm, jb.bind(jb.attention, num_heads=heads)))
    mlp = jb.residual(jb.serial(jb.layer_norm, jb.linear.sized(2 * width), jb.gelu,
                                jb.bind(jb.dropout, rate=0.3), jb.linear.sized(width)))
    return jb.serial(attn, mlp)


def _lm(remat, vocab=11):
    wrap = jb.remat if remat else (lambda m: m)
    return jb.serial(jb.embedding.sized(vocab, 8), jb.position_embedding.sized(6),
                     *(wrap(_lm_block()) for _ in range(2)), jb.layer_norm, jb.linear.sized(vocab),
                     jb.bind(jb.reshape, shape=(-1, vocab)))


def _cnn(remat):
    wrap = jb.remat if remat else (lambda m: m)
    block = lambda c: wrap(jb.serial(jb.conv2d.sized(c, 3), jb.batch_norm, jb.relu))
    return jb.serial(block(4), block(4), jb.max_pool2d, jb.flatten, jb.bind(jb.dropout, rate=0.5), jb.linear.sized(10))


def _problem(name):
    if name == "lm":
        ids = jax.random.randint(KEY, (2, 6), 0, 11)
        return _lm, ids, jax.random.randint(jax.random.PRNGKey(1), (12,), 0, 11), {"mask": jnp.tril(jnp.ones((6, 6), bool))}
    return _cnn, jax.random.normal(KEY, (8, 8, 8, 1)), jnp.arange(8) % 10, {}


def _step(build, remat, mode, x, target, inputs):
    model = build(remat)
    params, state = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), model.init(KEY, x))  # x64: exact claims
    kw = {"state": state} if state is not None else {}
    f = jb.value_and_grad(model, jb.softmax_cross_entropy, mode=mode)
    return jax.jit(lambda p: f(p, x, target, key=STEP_KEY, **kw, **inputs))(params)


@pytest.mark.parametrize("mode", jb.MODES)
@pytest.mark.parametrize("name", ["lm", "cnn"])
def test_remat_gives_the_models_loss_gradients_and_state(name, mode):
    build, x, target, inputs = _problem(name)
    plain, remat = (_step(build, r, mode, x, target, inputs) for r in (False, True))
    # the same rules on the same values; only the evaluation order moves (XLA may fuse differently)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14), remat, plain)


def test_per_call_mask_reaches_the_layers_inside_remat():
    build, x, target, inputs = _problem("lm")
    with_mask = _step(build, True, "explicit", x, target, inputs)
    without = _step(build, True, "explicit", x, target, {})
    assert not np.allclose(with_mask[0], without[0])  # the mask changed the loss: it got through
    model = build(True)
    assert "mask" in model.__doc__


def test_dropout_masks_are_the_forwards():
    layer = jb.bind(jb.dropout, rate=0.5)
    model, plain = jb.remat(jb.serial(layer, jb.tanh)), jb.serial(layer, jb.tanh)
    params, x = (None, None), jnp.linspace(0.5, 2.0, 64)
    y = model(params, x, key=STEP_KEY)
    np.testing.assert_array_equal(y, plain(params, x, key=STEP_KEY))
    assert 0 < int(jnp.sum(y == 0)) < 64
    # the backward's recomputed masks are the forward's: x_bar is zero exactly where y is
    y_e, res = model.fwd(params, x, key=STEP_KEY)
    explicit = model.bwd(res, jnp.ones_like(y_e))[1]
    vjp = jax.vjp(lambda x: model(params, x, key=STEP_KEY), x)[1](jnp.ones_like(y))[0]
    for x_bar in (explicit, vjp):
        np.testing.assert_array_equal(x_bar == 0, y == 0)


def _in_remat(path):
    """The path of a layer of ``_cnn(False)``'s two blocks inside ``_cnn(True)``."""
    head, sep, rest = path.partition(".")
    return f"{head}.remat.{rest}" if head in ("serial[0]", "serial[1]") else path


def test_record_through_remat_matches_the_plain_models():
    build, x, target, _ = _problem("cnn")
    record = {}
    for remat in (False, True):
        model = build(remat)
        params, state = model.init(KEY, x)
        *_, record[remat] = jb.backprop(model, jb.softmax_cross_entropy, params, x, target, state=state,
                                        key=STEP_KEY, record=True)
    assert list(record[True]) == [_in_remat(p) for p in record[False]]
    assert "serial[1].remat.serial[1].batch_norm" in record[True]
    for path, entry in record[False].items():
        twin = record[True][_in_remat(path)]
        assert set(twin) == {"x", "x_bar", "params_bar"}
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b), twin, entry)


def _temp_mib(depth, remat, mode):
    block = lambda: jb.serial(jb.linear.sized(128), jb.gelu, jb.linear.sized(128), jb.tanh)
    wrap = jb.remat if remat else (lambda m: m)
    model = jb.serial(*(wrap(block()) for _ in range(depth)), jb.linear.sized(10))
    x, y = jnp.ones((512, 128), jnp.float32), jnp.arange(512) % 10
    params, _ = model.init(KEY, x)
    f = jax.jit(jb.value_and_grad(model, jb.softmax_cross_entropy, mode=mode))
    return f.lower(params, x, y).compile().memory_analysis().temp_size_in_bytes / 2**20


@pytest.mark.parametrize("mode", ["explicit", "vjp"])
def test_each_rematerialised_block_stores_about_its_input(mode):
    block_input = 512 * 128 * 4 / 2**20  # MiB
    growth = {r: (_temp_mib(6, r, mode) - _temp_mib(2, r, mode)) / 4 for r in (False, True)}
    assert growth[True] <= 1.25 * block_input, growth  # one input per block, not its residuals
    assert growth[False] >= 2 * block_input, growth   # the plain rule stores more (the test can fail)
