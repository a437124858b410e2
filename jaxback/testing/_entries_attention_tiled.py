"""Registry entry for the tiled path of attention (``block_size`` smaller than T).

The same layer functions as the untiled entry, registered under their own name, so every generated
check (float64 vs autodiff, finite differences, dtypes, jit, vmap, grad-of-grad, ...) runs on the
block loops: ``auto`` differentiates the very loop (online softmax) that the hand rule replaces. The
samples' T = 4 with blocks of 2 (2 x 2 blocks, one skipped under ``causal``) and of 3 (a padded last
block), so padding, block skipping and the online rescaling all run under every check.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from .._attention import attention
from .._attention_blocks import block_allowed, transposed
from .._attention_tiled import _make_tiled_backward
from .._attention_untiled import scores
from .._layer import make_layer
from ._entries_attention import (_EMPTY_ROW, _HEAD_MASK, _MASK, _P8, ATTENTION, ERROR_CASES, SHAPES, _cast, _close,
                                 _equal, _finite, _fixed_args, _mutant, _sample_args, _value_path, _x)
from ._attention_jvp_mutants import JVP_MUTANTS
from ._registry import FLAGS, EdgeCase, ErrorCase, LayerInfo

tiled_attention = make_layer(attention.auto, attention.fwd, attention.bwd, name="attention (tiled)",
                             init=attention.init, roles=attention.roles, jvp=attention.jvp)


def _untiled(shape, **hyper):
    """What the untiled path gives on the edge case's float64 arguments: the independent witness."""
    return attention.auto(*_fixed_args(shape), **hyper)


def _below(a, bound):
    assert float(abs(a).max()) <= float(bound), (float(abs(a).max()), float(bound))


_HIDDEN_BLOCKS = jnp.ones((4, 4), bool).at[:2, 2:].set(False).at[2:, :2].set(False)  # blocks (0,1), (1,0)
EDGE_CASES = (
    EdgeCase("fully masked query row, padded last block", lambda dt: _cast(_fixed_args((2, 3, 4)), dt),
             "T = 3 in blocks of 2: query 1 sees no key, so y[:, 1] = b_o exactly; all cotangents finite",
             lambda y, cots: (_equal(y[:, 1], _fixed_args((2, 3, 4))[0].b_o.astype(y.dtype)), _finite(*cots[0], cots[1])),
             {"num_heads": 2, "mask": _EMPTY_ROW, "block_size": 2}),
    EdgeCase("causal in blocks of 1: every block above the diagonal skipped", lambda dt: _cast(_fixed_args((2, 3, 4)), dt),
             "y equals the untiled path's; the first token sees only itself: y[:, 0] = x[:, 0] @ w_v @ w_o + b_o",
             lambda y, cots: (_close(y, _untiled((2, 3, 4), num_heads=2, causal=True)),
                              _close(y[:, 0], _value_path(*_fixed_args((2, 3, 4)))[:, 0])),
             {"num_heads": 2, "causal": True, "block_size": 1}),
    EdgeCase("a mask that hides whole blocks (skipped at run time)", lambda dt: _cast(_fixed_args((2, 4, 4)), dt),
             "blocks (0, 1) and (1, 0) are all False: y equals the untiled path's",
             lambda y, cots: _close(y, _untiled((2, 4, 4), num_heads=2, mask=_HIDDEN_BLOCKS)),
             {"num_heads": 2, "mask": _HIDDEN_BLOCKS, "block_size": 2}),
    EdgeCase("saturated rows: scores ~1e7", lambda dt: _cast(_fixed_args((2, 4, 4), scale=1e4), dt),
             "P rows one-hot, the maximum in either block: finite y and cotangents, |w_q_bar|, |w_k_bar| <= "
             "1e-7 max|w_v_bar| (true value 0; float32 gives exact zeros, test_attention.py); autodiff through "
             "the loop is noisier, so no comparison with it here",
             lambda y, cots: (_finite(y, *cots[0], cots[1]), _below(cots[0].w_q, 1e-7 * abs(cots[0].w_v).max()),
                              _below(cots[0].w_k, 1e-7 * abs(cots[0].w_v).max())),
             {"num_heads": 2, "block_size": 2}, matches_autodiff=False),
)

ERROR_CASES = ERROR_CASES + (
    ErrorCase("block_size = 0", lambda: (_P8, _x((2, 5, 8))), ValueError,
              r"attention: block_size must be None \(automatic\) or a positive Python int \(rows per block\); "
              r"got block_size=0", {"num_heads": 2, "block_size": 0}),
)


# mutants: the true block kernel, step by step, with one step swapped for a classic tiling mistake ---------
# The steps are block_backward's, in its key-major form: b["p"] is P_ij.T and the q share comes back
# transposed, (d, B).
def _scores_t(b):
    """S_ij.T = k_j @ q_i.T / sqrt(d), -inf where not allowed: the kernel's own product."""
    return scores(b["k"], b["q"], transposed(b["allowed"]))


def _right_steps():
    sqrt_d = lambda b: math.sqrt(b["q"].shape[-1])
    return dict(
        p=lambda b: jnp.exp(_scores_t(b) - transposed(b["m"]) - transposed(b["lse"])),
        s_bar=lambda b: b["p"] * (b["p_bar"] - transposed(b["d"])),
        q_bar=lambda b: jnp.einsum("nhej,nhji->nhei", b["k_t"], b["s_bar"]) / sqrt_d(b),
        k_bar=lambda b: jnp.einsum("nhji,nhie->nhje", b["s_bar"], b["q"]) / sqrt_d(b),
        v_bar=lambda b: jnp.einsum("nhji,nhie->nhje", b["p"], b["o_bar"]),
    )


def _tiled_mutant(name, allowed_fn=block_allowed, **wrong):
    steps = {**_right_steps(), **wrong}

    def kernel(q_i, k_j, k_t_j, v_j, o_bar_i, m_i, lse_i, d_i, allowed, keep_t, rate):  # keep_t: None (no dropout here)
        b = dict(q=q_i, k=k_j, k_t=k_t_j, v=v_j, o_bar=o_bar_i, m=m_i, lse=lse_i, d=d_i, allowed=allowed)
        b["p"] = steps["p"](b)
        b["p_bar"] = jnp.einsum("nhje,nhie->nhji", v_j, o_bar_i)  # row_sums' very product: D stays exact
        b["s_bar"] = steps["s_bar"](b)
        return tuple(steps[f"{a}_bar"](b) for a in "qkv")

    return _mutant(name, tiled=_make_tiled_backward(kernel, allowed_fn))  # the true loops around the wrong step


def _diagonal_skipped(i, j, block, t, s, causal, mask):
    """The causal block skip off by one: j >= i taken as hidden, so diagonal blocks are skipped too."""
    allowed = block_allowed(i, j, block, t, s, causal, mask)
    return allowed & (j < i) if causal else allowed


def _no_triangle_in_diagonal_blocks(i, j, block, t, s, causal, mask):
    """Skips the blocks above the diagonal but treats the diagonal block as fully visible."""
    allowed = block_allowed(i, j, block, t, s, False, mask)
    whole = jnp.broadcast_to(j <= i, (block, block)) if causal else None
    return allowed if whole is None else (whole if allowed is None else allowed & whole)


MUTANTS = (
    _tiled_mutant("D from the block's own rowsum(p_bar * p), not the whole row's",
            s_bar=lambda b: b["p"] * (b["p_bar"] - jnp.sum(b["p_bar"] * b["p"], axis=-2, keepdims=True))),
    _tiled_mutant("lse left out when recomputing a block's p",
            p=lambda b: jnp.exp(_scores_t(b) - transposed(b["m"]))),
    _tiled_mutant("v_bar_j += p @ o_bar_i instead of p.T @ o_bar_i",
            v_bar=lambda b: jnp.einsum("nhji,nhie->nhje", transposed(b["p"]), b["o_bar"])),
    _tiled_mutant("k_bar_j missing 1/sqrt(d)", k_bar=lambda b: jnp.einsum("nhji,nhie->nhje", b["s_bar"], b["q"])),
    _tiled_mutant("causal: diagonal blocks skipped (off by one)", allowed_fn=_diagonal_skipped),
    _tiled_mutant("causal: diagonal blocks without their triangle", allowed_fn=_no_triangle_in_diagonal_blocks),
)

TILED = LayerInfo(
    tiled_attention, _sample_args, SHAPES,
    hypers=({"num_heads": 2, "mask": _MASK, "block_size": 3}, {"num_heads": 2, "causal": True, "block_size": 2},
            {"num_heads": 2, "causal": True, "mask": _HEAD_MASK, "block_size": 2}),  # 3 settings: suite time
    value_kinds=ATTENTION.value_kinds,
    # the untiled entry's sharded check covers the sharded batch; this one skips the 4-device
    # subprocess for suite time (the block loops are the same programs per example)
    supports=frozenset(FLAGS) - {"sharding"},
    edge_cases=EDGE_CASES, error_cases=ERROR_CASES, mutants=MUTANTS + JVP_MUTANTS,
    bench_shape=(1, 512, 64), bench_hyper={"num_heads": 4, "causal": True, "block_size": 64},
    notes=ATTENTION.notes.split(" At the saturated")[0] + " Saturated rows: the tiled rule sums D = rowsum(p_bar * p) block by block in a first pass, "
          "so w_q_bar and w_k_bar there are exact zeros in float32 and 2e-8 of the gradient's scale in float64 "
          "(the untiled rule: exact zeros).",
)

ENTRIES = (TILED,)
