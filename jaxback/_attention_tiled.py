"""Tiled attention: the maths of _attention.py, one (B, B) block of scores at a time.

Every array below is per head (a leading (N, H) is left implicit), in the compute dtype, with K and V
already shared over their query heads (_attention_heads.py). Cut the T queries into blocks of B
rows, Q_i = Q[i*B : (i+1)*B]: (B, d), and the S keys alike, K_j, V_j: (B, d) (each last block padded
with zero rows; padded keys are never allowed). Block (i, j) of the scores is S_ij = Q_i @ K_j.T /
sqrt(d): (B, B). Only one such block exists at a time, so memory grows as (T + S)*d, not T*S. A block
whose pairs are all masked (under ``causal``: every key after its queries) is skipped. With dropout,
block (i, j) draws its own keep mask, keep_ij, from the key (_attention_dropout.py).

Forward, "online softmax" (Milakov & Gimelshein 2018; flash attention). For query block i keep, per
row, a running maximum m, a running sum l and a running output acc, and visit the key blocks j:
            s     = S_ij, -inf where not allowed              (B, B)
            m_new = max(m, rowmax(s))                         (B, 1); m starts at -inf
            shift = m_new, or 0 where m_new = -inf            (no key seen yet: nothing to shift)
            alpha = exp(m - shift)                            (B, 1), <= 1; 0 while m = -inf
            p     = exp(s - shift)                            (B, B)
            l     = alpha * l + rowsum(p)                     (B, 1), the softmax's sum: of p, not p_drop
            acc   = alpha * acc + p_drop @ V_j                (B, B)(B, d) -> (B, d), p_drop = dropped(p, keep_ij)
  Why this is the untiled softmax: by induction, after any block, l = sum over the keys seen so far of
  exp(s - shift) and acc = sum of exp(s - shift) * V[key], for the current shift: a new block adds its
  own terms, and alpha turns the old terms' exp(s - m) into exp(s - shift) (exp(a - b) = exp(a - c) *
  exp(c - b)) (dropout scales each term by its own keep / (1 - r), which alpha leaves alone). After the
  last block shift is the row max m of _attention.py, l its sum, so
            O_i = acc / l,   lse_i = log l,   m_i = shift       (0, 0, 0 for a fully masked row: l = 0)
  and the residuals are those of the untiled rule: O, m, lse, with p = exp(s - m - lse) for any block.

Backward, block form of _attention.py's equations (the flash-attention-2 order, Dao 2023). The only
whole-row quantity is the row sum in s_bar, D = rowsum(p_bar * p): (T, 1). A first pass over the
blocks sums it, one block at a time, D_i = sum_j rowsum(p_bar_ij * p_ij). Then for each key block j,
and in it each query block i (visible blocks only), recompute that block's p and add its shares:
            p       = exp(S_ij - m_i - lse_i)                 (B, B)
            p_drop  = dropped(p, keep_ij)                     keep_ij regenerated from the key
            p_bar   = dropped(o_bar_i @ V_j.T, keep_ij)        (B, d)(d, B) -> (B, B)
            s_bar   = p * (p_bar - D_i)                        (B, B)
            v_bar_j += p_drop.T @ o_bar_i                      (B, B)(B, d) -> (B, d)
            q_bar_i += s_bar @ K_j / sqrt(d)
            k_bar_j += s_bar.T @ Q_i / sqrt(d)
  Each untiled product, e.g. v_bar = P.T @ o_bar, is a sum over query rows; summing it block by block
  over i gives the same sum, so the blocks add up to exactly the untiled cotangents.
  The code holds each block transposed (key-major: rows j, columns i), the same numbers in the other
  order: p.T = exp(K_j @ Q_i.T / sqrt(d) - m_i.T - lse_i.T), p_bar.T = dropped(V_j @ o_bar_i.T, keep_ij.T),
  s_bar.T = p.T * (p_bar.T - D_i.T); then v_bar_j += (p_drop.T) @ o_bar_i, k_bar_j += (s_bar.T) @ Q_i / sqrt(d),
  and q_bar_i.T += K_j.T @ (s_bar.T) / sqrt(d) (the transpose of q_bar_i's line: (A B).T = B.T A.T).

NOTE (layout): XLA CPU hands a block product to its fast matmul (YNNPACK) only when the left operand
contracts its last axis; s_bar.T @ Q_i in (i, j) order contracts s_bar's first axis and ran as a
plain dot, about 2x slower (`python benchmarks/kernels.py`: 1.9-2.3x at an (8, 4, 128, 128) block).
In key-major order two of the three shares are of the fast form; the third is made so by keeping K_j.T, (d, B),
as its own loop input (transposed once, outside the loops, where XLA cannot fold it back into the
product) and summing q_bar transposed. Every product of both loops is then a fast one.
NOTE (rowsum): flash attention takes D = rowsum(o_bar * O) (equal: sum_j (o_bar[i] . V[j]) P[i, j] =
o_bar[i] . O[i]), which needs no first pass. We pay the pass (2 of the backward's 7 block products)
to keep the untiled rule's exactness at saturation: for a one-hot row of P, D is then the very
p_bar[i, k] that s_bar subtracts it from, so s_bar = 0 exactly, while o_bar . O rounds differently
from the product o_bar @ V.T and left w_q_bar, w_k_bar at 4e4 in float32 (true value 0; autodiff
through the loop: 2e5) at the registry's saturated edge case. Measured there now: 0 exactly in
float32; 3.3e-4 in float64 (2e-8 of max|w_v_bar|: the off-maximum p are tiny, not 0, and their
block-by-block sum rounds differently from one whole-row sum).
NOTE (jit): both loops are jitted functions (a no-op inside an outer jit): called op by op, as the
registry's edge cases and mutants call them, each scan would otherwise compile anew at every call.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

from ._attention_blocks import block_allowed, block_shape, blocks, padded_mask, transposed, unblocks, visit
from ._attention_dropout import block_keep, dropped
from ._attention_untiled import scores

__all__ = ["tiled_forward", "tiled_backward", "block_backward"]


def _online_softmax_step(carry, q_i, k_j, v_j, allowed, keep, rate):
    """One key block of the forward: (m, l, acc) -> (m_new, l, acc), see the module docstring."""
    m, l, acc = carry
    s = scores(q_i, k_j, allowed)
    m_new = lax.stop_gradient(jnp.maximum(m, jnp.max(s, axis=-1, keepdims=True)))  # a constant shift
    shift = jnp.where(jnp.isfinite(m_new), m_new, jnp.zeros_like(m_new))
    alpha, p = jnp.exp(m - shift), jnp.exp(s - shift)
    return m_new, alpha * l + jnp.sum(p, axis=-1, keepdims=True), alpha * acc + dropped(p, keep, rate) @ v_j


@functools.partial(jax.jit, static_argnames=("causal", "rate", "block"))  # NOTE (jit)
def tiled_forward(q, k, v, causal, mask, key, rate, block):
    """o, m, lse from q: (N, H, T, d), k, v: (N, H, S, d) -> (N, H, T, d), (N, H, T, 1), (N, H, T, 1)."""
    t, s = q.shape[2], k.shape[2]
    q_blocks, k_blocks, v_blocks = (blocks(a, block) for a in (q, k, v))
    mask = padded_mask(mask, t, s, block)

    def query_block(_, xs):
        i, q_i = xs

        def key_block(carry, ys):
            j, k_j, v_j = ys
            allowed = block_allowed(i, j, block, t, s, causal, mask)

            def update(c):
                keep = block_keep(key, i, j, rate, block_shape(q_i, block))  # drawn for visited blocks only
                return _online_softmax_step(c, q_i, k_j, v_j, allowed, keep, rate)

            return visit(allowed, update, carry), None

        rows = q_i.shape[:-1] + (1,)
        start = (jnp.full(rows, -jnp.inf, q.dtype), jnp.zeros(rows, q.dtype), jnp.zeros_like(q_i))
        (m, l, acc), _ = lax.scan(key_block, start, (jnp.arange(k_blocks.shape[0]), k_blocks, v_blocks))
        l = jnp.where(l > 0, l, jnp.ones_like(l))  # fully masked row: acc = 0, so o = 0 and lse = 0
        return None, (acc / l, jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m)), jnp.log(l))

    _, outs = lax.scan(query_block, None, (jnp.arange(q_blocks.shape[0]), q_blocks))
    return tuple(unblocks(a, t) for a in outs)


def block_backward(q_i, k_j, k_t_j, v_j, o_bar_i, m_i, lse_i, d_i, allowed, keep_t, rate):
    """Block (i, j)'s shares of (q_bar_i.T, k_bar_j, v_bar_j), in the key-major form of the module
    docstring (``k_t_j`` is k_j.T: (d, B), stored so, see NOTE (layout); ``keep_t`` is keep_ij.T)."""
    sqrt_d = math.sqrt(q_i.shape[-1])
    p_t = _block_p_t(q_i, k_j, m_i, lse_i, allowed)                                   # recomputed P_ij.T: (B, B)
    p_bar_t = dropped(jnp.einsum("nhje,nhie->nhji", v_j, o_bar_i), keep_t, rate)      # dropped(v_j @ o_bar_i.T)
    s_bar_t = p_t * (p_bar_t - transposed(d_i))
    return (jnp.einsum("nhej,nhji->nhei", k_t_j, s_bar_t) / sqrt_d,                   # k_j.T @ s_bar.T = q_bar_i share.T
            jnp.einsum("nhji,nhie->nhje", s_bar_t, q_i) / sqrt_d,                     # s_bar.T @ q_i
            jnp.einsum("nhji,nhie->nhje", dropped(p_t, keep_t, rate), o_bar_i))       # p_drop.T @ o_bar_i


def _block_p_t(q_i, k_j, m_i, lse_i, allowed):
    """P_ij.T, recomputed from the saved m and lse: (B, B), rows = keys j, columns = queries i."""
    s_t = scores(k_j, q_i, transposed(allowed))  # k_j @ q_i.T / sqrt(d) = S_ij.T (both of width d)
    return jnp.exp(s_t - transposed(m_i) - transposed(lse_i))


def row_sums(rows, k_blocks, v_blocks, allowed_of, keep_t_of, rate):
    """D = rowsum(p_bar * p), summed block by block over each query row: (T/B, N, H, B, 1).
    ``rows``: the query blocks (q, m, lse, o_bar); ``allowed_of(i, j)``, ``keep_t_of(i, j, q_i)``:
    block (i, j)'s allowed pairs and transposed keep mask."""

    def query_block(_, xs):
        i, q_i, m_i, lse_i, o_bar_i = xs

        def key_block(d_i, ys):
            j, k_j, v_j = ys
            allowed = allowed_of(i, j)

            def add(d):  # p_bar_t: the very product block_backward takes
                p_bar_t = dropped(jnp.einsum("nhje,nhie->nhji", v_j, o_bar_i), keep_t_of(i, j, q_i), rate)
                return d + transposed(jnp.sum(p_bar_t * _block_p_t(q_i, k_j, m_i, lse_i, allowed), axis=-2, keepdims=True))

            return visit(allowed, add, d_i), None

        return None, lax.scan(key_block, jnp.zeros_like(m_i), (jnp.arange(k_blocks.shape[0]), k_blocks, v_blocks))[0]

    return lax.scan(query_block, None, (jnp.arange(rows[0].shape[0]), *rows))[1]


def _make_tiled_backward(kernel, allowed_fn, keep_fn=block_keep):
    """The tiled backward, from three of its derivation's steps: ``kernel``, block (i, j)'s shares of
    the cotangents (``block_backward``), ``allowed_fn``, which pairs of a block may attend
    (``block_allowed``), and ``keep_fn``, the keep mask a block regenerates (``block_keep``).
    ``tiled_backward`` below is the true instance; the registry's mutants
    (``jaxback/testing/_entries_attention_tiled.py``, ``_entries_attention_dropout.py``) build their
    own, one step swapped for a classic tiling mistake, so the rule's public signature carries no hook for them."""

    @functools.partial(jax.jit, static_argnames=("causal", "rate", "block"))  # NOTE (jit)
    def tiled_backward(q, k, v, o, m, lse, o_bar, causal, mask, key, rate, block):
        """q_bar: (N, H, T, d), k_bar, v_bar: (N, H, S, d) (``o`` is unused: see NOTE (rowsum))."""
        t, s = q.shape[2], k.shape[2]
        mask, (q_blocks, m_blocks, lse_blocks, o_bar_blocks, k_blocks, v_blocks) = (
            padded_mask(mask, t, s, block), [blocks(a, block) for a in (q, m, lse, o_bar, k, v)])
        allowed_of = lambda i, j: allowed_fn(i, j, block, t, s, causal, mask)
        keep_t_of = lambda i, j, q_i: transposed(keep_fn(key, i, j, rate, block_shape(q_i, block)))
        d_blocks = row_sums((q_blocks, m_blocks, lse_blocks, o_bar_blocks), k_blocks, v_blocks, allowed_of, keep_t_of, rate)
        rows = (q_blocks, o_bar_blocks, m_blocks, lse_blocks, d_blocks)

        def key_block(q_bar_t, xs):
            j, k_j, k_t_j, v_j = xs

            def query_block(kv_bar, ys):
                i, q_i, o_bar_i, m_i, lse_i, d_i = ys
                allowed = allowed_of(i, j)

                def add(carry):
                    k_bar_j, v_bar_j, _ = carry
                    q_share_t, k_share, v_share = kernel(q_i, k_j, k_t_j, v_j, o_bar_i, m_i, lse_i, d_i, allowed,
                                                         keep_t_of(i, j, q_i), rate)
                    return k_bar_j + k_share, v_bar_j + v_share, q_share_t

                k_bar_j, v_bar_j, q_bar_t_i = visit(allowed, add, (*kv_bar, jnp.zeros_like(transposed(q_i))))
                return (k_bar_j, v_bar_j), q_bar_t_i

            start = (jnp.zeros_like(k_j), jnp.zeros_like(v_j))
            kv_bar, q_bar_t_shares = lax.scan(query_block, start, (jnp.arange(q_blocks.shape[0]), *rows))
            return q_bar_t + q_bar_t_shares, kv_bar

        xs = (jnp.arange(k_blocks.shape[0]), k_blocks, transposed(k_blocks), v_blocks)  # k_j.T made once: NOTE (layout)
        q_bar_t, (k_bar, v_bar) = lax.scan(key_block, jnp.zeros_like(transposed(q_blocks)), xs)
        return unblocks(transposed(q_bar_t), t), unblocks(k_bar, s), unblocks(v_bar, s)

    return tiled_backward


tiled_backward = _make_tiled_backward(block_backward, block_allowed)
