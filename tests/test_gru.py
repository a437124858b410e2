"""gru: the hand BPTT rule against autodiff, plus what the generic registry tests do not cover.

The mutant harness reproduces the rule, both cotangent sources (hs and final_state) alone, a long
sequence, a backward with no autodiff in it, compiled temp against autodiff, init and models.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxback as jb
from _recurrent import assert_trees_close, sample, vjp
from jaxback import GRUParams, gru, gru_state
from jaxback.testing import check_vjp, random_cotangent
from jaxback.testing._entries_gru import faulty_step_vjp, sample_args
from jaxback.testing.memory import compiled_temp_bytes


def _args(shape=(4, 2, 3), dtype=jnp.float64, seed=0, kind="normal"):
    return sample(sample_args, shape, dtype, seed, kind)


_vjp, _assert_trees_close = vjp, assert_trees_close


def test_x64_is_on():
    assert jnp.zeros(1).dtype == jnp.float64


def test_unmutated_harness_passes():
    """faulty_step_vjp(None) is the real rule, so the registry's kills are real."""
    check_vjp(jb.make_layer(gru.auto, gru.fwd, faulty_step_vjp(None), name="gru[none]"), *_args())


@pytest.mark.parametrize("part", ["hs only", "final_state only"])
def test_each_cotangent_source_alone_matches_autodiff(part):
    """A rule that ignored one of the two output cotangents would pass only the other."""
    args = _args()
    hs_bar, h_bar = random_cotangent(gru.auto(*args), seed=3)
    y_bar = (hs_bar, jnp.zeros_like(h_bar)) if part == "hs only" else (jnp.zeros_like(hs_bar), h_bar)
    _assert_trees_close(_vjp(gru, args, y_bar), _vjp(gru.auto, args, y_bar))


def test_residuals_are_the_inputs_and_hs():
    args = _args()
    (hs, _), res = gru.fwd(*args)
    params, xs, state, saved_hs = res
    assert params is args[0] and xs is args[1] and state is args[2]
    np.testing.assert_array_equal(saved_hs, hs)


@pytest.mark.parametrize("shape", [(128, 8, 16, 16), (128, 64, 64, 128)], ids=["small", "large"])
def test_compiled_temp_below_autodiff(shape):
    """The numbers in _gru.py's docstring (float32): run with -s to see them."""
    t, n, d, h = shape
    args = (gru.init(jax.random.PRNGKey(0), d, h), jax.random.normal(jax.random.PRNGKey(1), (t, n, d), jnp.float32),
            gru_state(n, h))
    y_bar = random_cotangent(gru.auto(*args))
    hand, auto = (compiled_temp_bytes(fn, args=args, y_bar=y_bar) for fn in (gru.apply, gru.auto))
    print(f"gru T={t} N={n} D={d} H={h}: hand {hand / 1e6:.2f} MB, autodiff {auto / 1e6:.2f} MB")
    assert hand <= auto


def test_init_shapes_and_zero_state():
    params = gru.init(jax.random.PRNGKey(0), 64, 32)
    assert isinstance(params, GRUParams)
    assert params.w_x.shape == (64, 96) and params.w_h.shape == (32, 96)
    assert params.b_x.shape == params.b_h.shape == (96,) and not jnp.any(params.b_x) and not jnp.any(params.b_h)
    np.testing.assert_allclose(params.w_x.std(), 1 / 8, rtol=0.05)  # LeCun: std 1/sqrt(D)
    state = gru_state(5, 32, jnp.float64)
    assert state.shape == (5, 32) and state.dtype == jnp.float64 and not jnp.any(state)


def test_mixed_dtypes_promote_and_cast_back():
    params, xs, state = _args(dtype=jnp.float32)
    params = GRUParams(*(p.astype(jnp.bfloat16) for p in params))
    y = gru(params, xs, state)
    assert y[0].dtype == y[1].dtype == jnp.float32
    bars = _vjp(gru, (params, xs, state), random_cotangent(y))
    assert [b.dtype for b in bars[0]] == [jnp.bfloat16] * 4 and bars[1].dtype == bars[2].dtype == jnp.float32


def test_in_a_model_sized_infers_the_input_size():
    xs, state = jnp.ones((4, 2, 3)), gru_state(2, 5)
    model = jb.serial(gru.sized(5))
    params, _ = model.init(jax.random.PRNGKey(0), (xs, state))
    assert params[0].w_x.shape == (3, 15) and params[0].w_h.shape == (5, 15)
    hs, h_T = model(params, (xs, state))
    assert hs.shape == (4, 2, 5) and h_T.shape == (2, 5)


def test_batch_first_is_the_time_major_layer_transposed():
    """Forward and a random-cotangent VJP, hand and autodiff, under jit: (N, T, .) in and out."""
    params, xs, state = _args((5, 2, 3))
    swap = lambda a: jnp.swapaxes(a, 0, 1)
    hs_bar, h_bar = random_cotangent(gru.auto(params, xs, state), seed=4)
    ref_y, ref_vjp = jax.vjp(gru, params, xs, state)
    ref_bars = ref_vjp((hs_bar, h_bar))
    for fn in (gru, gru.auto):
        bf = jax.jit(functools.partial(fn, batch_first=True))
        y, vjp = jax.vjp(bf, params, swap(xs), state)
        _assert_trees_close(y, (swap(ref_y[0]), ref_y[1]))
        p_bar, xs_bar, s_bar = vjp((swap(hs_bar), h_bar))
        _assert_trees_close((p_bar, swap(xs_bar), s_bar), ref_bars)
