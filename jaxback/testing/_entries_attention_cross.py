"""Registry entry for cross-attention with grouped K/V heads: ``kv`` given, ``num_kv_heads`` < ``num_heads``.

The samples attend from x: (N, T, D), T = 4, to kv: (N, S, D), S = 3 (S != T), with half as many K/V
heads as query heads (g = 2; w_k, w_v: (D, D/2)), on the untiled path and the tiled one (blocks of 2
and 3: padded query and key blocks). Under ``causal`` (aligned at the end: NOTE (causal, S != T) in
_attention.py) the first query sees no key, so the fully-masked-row convention runs there too.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax

from .._attention import attention
from .._attention_blocks import block_allowed
from .._attention_tiled import _make_tiled_backward, block_backward
from .._layer import make_layer
from ._entries_attention import _P8, _cast, _close, _equal, _finite, _mutant, _params, _x
from ._attention_jvp_mutants import JVP_MUTANTS
from ._registry import FLAGS, EdgeCase, ErrorCase, LayerInfo
from .strategies import values

grouped_attention = make_layer(attention.auto, attention.fwd, attention.bwd, name="attention (cross, grouped)",
                               init=attention.init, roles=attention.roles, jvp=attention.jvp)

SHAPES = ((2, 4, 8),)  # x's; kv: (N, 3, D). One shape: the self-attention entries vary the shapes (suite time)
_MASK = jnp.asarray(np.random.default_rng(5).random((4, 3)) < 0.6).at[2].set(False)  # query 2 sees no key
_HEAD_MASK = jnp.asarray(np.random.default_rng(6).random((4, 4, 3)) < 0.7)          # per head (H = 4)


def _kv_shape(shape):
    n, t, width = shape
    return n, t - 1, width


def _grouped_args(rng, dtype, shape, kind):
    params = _params(rng, shape[-1], dtype, kv_width=shape[-1] // 2)
    return (params, *(jnp.asarray(values(rng, s, kind), dtype) for s in (shape, _kv_shape(shape))))


def _fixed_args(shape, seed=0):
    """Deterministic float64 arguments, so an edge case's check can rebuild what it expects."""
    return _grouped_args(np.random.default_rng(seed), jnp.float64, shape, "normal")


def _heads_repeated(params, num_kv_heads, group):
    """w_k, w_v with each K/V head's d columns repeated for its g query heads: multi-head params."""
    def repeat(w):
        width, columns = w.shape
        return w.reshape(width, num_kv_heads, columns // num_kv_heads).repeat(group, axis=1).reshape(width, -1)
    return params._replace(w_k=repeat(params.w_k), w_v=repeat(params.w_v))


def _as_multi_head(shape, **hyper):
    """The independent witness: multi-head attention with the K/V columns repeated per query head."""
    params, x, kv = _fixed_args(shape)
    group = hyper["num_heads"] // hyper.pop("num_kv_heads")
    return attention.auto(_heads_repeated(params, hyper["num_heads"] // group, group), x, kv, **hyper)


_GROUPED = {"num_heads": 4, "num_kv_heads": 2, "causal": True}
EDGE_CASES = (
    EdgeCase("grouped K/V heads are repeated multi-head K/V heads", lambda dt: _cast(_fixed_args((2, 4, 8)), dt),
             "with w_k, w_v's columns of K/V head c repeated for query heads 2c, 2c + 1, multi-head attention "
             "gives the same y (K/V head c serves query heads c*g .. c*g + g - 1)",
             lambda y, cots: _close(y, _as_multi_head((2, 4, 8), **_GROUPED)), _GROUPED),
    EdgeCase("causal with S < T: the first T - S queries see no key", lambda dt: _cast(_fixed_args((2, 4, 4)), dt),
             "aligned at the end, query i sees keys j <= i + S - T: query 0 sees none, so y[:, 0] = b_o exactly; "
             "all cotangents finite",
             lambda y, cots: (_equal(y[:, 0], _fixed_args((2, 4, 4))[0].b_o), _finite(*cots[0], *cots[1:])),
             {"num_heads": 2, "num_kv_heads": 1, "causal": True}),
)

_P8_GROUPED = _P8._replace(w_k=jnp.ones((8, 4)), w_v=jnp.ones((8, 4)))
ERROR_CASES = (
    ErrorCase("kv of another width", lambda: (_P8, _x((2, 5, 8)), _x((2, 3, 6))), ValueError,
              r"attention: kv must have shape \(N, S, D\) = \(2, S, 8\), the batch and width of x; got kv "
              r"shape=\(2, 3, 6\)", {"num_heads": 2}),
    ErrorCase("kv of rank 2", lambda: (_P8, _x((2, 5, 8)), _x((3, 8))), ValueError,
              r"attention: kv must have exactly 3 dimension\(s\); got shape=\(3, 8\)", {"num_heads": 2}),
    ErrorCase("integer kv", lambda: (_P8, _x((2, 5, 8)), _x((2, 3, 8), jnp.int32)), TypeError,
              r"attention: kv must be a floating-point array", {"num_heads": 2}),
    ErrorCase("num_kv_heads does not divide num_heads", lambda: (_P8, _x((2, 5, 8))), ValueError,
              r"attention: num_kv_heads=3 must divide num_heads=4 \(each K/V head serves num_heads / num_kv_heads "
              r"query heads\)\. Choose num_kv_heads among 1, 2, 4", {"num_heads": 4, "num_kv_heads": 3}),
    ErrorCase("num_kv_heads = 0", lambda: (_P8, _x((2, 5, 8))), ValueError,
              r"attention: num_kv_heads must be a positive Python int .*; got num_kv_heads=0",
              {"num_heads": 4, "num_kv_heads": 0}),
    ErrorCase("multi-head w_k with num_kv_heads", lambda: (_P8, _x((2, 5, 8))), ValueError,
              r"attention: params.w_k must have shape \(8, 4\) to match the width D=8 .* and num_kv_heads=2 K/V "
              r"heads of size d=2 \(num_heads=4\); got w_k shape=\(8, 8\).*Its 8 columns make 4 K/V heads of size "
              r"2: pass num_kv_heads=4", {"num_heads": 4, "num_kv_heads": 2}),
    ErrorCase("grouped w_k without num_kv_heads", lambda: (_P8_GROUPED, _x((2, 5, 8))), ValueError,
              r"attention: params.w_k must have shape \(8, 8\).*got w_k shape=\(8, 4\).*pass num_kv_heads=2",
              {"num_heads": 4}),
    ErrorCase("mask for self-attention with a shorter kv", lambda: (_P8, _x((2, 5, 8)), _x((2, 3, 8))), ValueError,
              r"attention: mask must broadcast to \(N, num_heads, T, S\) = \(2, 2, 5, 3\).*got mask shape=\(5, 5\)",
              {"num_heads": 2, "mask": jnp.ones((5, 5), bool)}),
)


# mutants ------------------------------------------------------------------------------------------------
def _first_of_each_group(a_bar, group):
    """No sum over the shared heads: each K/V head takes the cotangent of its first query head only."""
    return a_bar[:, ::group]


def _strided_groups(a_bar, group):
    """Summed over heads c, c + Hkv, ... (the interleaved order), not the group c*g .. c*g + g - 1."""
    n, h, s, d = a_bar.shape
    return a_bar.reshape(n, group, h // group, s, d).sum(1)


def _causal_from_the_start(n):
    """Causal rebuilt as j <= i (PyTorch's is_causal), not aligned at the end as the forward has it."""
    t, s = n["q"].shape[2], n["k"].shape[2]
    tri = lax.broadcasted_iota(jnp.int32, (t, s), 1) <= lax.broadcasted_iota(jnp.int32, (t, s), 0)
    if not n["s"].causal:
        return n["mask"]
    return tri if n["mask"] is None else tri & n["mask"]


def _lengths_of_queries(i, j, block, t, s, causal, mask):
    """The key blocks' padding and the causal offset judged by T, the queries' length, not S."""
    return block_allowed(i, j, block, t, t, causal, mask)


MUTANTS = (
    _mutant("K/V cotangents of each group's first query head only (no sum over the shared heads)",
            group_sum=_first_of_each_group),
    _mutant("K/V cotangents summed over strided heads, not each K/V head's group", group_sum=_strided_groups),
    _mutant("causal recomputed from the start (j <= i), not aligned at the end", allowed=_causal_from_the_start),
    _mutant("tiled: key padding and causal offset from T, not S",
            tiled=_make_tiled_backward(block_backward, _lengths_of_queries)),
)

GROUPED = LayerInfo(
    grouped_attention, _grouped_args, SHAPES,
    hypers=({"num_heads": 2, "num_kv_heads": 1}, {"num_heads": 4, "num_kv_heads": 2, "causal": True},
            {"num_heads": 2, "num_kv_heads": 1, "mask": _MASK},
            {"num_heads": 2, "num_kv_heads": 1, "causal": True, "block_size": 2},
            {"num_heads": 4, "num_kv_heads": 2, "mask": _HEAD_MASK, "block_size": 3}),
    value_kinds=("wide", "ties"),
    supports=frozenset(FLAGS) - {"sharding"},  # the self-attention entry's sharded check covers the batch axis
    edge_cases=EDGE_CASES, error_cases=ERROR_CASES, mutants=MUTANTS + JVP_MUTANTS,
    bench_shape=(2, 256, 64), bench_hyper={"num_heads": 4, "num_kv_heads": 2, "causal": True},
    notes="value kind 'extreme' left out, as for attention. No sharded check: the self-attention entry's "
          "covers the batch axis (the same programs per example).",
)

ENTRIES = (GROUPED,)
