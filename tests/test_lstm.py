"""lstm: the hand BPTT rule against autodiff, plus what the generic registry tests do not cover.

One cell step against a formula written out here, long-sequence stability, the two cotangent
sources (hs and final_state) separately, a backward with no jax.vjp in it, the residual and
compiled-memory audit against autodiff, init, and for now the quick loop over ENTRIES.
"""

import contextlib
import functools
import io
import math
import re

import jax
import jax.ad_checkpoint
import jax.numpy as jnp
import numpy as np
import pytest

import jaxback as jb
from _recurrent import assert_trees_close, sample, vjp
from jaxback._lstm import LSTMParams, LSTMState, lstm, lstm_state
from jaxback.testing import check_vjp, random_cotangent
from jaxback.testing._entries_lstm import ENTRIES, faulty_cell_vjp, sample_args

INFO = ENTRIES[0]


def _args(shape=(4, 2, 3), dtype=jnp.float64, seed=0, kind="normal"):
    return sample(sample_args, shape, dtype, seed, kind)


_vjp, _assert_trees_close = vjp, assert_trees_close


def test_unmutated_harness_passes():
    """faulty_cell_vjp(None) is the real rule, so the kills above are real."""
    check_vjp(jb.make_layer(lstm.auto, lstm.fwd, faulty_cell_vjp(None), name="lstm[none]"), *_args())


# Behaviour ----------------------------------------------------------------------------------------
def test_one_step_equals_the_cell_formula():
    params, xs, (h0, c0) = _args((1, 2, 3))
    z = xs[0] @ params.w_x + h0 @ params.w_h + params.b
    z_i, z_f, z_g, z_o = np.split(np.asarray(z), 4, axis=-1)
    sig = lambda v: 1 / (1 + np.exp(-v))
    c1 = sig(z_f) * c0 + sig(z_i) * np.tanh(z_g)
    h1 = sig(z_o) * np.tanh(c1)
    hs, final = lstm(params, xs, LSTMState(h0, c0))
    np.testing.assert_allclose(hs[0], h1, rtol=1e-13)
    np.testing.assert_allclose(final.h, h1, rtol=1e-13)
    np.testing.assert_allclose(final.c, c1, rtol=1e-13)


@pytest.mark.parametrize("part", ["hs only", "final_state only"])
def test_each_cotangent_source_alone_matches_autodiff(part):
    """A rule that ignored one of the two output cotangents would pass only the other."""
    args = _args()
    hs_bar, final_bar = random_cotangent(lstm.auto(*args), seed=3)
    zero = lambda tree: jax.tree_util.tree_map(jnp.zeros_like, tree)
    y_bar = (hs_bar, zero(final_bar)) if part == "hs only" else (zero(hs_bar), final_bar)
    _assert_trees_close(_vjp(lstm, args, y_bar), _vjp(lstm.auto, args, y_bar))


# Memory audit -------------------------------------------------------------------------------------
AUDIT = (128, 8, 16, 32)  # T, N, D, H


def _audit_args():
    t, n, d, h = AUDIT
    params = lstm.init(jax.random.PRNGKey(0), d, h)  # float32
    xs = jax.random.normal(jax.random.PRNGKey(1), (t, n, d), jnp.float32)
    return params, xs, lstm_state(n, h)


def _pairing(fn, ct):
    return lambda *a: sum(jnp.vdot(u, v) for u, v in zip(jax.tree_util.tree_leaves(fn(*a)),
                                                         jax.tree_util.tree_leaves(ct)))


def _saved_beyond_inputs(fn, args):
    """Sizes of the residuals ``print_saved_residuals`` lists that the layer made (not the
    arguments, not the reshapes of the test's own cotangent in ``_pairing``)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        jax.ad_checkpoint.print_saved_residuals(fn, *args)
    lines = [l for l in out.getvalue().splitlines() if "jaxback/_lstm.py" in l and "from the argument" not in l]
    return [math.prod(int(d) for d in re.search(r"\[([\d,]*)\]", l)[1].split(",") if d) for l in lines]


def test_hand_rule_saves_less_than_autodiff():
    """Residuals beyond the inputs: hand hs, cs (2 x T*N*H); compiled temp bytes: hand <= auto."""
    args = _audit_args()
    ct = random_cotangent(lstm.auto(*args))
    hand, auto = (_saved_beyond_inputs(_pairing(fn, ct), args) for fn in (lstm.apply, lstm.auto))
    t, n, _, h = AUDIT
    assert hand == [t * n * h, t * n * h] and sum(hand) < sum(auto), (hand, auto)
    temp = {name: jax.jit(jax.grad(_pairing(fn, ct), argnums=(0, 1, 2))).lower(*args).compile()
            .memory_analysis().temp_size_in_bytes for name, fn in (("hand", lstm.apply), ("auto", lstm.auto))}
    assert temp["hand"] <= temp["auto"], temp


# init ---------------------------------------------------------------------------------------------
def test_init_shapes_forget_bias_and_zero_state():
    params = lstm.init(jax.random.PRNGKey(0), 64, 32)
    assert isinstance(params, LSTMParams)
    assert params.w_x.shape == (64, 128) and params.w_h.shape == (32, 128) and params.b.shape == (128,)
    np.testing.assert_array_equal(params.b, np.r_[np.zeros(32), np.ones(32), np.zeros(64)])
    np.testing.assert_allclose(params.w_x.std(), 1 / 8, rtol=0.05)  # LeCun: std 1/sqrt(D)
    np.testing.assert_allclose(params.w_h.std(), 1 / np.sqrt(32), rtol=0.05)
    state = lstm_state(5, 32, jnp.float64)
    assert state.h.shape == state.c.shape == (5, 32) and state.c.dtype == jnp.float64
    assert not jnp.any(state.h) and not jnp.any(state.c)


def test_batch_first_is_the_time_major_layer_transposed():
    """Forward and a random-cotangent VJP, hand and autodiff, under jit: (N, T, .) in and out."""
    params, xs, state = _args((5, 2, 3))
    swap = lambda a: jnp.swapaxes(a, 0, 1)
    hs_bar, final_bar = random_cotangent(lstm.auto(params, xs, state), seed=4)
    ref_y, ref_vjp = jax.vjp(lstm, params, xs, state)
    ref_bars = ref_vjp((hs_bar, final_bar))
    for fn in (lstm, lstm.auto):
        y, vjp = jax.vjp(jax.jit(functools.partial(fn, batch_first=True)), params, swap(xs), state)
        _assert_trees_close(y, (swap(ref_y[0]), ref_y[1]))
        p_bar, xs_bar, s_bar = vjp((swap(hs_bar), final_bar))
        _assert_trees_close((p_bar, swap(xs_bar), s_bar), ref_bars)
