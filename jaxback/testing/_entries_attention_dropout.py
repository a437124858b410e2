"""Registry entry for attention's dropout on P (``dropout_rate`` with a ``key``).

Self-attention samples ``(params, x, None, key)``, one shape (the self-attention entries vary the
shapes; suite time) and a raw ``PRNGKey`` (typed keys: the dropout entry, and tests/test_attention.py
with every feature at once), on the untiled path and the tiled one (blocks of 2; of 3 with a padded
last block), where each block draws its own mask (_attention_dropout.py). Autodiff of
``.auto`` sees the same masks (a function of the key), so every generated check compares the hand
rule's regenerated masks with the forward's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._attention import attention
from .._attention_dropout import block_keep
from .._attention_heads import merge, split
from .._attention_blocks import block_allowed
from .._attention_tiled import _make_tiled_backward, block_backward
from .._keep_mask import keep_mask
from .._layer import make_layer
from ._entries_attention import _MASK, _P8, _cast, _close, _fixed_args, _mutant, _params, _x
from ._attention_jvp_mutants import JVP_MUTANTS
from ._registry import FLAGS, EdgeCase, ErrorCase, LayerInfo
from .strategies import values

dropout_attention = make_layer(attention.auto, attention.fwd, attention.bwd, name="attention (dropout)",
                               init=attention.init, roles=attention.roles, jvp=attention.jvp)

SHAPES = ((2, 4, 6),)


def _dropout_args(rng, dtype, shape, kind):
    params, x = _params(rng, shape[-1], dtype), jnp.asarray(values(rng, shape, kind), dtype)
    return params, x, None, jax.random.PRNGKey(int(rng.integers(2**31)))


def _with_key(shape, seed=7):
    return (*_fixed_args(shape), None, jax.random.PRNGKey(seed))


def _by_hand(params, x, key, num_heads, rate):
    """The forward written out with the untiled mask, block (0, 0) of the key: the witness."""
    q, k, v = (split(x @ w, num_heads) for w in params[:3])
    p = jax.nn.softmax(q @ jnp.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1]), axis=-1)
    keep = keep_mask(jax.random.fold_in(jax.random.fold_in(key, 0), 0), rate, p.shape)
    return merge(jnp.where(keep, p / (1 - rate), 0) @ v) @ params.w_o + params.b_o


def _same_as_without_dropout(shape, **hyper):
    return lambda y, cots: _close(y, attention.auto(*_fixed_args(shape), **hyper))


EDGE_CASES = (
    EdgeCase("the forward written out", lambda dt: _cast(_with_key((2, 4, 4)), dt),
             "y = merge(where(keep, P / (1 - r), 0) @ V) @ w_o + b_o with keep drawn from fold_in(fold_in(key, 0), 0)",
             lambda y, cots: _close(y, _by_hand(*_fixed_args((2, 4, 4)), jax.random.PRNGKey(7), 2, 0.5)),
             {"num_heads": 2, "dropout_rate": 0.5}),
    EdgeCase("dropout_rate 0 with a key", lambda dt: _cast(_with_key((2, 4, 4)), dt),
             "no dropout: y is attention's without a key (and no key is saved)",
             _same_as_without_dropout((2, 4, 4), num_heads=2, causal=True), {"num_heads": 2, "causal": True}),
    EdgeCase("no key", lambda dt: _cast(_fixed_args((2, 4, 4)), dt),
             "dropout_rate 0.5 without a key (a model out of training passes none) does not drop",
             _same_as_without_dropout((2, 4, 4), num_heads=2), {"num_heads": 2, "dropout_rate": 0.5}),
)

ERROR_CASES = (
    ErrorCase("dropout_rate 1", lambda: (_P8, _x((2, 5, 8)), None, jax.random.PRNGKey(0)), ValueError,
              r"attention: dropout_rate \(the probability of dropping an entry\) must be in \[0, 1\); got "
              r"dropout_rate=1.0", {"num_heads": 2, "dropout_rate": 1.0}),
    ErrorCase("string dropout_rate", lambda: (_P8, _x((2, 5, 8))), TypeError,
              r"attention: dropout_rate must be a Python real number", {"num_heads": 2, "dropout_rate": "0.1"}),
    ErrorCase("key as a keyword", lambda: (_P8, _x((2, 5, 8))), TypeError,
              r"attention[^:]*: unknown keyword argument\(s\) 'key'; attention[^:]* accepts block_size, causal, "
              r"dropout_rate",  # the entry's copy of the layer has its own name
              {"num_heads": 2, "dropout_rate": 0.1, "key": jax.random.PRNGKey(0)}),
    ErrorCase("a batch of keys", lambda: (_P8, _x((2, 5, 8)), None, jax.random.split(jax.random.PRNGKey(0), 2)),
              ValueError, r"attention: key must be one PRNG key, jax.random.key\(seed\) or jax.random.PRNGKey\(seed\); "
              r"got key shape=\(2, 2\)", {"num_heads": 2, "dropout_rate": 0.1}),
)


# mutants ------------------------------------------------------------------------------------------------
def _unfolded_keep(n):
    """The mask regenerated from the key itself, not from its block's fold_in(fold_in(key, 0), 0)."""
    return None if n["key"] is None or not n["s"].dropout_rate else keep_mask(n["key"], n["s"].dropout_rate,
                                                                               n["p"].shape)


def _swapped_block_keep(key, i, j, rate, shape):
    """Block (i, j)'s mask drawn from fold_in(fold_in(key, j), i): the forward drew (i, j)'s."""
    return block_keep(key, j, i, rate, shape)


MUTANTS = (
    _mutant("mask regenerated from the key, not from block (0, 0)'s fold", keep=_unfolded_keep),
    _mutant("p_bar not masked (dropout forgotten on the cotangent)",
            p_bar=lambda n: jnp.einsum("nhie,nhje->nhij", n["o_bar"], n["v"])),
    _mutant("v_bar = p.T @ o_bar, with p before dropout",
            v_bar=lambda n: jnp.einsum("nhij,nhie->nhje", n["p"], n["o_bar"])),
    _mutant("tiled: block keys folded (j, i) in the backward",
            tiled=_make_tiled_backward(block_backward, block_allowed, _swapped_block_keep)),
)

DROPOUT = LayerInfo(
    dropout_attention, _dropout_args, SHAPES,
    hypers=({"num_heads": 2, "dropout_rate": 0.3}, {"num_heads": 2, "causal": True, "dropout_rate": 0.5},
            {"num_heads": 2, "dropout_rate": 0.3, "block_size": 2},
            {"num_heads": 2, "causal": True, "mask": _MASK, "dropout_rate": 0.5, "block_size": 3}),
    value_kinds=("wide", "ties"),
    supports=frozenset(FLAGS) - {"sharding"},  # the self-attention entry's sharded check covers the batch axis
    edge_cases=EDGE_CASES, error_cases=ERROR_CASES, mutants=MUTANTS + JVP_MUTANTS,
    bench_shape=(2, 256, 64), bench_hyper={"num_heads": 4, "causal": True, "dropout_rate": 0.1},
    notes="value kind 'extreme' left out, as for attention. The key is not differentiable (float0 cotangent); "
          "the masks are a function of (key, dropout_rate, block_size, shapes), as for dropout. No sharded check: "
          "the self-attention entry's covers the batch axis.",
)

ENTRIES = (DROPOUT,)
