"""attention's blocks: (N, H, L, e) arrays cut into blocks of B rows, and which pairs of a (B, B)
block of scores may attend (padding, causal, the mask), for the loops of _attention_tiled.py."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from ._attention_untiled import causal_pairs

__all__ = ["blocks", "unblocks", "padded_mask", "block_allowed", "visit", "block_shape", "transposed"]


def blocks(a, block):
    """(N, H, L, e) -> (L/B, N, H, B, e), rows zero-padded to a multiple of B."""
    n, h, length, e = a.shape
    count = -(-length // block)
    a = jnp.pad(a, ((0, 0), (0, 0), (0, count * block - length), (0, 0)))
    return a.reshape(n, h, count, block, e).transpose(2, 0, 1, 3, 4)


def unblocks(a, length):
    """(L/B, N, H, B, e) -> (N, H, L, e), padding dropped."""
    count, n, h, block, e = a.shape
    return a.transpose(1, 2, 0, 3, 4).reshape(n, h, count * block, e)[:, :, :length]


def padded_mask(mask, t, s, block):
    """The mask as (mN, mH, T', S'), T' and S' padded to multiples of B with False (never allowed)."""
    if mask is None:
        return None
    mask = jnp.reshape(mask, (1,) * (4 - jnp.ndim(mask)) + jnp.shape(mask))
    mask = jnp.broadcast_to(mask, mask.shape[:2] + (t, s))
    pads = [-(-n // block) * block - n for n in (t, s)]
    return jnp.pad(mask, ((0, 0), (0, 0), (0, pads[0]), (0, pads[1]))) if any(pads) else mask


def block_allowed(i, j, block, t, s, causal, mask):
    """Which pairs of block (i, j) may attend: (B, B) or (mN, mH, B, B) boolean; None: all of them."""
    rows = i * block + lax.broadcasted_iota(jnp.int32, (block, block), 0)
    cols = j * block + lax.broadcasted_iota(jnp.int32, (block, block), 1)
    terms = ([cols < s] if s % block else []) + ([causal_pairs(rows, cols, t, s)] if causal else [])
    if mask is not None:
        terms.append(lax.dynamic_slice(mask, (0, 0, i * block, j * block), mask.shape[:2] + (block, block)))
    allowed = None
    for term in terms:
        allowed = term if allowed is None else allowed & term
    return allowed


def visit(allowed, update, carry):
    """update(carry), or carry unchanged when no pair of the block may attend (skipped at run time)."""
    return update(carry) if allowed is None else lax.cond(jnp.any(allowed), update, lambda c: c, carry)


def block_shape(q_i, block):
    """A block of scores: (N, H, B, B), for query rows q_i: (N, H, B, d)."""
    return q_i.shape[:-1] + (block,)


def transposed(a):
    """The last two axes swapped (a (B, B) block's transpose; (B, 1) -> (1, B)); None stays None."""
    return None if a is None else jnp.swapaxes(a, -1, -2)
