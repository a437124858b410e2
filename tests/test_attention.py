"""attention: what the generic registry checks (tests/test_registry.py) cannot see.

Specific here: no (T, T) residual (flash-attention style; with dropout the key, never the mask), the
fully-masked-row convention for the hand rule and autodiff alike, the mask as a traced jit argument,
mixed dtypes, an independent forward witness (jax.nn.dot_product_attention), init, the compiled memory
of the gradient, every feature at once (cross, grouped, dropout) on both paths, and models routing
attention's key and optional kv.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.ad_checkpoint import print_saved_residuals

import jaxback as jb
from jaxback._attention import AttentionParams, attention
from jaxback._layer import make_layer
from jaxback.testing import check_vjp, random_cotangent
from jaxback.testing.memory import compiled_temp_bytes
from jaxback.testing import builtin_registry
from jaxback.testing._entries_attention import ATTENTION as INFO, _mutant

RNG = np.random.default_rng(0)


def _args(n, t, width, dtype=jnp.float64, seed=0):
    return INFO.sample_args(np.random.default_rng(seed), dtype, (n, t, width), "normal")


def _vjp(fn, args, y_bar, **hyper):
    return jax.vjp(functools.partial(fn, **hyper), *args)[1](y_bar)


# the mutant harness ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["attention", "attention (cross, grouped)", "attention (dropout)"])
def test_the_mutant_harness_with_no_mutation_passes(name):
    """So the kills are real: the step-by-step bwd the mutants edit is right as written, at the untiled
    settings (on tiled ones the harness runs the true loops; the tiled entry's kernel harness: below)."""
    info = builtin_registry().lookup(name)
    harness = make_layer(attention.auto, attention.fwd, _mutant("none").bwd, name=f"{name}[none]",
                         init=attention.init)
    for hyper in (h for h in info.hypers if "block_size" not in h):
        check_vjp(harness, *info.args(0, shape=info.shapes[-1]), fd=False, **hyper)


# memory: flash-attention style residuals ------------------------------------------------------------------
def test_hand_rule_saves_no_t_by_t_array_while_autodiff_does(capsys):
    t = 32
    params, x = _args(2, t, 8)
    _, res = attention.fwd(params, x, num_heads=2, causal=True)
    sizes = [leaf.size for leaf in jax.tree_util.tree_leaves(res)]
    assert max(sizes) < t * t, sizes  # largest is x or q/k/v/o: N*T*D = 512
    print_saved_residuals(lambda p, x: attention(p, x, num_heads=2, causal=True), params, x)
    hand = capsys.readouterr().out
    print_saved_residuals(lambda p, x: attention.auto(p, x, num_heads=2, causal=True), params, x)
    auto = capsys.readouterr().out
    assert f"{t},{t}]" not in hand and f"{t},{t}]" in auto, (hand, auto)


def test_a_given_mask_is_kept_by_reference_only():
    params, x = _args(1, 5, 4)
    mask = jnp.asarray(RNG.random((5, 5)) < 0.5)
    _, res = attention.fwd(params, x, num_heads=2, mask=mask)
    *rest, saved_mask, inputs = res
    assert saved_mask is mask and inputs == ()  # an input, not a new activation; no kv or key given
    assert all(leaf.size < 5 * 5 for leaf in jax.tree_util.tree_leaves(rest))  # the rest: O(N T D)


def test_with_dropout_the_key_is_saved_never_the_mask_and_without_it_nothing():
    params, x = _args(2, 16, 4)
    key = jax.random.PRNGKey(1)
    *rest, inputs = attention.fwd(params, x, None, key, num_heads=2, dropout_rate=0.5)[1]
    assert inputs[0] is None and inputs[1] is key
    assert max(leaf.size for leaf in jax.tree_util.tree_leaves(rest)) < 16 * 16  # no (T, T) mask or P
    assert attention.fwd(params, x, None, key, num_heads=2)[1][-1] == (None, None)  # rate 0: no key kept


def test_gradient_needs_less_compiled_temp_memory_than_autodiff():
    params, x = _args(2, 128, 16, jnp.float32)
    y_bar = random_cotangent(attention.auto(params, x, num_heads=4))

    def temp_bytes(fn):
        grad = jax.jit(jax.grad(lambda p, x: jnp.vdot(fn(p, x, num_heads=4), y_bar), argnums=(0, 1)))
        return grad.lower(params, x).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(attention.apply) < 0.8 * temp_bytes(attention.auto)


# conventions ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fn", [attention.apply, attention.auto], ids=["hand", "auto"])
def test_fully_masked_row_gives_b_o_and_sends_no_gradient(fn):
    params, x = _args(2, 4, 6)
    mask = jnp.ones((4, 4), bool).at[2].set(False)
    y = fn(params, x, num_heads=2, mask=mask)
    np.testing.assert_array_equal(y[:, 2], np.broadcast_to(params.b_o, (2, 6)))
    y_bar = jnp.zeros_like(y).at[:, 2].set(1.0)  # a cotangent on the empty row only
    params_bar, x_bar = _vjp(fn, (params, x), y_bar, num_heads=2, mask=mask)
    for leaf in (*params_bar[:4], x_bar):
        np.testing.assert_array_equal(leaf, 0.0)
    np.testing.assert_array_equal(params_bar.b_o, 2.0)
    y_bar = random_cotangent(y)  # and elsewhere nothing turns into NaN
    cotangents = _vjp(fn, (params, x), y_bar, num_heads=2, mask=mask)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree_util.tree_leaves(cotangents))


@pytest.mark.parametrize("causal, mask_shape", [(True, None), (False, (4, 4)), (True, (2, 1, 4, 4))])
def test_forward_matches_jax_nn_dot_product_attention(causal, mask_shape):
    params, x = _args(2, 4, 6)
    mask = None if mask_shape is None else jnp.asarray(RNG.random(mask_shape) < 0.6).at[..., 0].set(True)
    y = attention(params, x, num_heads=2, causal=causal, mask=mask)
    heads = lambda w: (x @ w).reshape(2, 4, 2, 3)  # jax.nn's layout: (N, T, H, d)
    o = jax.nn.dot_product_attention(heads(params.w_q), heads(params.w_k), heads(params.w_v), mask=mask,
                                     is_causal=causal, implementation="xla")
    # jax.nn computes the softmax in float32 even for float64 inputs, hence the float32 tolerance
    np.testing.assert_allclose(y, o.reshape(2, 4, 6) @ params.w_o + params.b_o, rtol=1e-5, atol=1e-6)


def test_mask_as_a_traced_jit_argument():
    params, x = _args(2, 4, 6)
    mask = jnp.asarray(RNG.random((2, 1, 4, 4)) < 0.5)
    y_bar = random_cotangent(attention.auto(params, x, num_heads=2, mask=mask))
    grads = jax.jit(lambda p, x, m, fn: _vjp(fn, (p, x), y_bar, num_heads=2, causal=True, mask=m), static_argnums=3)
    hand, auto = grads(params, x, mask, attention.apply), grads(params, x, mask, attention.auto)
    for h, a in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves(auto)):
        np.testing.assert_allclose(h, a, rtol=1e-10, atol=1e-12)


def test_mixed_dtypes_keep_each_primal_dtype():
    params, _ = _args(2, 4, 6, jnp.float32)
    x = jnp.asarray(RNG.standard_normal((2, 4, 6)), jnp.bfloat16)
    y, res = attention.fwd(params, x, num_heads=2)
    params_bar, x_bar = attention.bwd(res, jnp.ones_like(y), num_heads=2)
    assert y.dtype == jnp.float32 and x_bar.dtype == jnp.bfloat16
    assert {l.dtype for l in params_bar} == {jnp.dtype(jnp.float32)}
    check_vjp(attention, params, x, fd=False, num_heads=2)


def test_init():
    params = attention.init(jax.random.PRNGKey(0), 256)
    assert isinstance(params, AttentionParams) and isinstance(attention, jb.Layer)
    assert all(w.shape == (256, 256) and w.dtype == jnp.float32 for w in params[:4])
    np.testing.assert_array_equal(params.b_o, np.zeros(256))
    np.testing.assert_allclose([float(jnp.var(w)) for w in params[:4]], 1 / 256, rtol=0.05)
    assert attention.init(jax.random.PRNGKey(0), 4, jnp.float64).w_q.dtype == jnp.float64
    grouped = attention.init(jax.random.PRNGKey(0), 8, num_heads=4, num_kv_heads=2)
    assert [w.shape for w in grouped[:4]] == [(8, 8), (8, 4), (8, 4), (8, 8)]  # Hkv * d = 2 * 2 columns
    with pytest.raises(ValueError, match=r"attention.init: num_kv_heads=2 needs num_heads"):
        attention.init(jax.random.PRNGKey(0), 8, num_kv_heads=2)
    with pytest.raises(ValueError, match=r"attention: num_kv_heads=3 must divide num_heads=4"):
        attention.init(jax.random.PRNGKey(0), 8, num_heads=4, num_kv_heads=3)


# the tiled path ------------------------------------------------------------------------------------------
def test_tiled_path_needs_a_fraction_of_the_untiled_temp_memory():
    """jit(grad)'s temp at T=512, blocks of 64: the (T, T) temporaries are gone (measured 0.23x)."""
    params, x = _args(1, 512, 16, jnp.float32)
    y_bar = random_cotangent(x)

    def temp_bytes(block_size):
        fn = functools.partial(attention.apply, num_heads=2, causal=True, block_size=block_size)
        return compiled_temp_bytes(fn, (params, x), y_bar)

    assert temp_bytes(64) < 0.5 * temp_bytes(512)


def test_tiled_saturated_rows_give_exact_zeros_in_float32():
    """NOTE (rowsum) in _attention_tiled.py: D summed as rowsum(p_bar * p) block by block."""
    from jaxback.testing._entries_attention import _cast, _fixed_args
    params, x = _cast(_fixed_args((2, 4, 4), scale=1e4), jnp.float32)
    params_bar, _ = _vjp(attention.apply, (params, x), jnp.ones_like(x), num_heads=2, block_size=2)
    np.testing.assert_array_equal(params_bar.w_q, 0.0)
    np.testing.assert_array_equal(params_bar.w_k, 0.0)
    assert np.abs(params_bar.w_v).max() > 1e3


def test_automatic_block_size_switches_at_the_documented_length():
    from jaxback._attention import DEFAULT_BLOCK, UNTILED_UP_TO, _block
    assert _block(UNTILED_UP_TO, None) is None and _block(UNTILED_UP_TO + 1, None) == DEFAULT_BLOCK
    assert _block(100, 100) is None and _block(100, 32) == 32


def test_the_tiled_mutant_harness_with_no_mutation_passes():
    from jaxback.testing._entries_attention_tiled import TILED, _tiled_mutant
    harness = make_layer(attention.auto, attention.fwd, _tiled_mutant("none").bwd, name="attention[tiled none]",
                         init=attention.init)
    for hyper in TILED.hypers[:2]:  # a mask in blocks of 3 (padded); causal in blocks of 2
        check_vjp(harness, *TILED.args(0, shape=(2, 4, 6)), fd=False, **hyper)


def test_tiled_matches_untiled_for_every_block_size_and_setting():
    """Blocks of 2 and 3 (padded) against the untiled autodiff (the registry entry covers the rest);
    and cross-attention with grouped K/V heads, T = 5 queries against S = 3 and S = 7 keys."""
    params, x = _args(2, 5, 6)
    grouped = INFO.sample_args(np.random.default_rng(1), jnp.float64, (2, 5, 6), "normal")[0]
    grouped = grouped._replace(w_k=grouped.w_k[:, :3], w_v=grouped.w_v[:, :3])  # 1 K/V head of size 3
    mask = jnp.asarray(RNG.random((5, 5)) < 0.6).at[2].set(False)
    y_bar = random_cotangent(x)
    cross = {"num_heads": 2, "num_kv_heads": 1, "causal": True}
    for args, hyper, block_sizes in [((params, x), dict(num_heads=2, causal=True), (2, 3)),
                                     ((params, x), dict(num_heads=2, mask=mask), (2, 3)),
                                     ((grouped, x, _args(2, 3, 6, seed=2)[1]), cross, (2,)),   # T padded
                                     ((grouped, x, _args(2, 7, 6, seed=3)[1]), cross, (3,))]:  # T and S padded
        want = _vjp(attention.auto, args, y_bar, **hyper)
        for block_size in block_sizes:
            got = _vjp(attention.apply, args, y_bar, block_size=block_size, **hyper)
            for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
                np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


# every feature at once; models ---------------------------------------------------------------------------
@pytest.mark.parametrize("block_size", [None, 2], ids=["untiled", "tiled"])
def test_cross_grouped_causal_masked_dropout_at_once_matches_autodiff_and_differences(block_size):
    from jaxback.testing._entries_attention_cross import _grouped_args
    params, x, kv = _grouped_args(np.random.default_rng(0), jnp.float64, (2, 5, 8), "normal")  # S = 4 keys
    mask = jnp.asarray(RNG.random((2, 1, 5, 4)) < 0.7)
    check_vjp(attention, params, x, kv, jax.random.key(3), num_heads=4, num_kv_heads=2, causal=True, mask=mask,
              dropout_rate=0.4, block_size=block_size)


def test_in_a_model_attention_gets_its_key_out_of_training_none_and_kv_as_a_second_input():
    model = jb.serial(jb.bind(jb.attention, num_heads=2, dropout_rate=0.5), jb.linear.sized(3))
    x = jax.random.normal(jax.random.PRNGKey(5), (2, 4, 6), jnp.float64)
    params, _ = model.init(jax.random.PRNGKey(6), x)
    key = jax.random.PRNGKey(7)
    drop = lambda k: jb.linear(params[1], jb.attention(params[0], x, None, k, num_heads=2, dropout_rate=0.5))
    np.testing.assert_allclose(model(params, x, key=key), drop(jax.random.fold_in(key, 0)), rtol=1e-12)
    for no_dropout in (model(params, x, key=key, training=False), model(params, x)):  # eval; no key: no dropout
        np.testing.assert_allclose(no_dropout, drop(None), rtol=1e-12)
    cross = jb.serial(jb.parallel(jb.identity, jb.linear.sized(6)),
                      jb.bind(jb.attention, num_heads=2, num_kv_heads=1).sized(2, 1))
    pair = (x, jax.random.normal(jax.random.PRNGKey(8), (2, 3, 5), jnp.float64))
    cross_params, _ = cross.init(jax.random.PRNGKey(9), pair)
    for net, inputs, p in [(model, x, params), (cross, pair, cross_params)]:
        target = jnp.zeros((2, 4, 3 if net is model else 6))
        out = {m: jb.value_and_grad(net, jb.mse, mode=m)(p, inputs, target, key=key) for m in jb.MODES}
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
                               out["explicit"], out["vjp"])
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12),
                               out["explicit"], out["auto"])
