"""attention's forward mode per head: the tangent of O from the tangents of Q, K and V.

Per head (a leading (N, H) left implicit), q: (T, d) and k, v: (S, d) already shared over the query
heads, with tangents q_dot, k_dot, v_dot of the same shapes (perturb the inputs along them; every
product below changes by the product rule, one term per factor):

  Tangent   s_dot = (q_dot @ k.T + q @ k_dot.T) / sqrt(d)       (T, S)
            p_dot = p * (s_dot - rowsum(p * s_dot))              (T, S), softmax's tangent (_softmax.py)
            o_dot = dropped(p_dot, keep) @ v + p_drop @ v_dot    (T, S)(S, d) twice -> (T, d)

The keep mask is the forward's (drawn from the key for the same blocks), a constant: dropout's
tangent masks p_dot as it masks p. A masked score has p = 0, so its s_dot (finite) adds nothing;
a fully masked row has p = 0 and o_dot = 0, as o = 0.

Tiled (the online softmax of _attention_tiled.py, one (B, B) block at a time): besides the forward's
m, l and acc, each query block carries two more running sums in the same shifted units,
            c       = alpha * c + rowsum(p * s_dot)                               (B, 1)
            acc_dot = alpha * acc_dot + dropped(p * s_dot, keep) @ V_j + p_drop @ V_dot_j    (B, d)
  so that after the last block, with P = p / l: rowsum(P * s_dot) = c / l and
            o_dot = acc_dot / l - (c / l) * o
  (o_dot = sum_j P_drop_dot V_j + P_drop V_dot_j with P_dot = P (s_dot - c / l): expand and collect).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from ._attention_blocks import block_allowed, block_shape, blocks, padded_mask, unblocks, visit
from ._attention_dropout import UNTILED, block_keep, dropped
from ._attention_untiled import allowed, log_row_sum, row_shift, scores

__all__ = ["untiled_tangent", "tiled_tangent"]


def _scores_dot(q, k, q_dot, k_dot):
    """s_dot = (q_dot @ k.T + q @ k_dot.T) / sqrt(d), unmasked (p = 0 there)."""
    return scores(q_dot, k, None) + scores(q, k_dot, None)


def untiled_tangent(q, k, v, q_dot, k_dot, v_dot, causal, mask, key, rate):
    """o, o_dot: (N, H, T, d) with the whole (T, S) block of scores at once."""
    s = scores(q, k, allowed(q.shape[2], k.shape[2], causal, mask))
    m = row_shift(s)
    p = jnp.exp(s - m - log_row_sum(s, m))
    s_dot = _scores_dot(q, k, q_dot, k_dot)
    p_dot = p * (s_dot - jnp.sum(p * s_dot, axis=-1, keepdims=True))
    keep = block_keep(key, *UNTILED, rate, s.shape)
    p_drop = dropped(p, keep, rate)
    return p_drop @ v, dropped(p_dot, keep, rate) @ v + p_drop @ v_dot


def _online_tangent_step(carry, q_i, k_j, v_j, q_dot_i, k_dot_j, v_dot_j, allowed_pairs, keep, rate):
    """One key block: (m, l, acc, c, acc_dot) -> the same after the block (module docstring)."""
    m, l, acc, c, acc_dot = carry
    s = scores(q_i, k_j, allowed_pairs)
    m_new = jnp.maximum(m, jnp.max(s, axis=-1, keepdims=True))
    shift = jnp.where(jnp.isfinite(m_new), m_new, jnp.zeros_like(m_new))
    alpha, p = jnp.exp(m - shift), jnp.exp(s - shift)
    p_s_dot = p * _scores_dot(q_i, k_j, q_dot_i, k_dot_j)
    p_drop = dropped(p, keep, rate)
    return (m_new, alpha * l + jnp.sum(p, axis=-1, keepdims=True), alpha * acc + p_drop @ v_j,
            alpha * c + jnp.sum(p_s_dot, axis=-1, keepdims=True),
            alpha * acc_dot + dropped(p_s_dot, keep, rate) @ v_j + p_drop @ v_dot_j)


@functools.partial(jax.jit, static_argnames=("causal", "rate", "block"))  # as tiled_forward: NOTE (jit) there
def tiled_tangent(q, k, v, q_dot, k_dot, v_dot, causal, mask, key, rate, block):
    """o, o_dot: (N, H, T, d), one (B, B) block of scores at a time."""
    t, s = q.shape[2], k.shape[2]
    q_blocks, k_blocks, v_blocks, q_dot_blocks, k_dot_blocks, v_dot_blocks = (
        blocks(a, block) for a in (q, k, v, q_dot, k_dot, v_dot))
    mask = padded_mask(mask, t, s, block)

    def query_block(_, xs):
        i, q_i, q_dot_i = xs

        def key_block(carry, ys):
            j, k_j, v_j, k_dot_j, v_dot_j = ys
            allowed_pairs = block_allowed(i, j, block, t, s, causal, mask)

            def update(c):
                keep = block_keep(key, i, j, rate, block_shape(q_i, block))  # the forward's blocks, the same bits
                return _online_tangent_step(c, q_i, k_j, v_j, q_dot_i, k_dot_j, v_dot_j, allowed_pairs, keep, rate)

            return visit(allowed_pairs, update, carry), None

        rows = q_i.shape[:-1] + (1,)
        zero = jnp.zeros(rows, q.dtype)
        start = (jnp.full(rows, -jnp.inf, q.dtype), zero, jnp.zeros_like(q_i), zero, jnp.zeros_like(q_i))
        (_, l, acc, c, acc_dot), _ = lax.scan(
            key_block, start, (jnp.arange(k_blocks.shape[0]), k_blocks, v_blocks, k_dot_blocks, v_dot_blocks))
        l = jnp.where(l > 0, l, jnp.ones_like(l))  # fully masked row: all sums 0, so o = o_dot = 0
        o = acc / l
        return None, (o, acc_dot / l - (c / l) * o)

    _, outs = lax.scan(query_block, None, (jnp.arange(q_blocks.shape[0]), q_blocks, q_dot_blocks))
    return tuple(unblocks(a, t) for a in outs)
