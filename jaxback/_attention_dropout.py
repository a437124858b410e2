"""attention's dropout on P: the keep mask of a block of scores, drawn from the key, and its use.

With ``dropout_rate`` r > 0 and a key, the attention weights are dropped before they weigh V:
P_drop = where(keep, P / (1 - r), 0), O = P_drop @ V (the softmax itself, and so m and lse, are
those of P). Both paths cut the (T, S) scores into blocks; the untiled path is one block, (0, 0).
Block (i, j) draws its mask, of the block's shape (N, H, B, B) (the untiled one: (N, H, T, S)), from
fold_in(fold_in(key, i), j): a pure function of the key and the block's place, so the forward and
the backward, which visit the blocks in different orders, draw the same bits, and nothing but the
key is saved. A different ``block_size`` cuts other blocks, hence draws another mask.
"""

from __future__ import annotations

import jax

from ._keep_mask import keep_mask, mask_and_scale

__all__ = ["block_keep", "dropped", "UNTILED"]

UNTILED = (0, 0)  # the untiled path's one block


def block_keep(key, i, j, rate, shape):
    """Block (i, j)'s keep mask of ``shape``, or None (no dropout: rate 0 or no key)."""
    if key is None or rate == 0:
        return None
    return keep_mask(jax.random.fold_in(jax.random.fold_in(key, i), j), rate, shape)


def dropped(a, keep, rate):
    """``where(keep, a / (1 - rate), 0)`` (P_drop from P, and p_bar from p_drop_bar); ``a`` itself
    without dropout (``keep`` None)."""
    return a if keep is None else mask_and_scale(a, keep, rate)
