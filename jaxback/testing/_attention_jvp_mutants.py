"""Wrong forward-mode rules for attention, shared by its registry entries (self, tiled, cross, dropout).

Each is ``_attention._tangent`` (the Tangent lines around the heads) with a wrong heads step, built
through its ``heads_tangent`` hook, so the public ``attention_jvp`` takes none.
"""

from __future__ import annotations

import jax.numpy as jnp

from .._attention import Settings, _heads_tangent, _tangent
from .._attention_dropout import UNTILED, block_keep, dropped
from .._attention_heads import share
from .._attention_untiled import allowed, log_row_sum, row_shift, scores
from ._registry import Mutant

__all__ = ["JVP_MUTANTS"]


def _jvp_mutant(name, heads_tangent):
    def jvp(primals, tangents, *, num_heads, num_kv_heads=None, causal=False, mask=None, block_size=None,
            dropout_rate=0.0):
        settings = Settings(num_heads, num_kv_heads, causal, block_size, dropout_rate)
        return _tangent(primals, tangents, mask, settings, heads_tangent)
    return Mutant(name, jvp=jvp)


def _uncentred(q, k, v, q_dot, k_dot, v_dot, mask, key, settings):
    """p_dot = p * s_dot: softmax's tangent without subtracting rowsum(p * s_dot)."""
    k, v, k_dot, v_dot = (share(a, settings.group) for a in (k, v, k_dot, v_dot))
    s = scores(q, k, allowed(q.shape[2], k.shape[2], settings.causal, mask))
    m = row_shift(s)
    p = jnp.exp(s - m - log_row_sum(s, m))
    p_dot = p * (scores(q_dot, k, None) + scores(q, k_dot, None))
    keep = block_keep(key, *UNTILED, settings.dropout_rate, s.shape)
    p_drop = dropped(p, keep, settings.dropout_rate)
    return p_drop @ v, dropped(p_dot, keep, settings.dropout_rate) @ v + p_drop @ v_dot


def _without_v_dot(q, k, v, q_dot, k_dot, v_dot, mask, key, settings):
    """o_dot without p_drop @ v_dot: V's tangent forgotten."""
    return _heads_tangent(q, k, v, q_dot, k_dot, jnp.zeros_like(v_dot), mask, key, settings)


JVP_MUTANTS = (_jvp_mutant("jvp: p_dot without softmax's centring", _uncentred),
               _jvp_mutant("jvp: o_dot forgets v_dot", _without_v_dot))
