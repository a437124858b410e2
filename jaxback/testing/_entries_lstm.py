"""Registry entries for lstm (``ENTRIES``, loaded by ``_builtin.builtin_registry()``; see _registry.py).

``shape`` is the shape of ``xs``, (T, N, D); the hidden size is derived from it, H = 2 * N, so that
a generic test that rebuilds arguments from ``xs.shape`` gets the same parameter shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._lstm import (NAME, LSTMParams, LSTMState, _bptt, _gate_tangents, _gates, _sigmoid_slope, _tanh_slope,
                     _tangent_scan, lstm, lstm_bwd)
from .._recurrent import sequence_jvp
from ._recurrent_cases import batch_first_cases, recurrent_info
from ._registry import EdgeCase, ErrorCase, Mutant
from .strategies import values

__all__ = ["ENTRIES", "faulty_cell_vjp", "faulty_cell_jvp"]


def _hidden(shape) -> int:
    return 2 * shape[1]


def _params(rng, d, h, dtype, scale=1.0):
    """LeCun-scaled random weights and a bias of std 0.5 (all gates in their sensitive range)."""
    return LSTMParams(w_x=jnp.asarray(scale * rng.standard_normal((d, 4 * h)) / np.sqrt(d), dtype),
                      w_h=jnp.asarray(scale * rng.standard_normal((h, 4 * h)) / np.sqrt(h), dtype),
                      b=jnp.asarray(0.5 * rng.standard_normal(4 * h), dtype))


def _state(rng, n, h, dtype):
    return LSTMState(jnp.asarray(np.tanh(rng.standard_normal((n, h))), dtype),
                     jnp.asarray(rng.standard_normal((n, h)), dtype))


def sample_args(rng, dtype, shape, kind):
    t, n, d = shape
    h = _hidden(shape)
    return _params(rng, d, h, dtype), jnp.asarray(values(rng, shape, kind), dtype), _state(rng, n, h, dtype)


def _args(shape=(4, 2, 3), dtype=jnp.float64, seed=0):
    return sample_args(np.random.default_rng(seed), dtype, shape, "normal")


# Edge cases ---------------------------------------------------------------------------------------
def _empty_check(y, cotangents):
    (hs, final), (params_bar, xs_bar, state_bar) = y, cotangents
    assert hs.shape == (0, 2, 4) and xs_bar.shape == (0, 2, 3)
    np.testing.assert_array_equal(final.c, _args((0, 2, 3), final.c.dtype)[2].c)  # state unchanged
    for leaf in params_bar:
        np.testing.assert_array_equal(leaf, 0)
    for leaf in state_bar:  # the final-state cotangent passes straight through
        np.testing.assert_array_equal(leaf, 1)


T_MEMORY = 4


def _memory_args(dtype):
    """Forget gate saturated open (f = 1), input gate shut (i = 0), o = 1/2, weights 0."""
    _, _, state = _args((T_MEMORY, 2, 3), dtype)
    h = state.h.shape[1]
    b = jnp.zeros(4 * h, dtype).at[:h].set(-1e4).at[h:2 * h].set(1e4)
    params = LSTMParams(jnp.zeros((3, 4 * h), dtype), jnp.zeros((h, 4 * h), dtype), b)
    return params, jnp.ones((T_MEMORY, 2, 3), dtype), state


def _memory_check(y, cotangents):
    """c_T = c_0 exactly; with all-ones cotangents dL/dc_0 = c_T_bar + (sum_t hs_bar_t + h_T_bar)
    * o * tanh'(c_0) = 1 + (T + 1) / 2 * tanh'(c_0): nothing vanishes along the carried cell state."""
    (hs, final), (_, _, state_bar) = y, cotangents
    c0 = _memory_args(final.c.dtype)[2].c
    rtol = max(1e-6, 8 * float(jnp.finfo(c0.dtype).eps))
    np.testing.assert_array_equal(final.c, c0)
    np.testing.assert_allclose(hs, jnp.broadcast_to(0.5 * jnp.tanh(c0), hs.shape), rtol=rtol)
    np.testing.assert_allclose(state_bar.c, 1 + (T_MEMORY + 1) * 0.5 * (1 - jnp.tanh(c0) ** 2), rtol=rtol)
    np.testing.assert_array_equal(state_bar.h, 0)  # w_h = 0: h_0 reaches nothing


def _saturated_args(dtype):
    params, _, state = _args((4, 2, 3), dtype)
    xs = jnp.asarray(np.random.default_rng(1).choice([1e4, -1e4], (4, 2, 3)), dtype)
    return params, xs, state


def _saturated_check(y, cotangents):
    for leaf in jax.tree_util.tree_leaves((y, cotangents)):
        assert jnp.all(jnp.isfinite(leaf)), "saturated gates must give finite values and slopes"
    assert jnp.all(jnp.abs(y[0]) <= 1)


BATCH_FIRST, BATCH_FIRST_ERRORS = batch_first_cases(lstm, lambda dtype: _args((4, 2, 3), dtype),
                                                   lambda: _replace(1, lambda xs: xs[0]))

EDGE_CASES = (
    EdgeCase("empty sequence (T = 0)", lambda dtype: _args((0, 2, 3), dtype),
             "hs is (0, N, H), final_state is state; the state cotangent is the final_state cotangent,"
             " parameter cotangents are zero", _empty_check),
    EdgeCase("forget gate saturated open, input gate shut", _memory_args,
             "the cell state is carried unchanged (c_T = c_0 exactly) and its gradient does not vanish:"
             " dL/dc_0 = c_T_bar + (sum_t hs_bar_t + h_T_bar) * o * tanh'(c_0)", _memory_check),
    EdgeCase("inputs of +-1e4 (every gate saturated)", _saturated_args,
             "finite outputs in [-1, 1] and finite cotangents (slopes are exactly 0, not NaN)",
             _saturated_check),
    BATCH_FIRST,
)


# Error cases --------------------------------------------------------------------------------------
def _replace(i, value, shape=(4, 2, 3)):
    args = list(_args(shape))
    args[i] = value(args[i])
    return tuple(args)


ERROR_CASES = (
    ErrorCase("xs of rank 2", lambda: _replace(1, lambda xs: xs[0]), ValueError,
              r"lstm: xs must have exactly 3 dimension\(s\).*\(T, N, D\)"),
    ErrorCase("input size mismatch", lambda: _replace(1, lambda xs: xs[..., :2]), ValueError,
              r"lstm: xs.shape\[-1\] must equal w_x.shape\[0\]"),
    ErrorCase("integer xs", lambda: _replace(1, lambda xs: xs.astype(jnp.int32)), TypeError,
              r"lstm: xs must be a floating-point array"),
    ErrorCase("integer w_h", lambda: _replace(0, lambda p: p._replace(w_h=p.w_h.astype(jnp.int32))),
              TypeError, r"lstm: params.w_h must be a floating-point array"),
    ErrorCase("w_x width not 4H", lambda: _replace(0, lambda p: p._replace(w_x=p.w_x[:, :-1])),
              ValueError, r"lstm: w_x.shape\[1\] must be 4H"),
    ErrorCase("w_h of the wrong shape", lambda: _replace(0, lambda p: p._replace(w_h=p.w_h[:-1])),
              ValueError, r"lstm: params.w_h must have shape \(4, 16\)"),
    ErrorCase("bias of the wrong shape", lambda: _replace(0, lambda p: p._replace(b=p.b[:4])),
              ValueError, r"lstm: params.b must have shape \(16,\)"),
    ErrorCase("state batch differs from xs", lambda: _replace(2, lambda s: LSTMState(s.h[:1], s.c)),
              ValueError, r"lstm: state.h must have shape \(2, 4\) \(N=2 from xs"),
    ErrorCase("state as a plain tuple", lambda: _replace(2, tuple), TypeError,
              r"lstm: state must be an LSTMState"),
    *BATCH_FIRST_ERRORS,
    ErrorCase("unknown keyword", _args, TypeError,
              r"lstm: unknown keyword argument\(s\) 'reverse'; lstm accepts batch_first", hyper={"reverse": True}),
)


# Mutants ------------------------------------------------------------------------------------------
def faulty_cell_vjp(fault=None):
    """``_lstm._cell_vjp`` rewritten with one ``fault``; ``None`` reproduces it (tests check that)."""
    tanh_slope = (lambda t: 1 - t) if fault == "tanh_slope" else _tanh_slope

    def cell_vjp(w_h, carry, step):
        dh_next, dc = carry
        xw_t, h_prev, c_prev, c, hs_bar_t = step
        i, f, g, o = _gates(xw_t + h_prev @ w_h)
        tc = jnp.tanh(c)
        dh = hs_bar_t if fault == "truncated" else hs_bar_t + dh_next
        dc = dc + dh * o * tanh_slope(tc)
        dz = jnp.concatenate([dc * g * _sigmoid_slope(i), dc * c_prev * _sigmoid_slope(f),
                              dc * i * tanh_slope(g), dh * tc * _sigmoid_slope(o)], axis=-1)
        return (dz @ w_h.T, dc if fault == "no_forget" else dc * f), dz

    return lambda res, y_bar: _bptt(res, y_bar, cell_vjp)


def _without_final_state_cotangent(res, y_bar):
    hs_bar, final_bar = y_bar
    return lstm_bwd(res, (hs_bar, LSTMState(jnp.zeros_like(final_bar.h), jnp.zeros_like(final_bar.c))))


def faulty_cell_jvp(fault=None):
    """``_lstm._cell_jvp`` rewritten with one ``fault``, as a whole jvp; ``None`` reproduces it."""
    def cell_jvp(w_h, w_h_dot, carry, step):
        (h, c), (h_dot, c_dot) = carry
        xw_t, xw_dot_t = step
        i, f, g, o = _gates(xw_t + h @ w_h)
        z_dot = xw_dot_t + (0 if fault == "no_recurrent" else h_dot @ w_h) + h @ w_h_dot
        i_dot, f_dot, g_dot, o_dot = _gate_tangents((i, f, g, o), z_dot)
        c_dot = (0 if fault == "no_forget" else f_dot * c) + f * c_dot + i_dot * g + i * g_dot
        c = f * c + i * g
        tc = jnp.tanh(c)
        h_dot = o_dot * tc + o * _tanh_slope(tc) * c_dot
        return ((o * tc, c), (h_dot, c_dot)), (o * tc, h_dot)

    def jvp(primals, tangents, batch_first=False):
        return sequence_jvp(NAME, lambda p, t: _tangent_scan(p, t, cell_jvp=cell_jvp), primals, tangents, batch_first)
    return jvp


MUTANTS = (
    Mutant("jvp: recurrent term h_dot_{t-1} @ w_h dropped from z_dot", jvp=faulty_cell_jvp("no_recurrent")),
    Mutant("jvp: forget gate's tangent f_dot * c_{t-1} dropped from c_dot", jvp=faulty_cell_jvp("no_forget")),
    Mutant("dc_{t-1} = dc_t (forgot the f factor)", faulty_cell_vjp("no_forget")),
    Mutant("tanh' = 1 - t instead of (1 - t)(1 + t)", faulty_cell_vjp("tanh_slope")),
    Mutant("dh from step t+1 not carried back (truncated BPTT)", faulty_cell_vjp("truncated")),
    Mutant("final_state cotangent dropped", _without_final_state_cotangent),
)


ENTRIES = (recurrent_info(lstm, sample_args, EDGE_CASES, ERROR_CASES, MUTANTS,
                          ""),)
