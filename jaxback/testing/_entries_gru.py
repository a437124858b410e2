"""Registry entries for gru (``ENTRIES``, loaded by ``_builtin.builtin_registry()``; see _registry.py).

``shape`` is the shape of ``xs``, (T, N, D); the hidden size is derived from it, H = 2 * N, so that
a generic test that rebuilds arguments from ``xs.shape`` gets the same parameter shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._gru import NAME, GRUParams, _bptt, _gates, _tangent_scan, gru, gru_bwd
from .._recurrent import sequence_jvp, sigmoid_slope, tanh_slope
from ._recurrent_cases import batch_first_cases, recurrent_info
from ._registry import EdgeCase, ErrorCase, Mutant
from .strategies import values

__all__ = ["ENTRIES", "faulty_step_vjp", "faulty_step_jvp"]


def _params(rng, d, h, dtype):
    """LeCun-scaled random weights and biases of std 0.5 (all gates in their sensitive range)."""
    return GRUParams(w_x=jnp.asarray(rng.standard_normal((d, 3 * h)) / np.sqrt(d), dtype),
                     w_h=jnp.asarray(rng.standard_normal((h, 3 * h)) / np.sqrt(h), dtype),
                     b_x=jnp.asarray(0.5 * rng.standard_normal(3 * h), dtype),
                     b_h=jnp.asarray(0.5 * rng.standard_normal(3 * h), dtype))


def sample_args(rng, dtype, shape, kind):
    t, n, d = shape
    h = 2 * n
    state = jnp.asarray(np.tanh(rng.standard_normal((n, h))), dtype)
    return _params(rng, d, h, dtype), jnp.asarray(values(rng, shape, kind), dtype), state


def _args(shape=(4, 2, 3), dtype=jnp.float64, seed=0):
    return sample_args(np.random.default_rng(seed), dtype, shape, "normal")


def _rtol(dtype):
    return max(1e-6, 8 * float(jnp.finfo(dtype).eps))


# Edge cases ---------------------------------------------------------------------------------------
def _sig(v):
    return 1 / (1 + np.exp(-v))


def _one_step(params, x, h):
    """h_1 written out in numpy (PyTorch's formula), float64."""
    p = [np.asarray(a, np.float64) for a in params]
    a_r, a_z, a_n = np.split(np.asarray(x, np.float64) @ p[0] + p[2], 3, axis=-1)
    u_r, u_z, u_n = np.split(np.asarray(h, np.float64) @ p[1] + p[3], 3, axis=-1)
    r, z = _sig(a_r + u_r), _sig(a_z + u_z)
    return (1 - z) * np.tanh(a_n + r * u_n) + z * np.asarray(h, np.float64)


def _zero_state_args(dtype):
    params, xs, state = _args((1, 2, 3), dtype)
    return params, xs, jnp.zeros_like(state)


def _zero_state_check(y, cotangents):
    (hs, h_T), _ = y, cotangents
    params, xs, h0 = _zero_state_args(hs.dtype)
    np.testing.assert_allclose(hs[0], _one_step(params, xs[0], h0), rtol=_rtol(hs.dtype))
    np.testing.assert_array_equal(hs[0], h_T)  # T = 1: the final state is the one output


def _empty_check(y, cotangents):
    (hs, h_T), (params_bar, xs_bar, state_bar) = y, cotangents
    assert hs.shape == (0, 2, 4) and xs_bar.shape == (0, 2, 3)
    np.testing.assert_array_equal(h_T, _args((0, 2, 3), h_T.dtype)[2])  # state unchanged
    for leaf in params_bar:
        np.testing.assert_array_equal(leaf, 0)
    np.testing.assert_array_equal(state_bar, 1)  # the final-state cotangent passes straight through


T_CARRY = 4


def _carry_args(dtype):
    """Update gate saturated open (z = 1: b_z = 1e4), weights 0: h_t = h_{t-1} at every step."""
    _, _, state = _args((T_CARRY, 2, 3), dtype)
    h = state.shape[1]
    b = jnp.zeros(3 * h, dtype).at[h:2 * h].set(1e4)
    params = GRUParams(jnp.zeros((3, 3 * h), dtype), jnp.zeros((h, 3 * h), dtype), b, jnp.zeros_like(b))
    return params, jnp.ones((T_CARRY, 2, 3), dtype), state


def _carry_check(y, cotangents):
    """hs_t = h_0 exactly; with all-ones cotangents dL/dh_0 = h_T_bar + sum_t hs_bar_t = T + 1 (the
    direct path dh * z, z = 1) and every weight cotangent is 0 (the slopes z(1 - z), 1 - z are 0)."""
    (hs, h_T), (params_bar, xs_bar, state_bar) = y, cotangents
    h0 = _carry_args(hs.dtype)[2]
    np.testing.assert_array_equal(hs, jnp.broadcast_to(h0, hs.shape))
    np.testing.assert_array_equal(h_T, h0)
    np.testing.assert_array_equal(state_bar, T_CARRY + 1)
    for leaf in (*params_bar, xs_bar):
        np.testing.assert_array_equal(leaf, 0)


def _saturated_args(dtype):
    params, _, state = _args((4, 2, 3), dtype)
    xs = jnp.asarray(np.random.default_rng(1).choice([1e4, -1e4], (4, 2, 3)), dtype)
    return params, xs, state


def _saturated_check(y, cotangents):
    for leaf in jax.tree_util.tree_leaves((y, cotangents)):
        assert jnp.all(jnp.isfinite(leaf)), "saturated gates must give finite values and slopes"
    assert jnp.all(jnp.abs(y[0]) <= 1)  # |h_0| < 1 here (tanh of normals)


BATCH_FIRST, BATCH_FIRST_ERRORS = batch_first_cases(gru, lambda dtype: _args((4, 2, 3), dtype),
                                                   lambda: _replace(1, lambda xs: xs[0]))

EDGE_CASES = (
    EdgeCase("one step (T = 1) from the zero state", _zero_state_args,
             "hs[0] = final_state = (1 - z) * n with u = b_h (PyTorch's formula written out)",
             _zero_state_check),
    EdgeCase("empty sequence (T = 0)", lambda dtype: _args((0, 2, 3), dtype),
             "hs is (0, N, H), final_state is state; the state cotangent is the final_state cotangent,"
             " parameter cotangents are zero", _empty_check),
    EdgeCase("update gate saturated open (z = 1)", _carry_args,
             "the state is carried unchanged (h_T = h_0 exactly) and its gradient does not vanish:"
             " dL/dh_0 = h_T_bar + sum_t hs_bar_t; weight and input cotangents are exactly 0", _carry_check),
    BATCH_FIRST,
    EdgeCase("inputs of +-1e4 (every gate saturated)", _saturated_args,
             "finite outputs in [-1, 1] and finite cotangents (slopes are exactly 0, not NaN)",
             _saturated_check),
)


# Error cases --------------------------------------------------------------------------------------
def _replace(i, value, shape=(4, 2, 3)):
    args = list(_args(shape))
    args[i] = value(args[i])
    return tuple(args)


def _param(**change):
    return lambda: _replace(0, lambda p: p._replace(**{k: f(getattr(p, k)) for k, f in change.items()}))


ERROR_CASES = (
    ErrorCase("xs of rank 2", lambda: _replace(1, lambda xs: xs[0]), ValueError,
              r"gru: xs must have exactly 3 dimension\(s\).*\(T, N, D\)"),
    ErrorCase("input size mismatch", lambda: _replace(1, lambda xs: xs[..., :2]), ValueError,
              r"gru: xs.shape\[-1\] must equal w_x.shape\[0\]"),
    ErrorCase("integer xs", lambda: _replace(1, lambda xs: xs.astype(jnp.int32)), TypeError,
              r"gru: xs must be a floating-point array"),
    ErrorCase("integer b_h", _param(b_h=lambda b: b.astype(jnp.int32)), TypeError,
              r"gru: params.b_h must be a floating-point array"),
    ErrorCase("w_x width not 3H", _param(w_x=lambda w: w[:, :-1]), ValueError, r"gru: w_x.shape\[1\] must be 3H"),
    ErrorCase("w_h of the wrong shape", _param(w_h=lambda w: w[:-1]), ValueError,
              r"gru: params.w_h must have shape \(4, 12\)"),
    ErrorCase("b_x of the wrong shape", _param(b_x=lambda b: b[:4]), ValueError,
              r"gru: params.b_x must have shape \(12,\)"),
    ErrorCase("state batch differs from xs", lambda: _replace(2, lambda s: s[:1]), ValueError,
              r"gru: state must have shape \(2, 4\) \(N=2 from xs"),
    ErrorCase("state as a tuple (an LSTM's (h, c))", lambda: _replace(2, lambda s: (s, s)), TypeError,
              r"gru: state must be one array h_0 of shape \(N, H\)"),
    ErrorCase("params as a plain tuple", lambda: _replace(0, tuple), TypeError, r"gru: params must be a GRUParams"),
    *BATCH_FIRST_ERRORS,
    ErrorCase("unknown keyword", _args, TypeError, r"gru: unknown keyword argument\(s\) 'reverse'; gru accepts batch_first",
              hyper={"reverse": True}),
)


# Mutants ------------------------------------------------------------------------------------------
def faulty_step_vjp(fault=None):
    """``_gru._step_vjp`` rewritten with one ``fault``; ``None`` reproduces it (tests check that)."""

    def step_vjp(w_h, dh_next, step):
        r, z, n, u_n, h_prev, hs_bar_t = step
        dh = hs_bar_t if fault == "truncated" else hs_bar_t + dh_next
        dn = dh * tanh_slope(n) if fault == "no_one_minus_z" else dh * (1 - z) * tanh_slope(n)
        dr = dn * u_n * (r if fault == "r_slope" else sigmoid_slope(r))
        dz = dh * (h_prev - n) * sigmoid_slope(z)
        da, du = jnp.concatenate([dr, dz, dn], -1), jnp.concatenate([dr, dz, dn if fault == "no_r" else dn * r], -1)
        return (du @ w_h.T if fault == "no_direct" else dh * z + du @ w_h.T), da

    return lambda res, y_bar: _bptt(res, y_bar, step_vjp)


def _without_final_state_cotangent(res, y_bar):
    hs_bar, h_bar = y_bar
    return gru_bwd(res, (hs_bar, jnp.zeros_like(h_bar)))


def faulty_step_jvp(fault=None):
    """``_gru._step_jvp`` rewritten with one ``fault``, as a whole jvp; ``None`` reproduces it."""
    def step_jvp(params, params_dot, carry, xw_and_tangent):
        (h, h_dot), (xw_t, xw_dot_t) = carry, xw_and_tangent
        a_r_dot, a_z_dot, a_n_dot = jnp.split(xw_dot_t, 3, axis=-1)
        recurrent = 0 if fault == "no_recurrent" else h_dot @ params.w_h
        u_r_dot, u_z_dot, u_n_dot = jnp.split(recurrent + h @ params_dot.w_h + params_dot.b_h, 3, axis=-1)
        r, z, n, u_n = _gates(xw_t, h @ params.w_h + params.b_h)
        r_dot, z_dot = sigmoid_slope(r) * (a_r_dot + u_r_dot), sigmoid_slope(z) * (a_z_dot + u_z_dot)
        n_dot = tanh_slope(n) * (a_n_dot + (0 if fault == "no_r_dot" else r_dot * u_n) + r * u_n_dot)
        h_dot = (1 - z) * n_dot + (0 if fault == "no_direct" else z * h_dot) + z_dot * (h - n)
        return ((1 - z) * n + z * h, h_dot), ((1 - z) * n + z * h, h_dot)

    def jvp(primals, tangents, batch_first=False):
        return sequence_jvp(NAME, lambda p, t: _tangent_scan(p, t, step_jvp=step_jvp), primals, tangents, batch_first)
    return jvp


MUTANTS = (
    Mutant("jvp: recurrent term h_dot_{t-1} @ w_h dropped from hw_dot", jvp=faulty_step_jvp("no_recurrent")),
    Mutant("jvp: n_dot without r_dot * u_n (the reset gate's tangent)", jvp=faulty_step_jvp("no_r_dot")),
    Mutant("jvp: direct path z * h_dot_{t-1} dropped from h_dot", jvp=faulty_step_jvp("no_direct")),
    Mutant("dh from step t+1 not carried back (truncated BPTT)", faulty_step_vjp("truncated")),
    Mutant("r gate slope r instead of r (1 - r)", faulty_step_vjp("r_slope")),
    Mutant("n_bar = dh, the (1 - z) factor forgotten", faulty_step_vjp("no_one_minus_z")),
    Mutant("u_n's cotangent dn, the r factor forgotten", faulty_step_vjp("no_r")),
    Mutant("direct path dh * z to h_{t-1} dropped", faulty_step_vjp("no_direct")),
    Mutant("final_state cotangent dropped", _without_final_state_cotangent),
)


ENTRIES = (recurrent_info(gru, sample_args, EDGE_CASES, ERROR_CASES, MUTANTS,
                          "PyTorch's nn.GRU gates (r applied to w_h h + b_h). "),)
