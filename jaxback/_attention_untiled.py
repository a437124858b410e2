"""attention's per-head maths with the whole (T, S) block of scores at once (the untiled path).

Per head (a leading (N, H) left implicit), q: (T, d), and k, v: (S, d) already shared over the query
heads (_attention_heads.py). These are the Forward and Backward lines of _attention.py between the
projections; _attention_tiled.py is the same maths one (B, B) block at a time.

NOTE (lse): L = m + lse is the row's log-sum-exp, m = max_j s its finite row maximum, and
lse = log sum_j exp(s - m) in [0, log S]. We save m and lse, not L (which flash attention stores):
L rounds at the scale of m (for scores ~1e7, an absolute error ~1e-9, hence a relative error ~1e-9
in every recomputed P), while lse keeps full precision.
NOTE (rowsum): flash attention takes the row sum as rowsum(o_bar * o); rowsum(p_bar * p) (the tiled
path sums it block by block) is the more accurate: for a saturated row (p one-hot, scores ~1e7) it
equals p_bar[i, k] exactly, so s_bar = 0 as it should, while o_bar . o and o_bar . v_k round
differently and leave noise of eps |o_bar| |v| that q_bar, k_bar and then w_q_bar, w_k_bar amplify
by |k| |x| (measured: 1e-5 where autodiff gives 0, at |x| ~ 1e4).
NOTE (stability): exp only ever sees s - m <= 0, so huge scores do not overflow; ``auto`` shifts by
``stop_gradient(m)`` (exact: softmax does not change under a shift). Non-finite x gives NaN.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
from jax import lax

from ._attention_dropout import UNTILED, block_keep, dropped

__all__ = ["scores", "causal_pairs", "allowed", "row_shift", "log_row_sum", "untiled_forward", "untiled_backward"]


def scores(q, k, allowed_pairs):
    """s = q @ k.T / sqrt(d), -inf where not allowed: (..., Tq, d), (..., Tk, d) -> (..., Tq, Tk)."""
    s = jnp.einsum("nhie,nhje->nhij", q, k) / math.sqrt(q.shape[-1])
    return s if allowed_pairs is None else jnp.where(allowed_pairs, s, -jnp.inf)


def causal_pairs(rows, cols, t, s):
    """Key j may be seen by query i when j <= i + (S - T): the queries are the last T of the S
    positions (aligned at the end; S = T: j <= i). Indices may be arrays of any shape."""
    return cols <= rows + (s - t)


def allowed(t, s, causal, mask):
    """Which (query, key) pairs may attend: a boolean broadcastable to (N, H, T, S), or None (all)."""
    if causal:  # rebuilt from iota: nothing to save
        tri = causal_pairs(lax.broadcasted_iota(jnp.int32, (t, s), 0), lax.broadcasted_iota(jnp.int32, (t, s), 1), t, s)
        return tri if mask is None else tri & mask
    return mask


def row_shift(s):
    """m: the row max, 0 for a fully masked row; a constant shift, so no gradient flows into it."""
    m = jnp.max(s, axis=-1, keepdims=True, initial=-jnp.inf)
    return lax.stop_gradient(jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m)))


def log_row_sum(s, m):
    """lse = log sum_j exp(s - m), and 0 (log 1) for a fully masked row (see NOTE)."""
    l = jnp.sum(jnp.exp(s - m), axis=-1, keepdims=True)
    return jnp.log(jnp.where(l > 0, l, jnp.ones_like(l)))


def untiled_forward(q, k, v, causal, mask, key, rate):
    """o, m, lse: (N, H, T, d), (N, H, T, 1), (N, H, T, 1), with the whole (T, S) s at once."""
    s = scores(q, k, allowed(q.shape[2], k.shape[2], causal, mask))
    m = row_shift(s)
    lse = log_row_sum(s, m)
    p = jnp.exp(s - m - lse)
    return dropped(p, block_keep(key, *UNTILED, rate, s.shape), rate) @ v, m, lse  # p_drop @ v


def untiled_backward(q, k, v, o, m, lse, o_bar, causal, mask, key, rate):
    """q_bar, k_bar, v_bar: (N, H, T, d), (N, H, S, d) x 2 (the Backward lines of _attention.py)."""
    p = jnp.exp(scores(q, k, allowed(q.shape[2], k.shape[2], causal, mask)) - m - lse)  # recomputed, never saved
    keep = block_keep(key, *UNTILED, rate, p.shape)                        # regenerated from the key
    v_bar = jnp.einsum("nhij,nhie->nhje", dropped(p, keep, rate), o_bar)  # p_drop.T @ o_bar
    p_bar = dropped(jnp.einsum("nhie,nhje->nhij", o_bar, v), keep, rate)   # dropped(o_bar @ v.T)
    s_bar = p * (p_bar - jnp.sum(p_bar * p, axis=-1, keepdims=True))
    q_bar = jnp.einsum("nhij,nhje->nhie", s_bar, k) / math.sqrt(q.shape[-1])
    k_bar = jnp.einsum("nhij,nhie->nhje", s_bar, q) / math.sqrt(q.shape[-1])
    return q_bar, k_bar, v_bar
