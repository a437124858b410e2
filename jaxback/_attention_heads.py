"""attention's head layout: widths cut into heads, and K/V heads shared by groups of query heads.

``split`` cuts a width of H*d into H heads of size d, (N, L, H*d) -> (N, H, L, d); ``merge`` undoes it.
Grouped-query attention (GQA, Ainslie et al. 2023) has Hkv = ``num_kv_heads`` K/V heads for H query
heads, g = H / Hkv query heads per K/V head: K/V head c serves query heads c*g .. c*g + g - 1
(PyTorch's ``enable_gqa`` order, ``repeat_interleave``). ``share`` repeats each K/V head g times,
(N, Hkv, S, d) -> (N, H, S, d), so the per-head maths sees H heads everywhere; it is a fan-out (a copy),
so its transpose ``group_sum`` adds the g query heads' cotangents of one K/V head back up:
k_bar[c] = sum over h in group c of k_share_bar[h]. With g = 1 both are the identity.
"""

from __future__ import annotations

__all__ = ["split", "merge", "share", "group_sum"]


def split(a, num_heads):
    """(N, L, H*d) -> (N, H, L, d)."""
    n, length, width = a.shape
    return a.reshape(n, length, num_heads, width // num_heads).transpose(0, 2, 1, 3)


def merge(a):
    """(N, H, L, d) -> (N, L, H*d)."""
    n, h, length, d = a.shape
    return a.transpose(0, 2, 1, 3).reshape(n, length, h * d)


def share(a, group):
    """(N, Hkv, S, d) -> (N, Hkv*g, S, d): K/V head c repeated for its g query heads."""
    return a if group == 1 else a.repeat(group, axis=1)


def group_sum(a_bar, group):
    """(N, Hkv*g, S, d) -> (N, Hkv, S, d): ``share``'s transpose, the g copies' cotangents summed."""
    if group == 1:
        return a_bar
    n, h, s, d = a_bar.shape
    return a_bar.reshape(n, h // group, group, s, d).sum(2)
