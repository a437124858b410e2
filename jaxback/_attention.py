"""attention: multi-head self-attention, with a flash-attention style hand rule.

Shapes first. ``x``: (N, T, D), N sequences of T tokens of width D; H = ``num_heads`` heads of size
d = D / H. ``split`` cuts the width into heads, (N, T, D) -> (N, H, T, d); ``merge`` undoes it. Below,
every per-head array carries a leading (N, H), left implicit: read Q, K, V, O as (T, d) matrices.

  Forward   Q = split(x @ w_q), K = split(x @ w_k), V = split(x @ w_v)      (T, d) per head
            S = Q @ K.T / sqrt(d)                              (T, d)(d, T) -> (T, T)
            S[i, j] = -inf where query i may not see key j     (causal: j > i; mask[.., i, j] False)
            P = softmax(S) along j                             (T, T), each row sums to 1
            O = P @ V                                          (T, T)(T, d) -> (T, d)
            y = merge(O) @ w_o + b_o                           (N, T, D)

Chain rule, from the top down; y_bar = dL/dy: (N, T, D).

* y = merge(O) @ w_o + b_o is a linear layer (see _linear.py) on the input merge(O):
    b_o_bar = y_bar summed over (n, t),  w_o_bar = merge(O).T @ y_bar,  o_bar = split(y_bar @ w_o.T).
* O = P @ V, so O[i, e] = sum_j P[i, j] V[j, e]. V[j, e] reaches O[i, e] for every query i, with
  slope P[i, j]; P[i, j] reaches O[i, e] for every e, with slope V[j, e]:
    v_bar[j, e] = sum_i P[i, j] o_bar[i, e]   -> v_bar = P.T @ o_bar        (T, T)(T, d)
    p_bar[i, j] = sum_e o_bar[i, e] V[j, e]   -> p_bar = o_bar @ V.T        (T, d)(d, T)
* Softmax, one row i at a time (see _softmax.py): dP[i, j]/dS[i, k] = P[i, j] (delta_jk - P[i, k]),
    s_bar[i, k] = P[i, k] * (p_bar[i, k] - sum_j p_bar[i, j] P[i, j]).
  (Substituting p_bar = o_bar @ V.T and O = P @ V, the row sum also equals rowsum(o_bar * O), the
  form flash attention uses; see NOTE (rowsum) for why we keep rowsum(p_bar * P).)
  A masked entry has P = 0, so its s_bar is 0: no gradient flows into a -inf score.
* S = Q @ K.T / sqrt(d) is a product again: Q[i, e] meets every K[j, e], and K[j, e] every Q[i, e]:
    q_bar = s_bar @ K / sqrt(d),   k_bar = s_bar.T @ Q / sqrt(d)              (T, T)(T, d)
* Q, K, V are three linear maps of the same x, so x collects three terms and each w one.

  Backward  y_bar = dL/dy: (N, T, D)
            p       = exp(s - m - lse)                 recomputed from q, k: (N, H, T, T)
            o_bar   = split(y_bar @ w_o.T)             (N, H, T, d)
            v_bar   = p.T @ o_bar                      (T, T)(T, d) per head
            p_bar   = o_bar @ v.T                      (T, d)(d, T)
            s_bar   = p * (p_bar - rowsum(p_bar * p))  (T, T)
            q_bar   = s_bar @ k / sqrt(d)              (T, T)(T, d)
            k_bar   = s_bar.T @ q / sqrt(d)            (T, T)(T, d)
            x_bar   = merge(q_bar) @ w_q.T + merge(k_bar) @ w_k.T + merge(v_bar) @ w_v.T
            w_q_bar = x.T @ merge(q_bar)               summed over (n, t); w_k_bar, w_v_bar alike
            w_o_bar = merge(o).T @ y_bar               summed over (n, t)
            b_o_bar = y_bar.sum((0, 1))

Residuals (the flash-attention idea, Dao et al. 2022): ``res = (params, x, q, k, v, o, m, lse,
mask)``, q, k, v, o: (N, H, T, d), i.e. N*T*D numbers each, m, lse: (N, H, T, 1), and ``mask`` only if
one was given (an input, kept by reference, not a new activation). Never P: ``bwd`` recomputes s from
q and k and p = exp(s - m - lse). So res holds 5*N*T*D + 2*N*H*T numbers, where autodiff keeps P and
more, N*H*T*T each.

Tiling (``block_size``, see _attention_tiled.py for the block form of these equations): the untiled
path above still builds (T, T) temporaries (s, p, p_bar, s_bar) inside one call; the tiled path
visits (B, B) blocks of them in a loop, so a jitted gradient's temp grows as T*d. ``block_size=None``
picks: untiled up to T = UNTILED_UP_TO (where it measured faster), else blocks of DEFAULT_BLOCK
rows; an int B tiles with blocks of B (B >= T is one block: the untiled code). ``auto`` runs the
same schedule, so autodiff differentiates the very loop the hand rule replaces.

NOTE (lse): L = m + lse is the row's log-sum-exp, m = max_j s its finite row maximum, and
lse = log sum_j exp(s - m) in [0, log T]. We save m and lse, not L (which flash attention stores):
L rounds at the scale of m (for scores ~1e7, an absolute error ~1e-9, hence a relative error ~1e-9
in every recomputed P), while lse keeps full precision.
NOTE (rowsum): flash attention takes the row sum as rowsum(o_bar * o); rowsum(p_bar * p) (the tiled
path sums it block by block) is the more accurate: for a
saturated row (p one-hot, scores ~1e7) it equals p_bar[i, k] exactly, so s_bar = 0 as it should,
while o_bar . o and o_bar . v_k round differently and leave noise of eps |o_bar| |v| that q_bar,
k_bar and then w_q_bar, w_k_bar amplify by |k| |x| (measured: 1e-5 where autodiff gives 0, at
|x| ~ 1e4).
NOTE (fully masked rows): a query that may see no key has no softmax. Convention: its row of P is
0, so its row of O is 0, its y is b_o, and it sends no gradient into q, k, v (only b_o_bar sees its
y_bar). m is set to 0 where the row max is -inf and lse to log(1) = 0 where the row sum is 0, so
P = exp(-inf) = 0 with no inf - inf anywhere; ``auto`` uses the same ``where``s, so autodiff agrees.
NOTE (stability): exp only ever sees s - m <= 0, so huge scores do not overflow; ``auto`` shifts by
``stop_gradient(m)`` (exact: softmax does not change under a shift). Non-finite x gives NaN.
NOTE (precision): below float32 the layer computes in float32 (scores and their exp need the range;
flash kernels accumulate in float32 too) and casts y and the cotangents back to the inputs' dtypes.
NOTE (no q/k/v biases): a bias on K adds q_i . b_k to every score of row i, which softmax ignores;
a bias on V adds b_v @ w_o to every y (rows of P sum to 1; fully masked rows aside), which b_o
already provides; a bias on Q adds a learned per-key term b_q . k_j, which many transformers omit.
So only the output has a bias, and the rule stays four matrix products.
NOTE (sharding): under a mesh with explicit axes the four weight cotangents (sums over a sharded
batch) are given their weight's sharding (``_sharding.cotangent_sharding``; ``None``, the same program,
without such a mesh).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._attention_tiled import scores as _scores
from ._attention_tiled import tiled_backward, tiled_forward
from ._attention_checks import check
from ._init import lecun_normal
from ._layer import infer_from_features, make_layer
from ._sharding import cotangent_sharding
from ._statistics import compute_dtype

__all__ = ["AttentionParams", "attention"]

NAME = "attention"
UNTILED_UP_TO = 256  # block_size=None: untiled for T <= this. Measured 2026-12-01: the T=512 block's
                     # attention (N=8, 4 heads of 32; 7 rounds beside a test suite) ran 1.9x slower
                     # untiled; attention alone (benchmarks/attention_scaling.py, quiet: N=1, heads of
                     # 16) tiled / untiled was 1.55x at T=256, 1.20x at 512, 0.83x at 1024, 0.61x at 2048
DEFAULT_BLOCK = 128   # and blocks of this many rows above it


class AttentionParams(NamedTuple):
    """``w_q``, ``w_k``, ``w_v``, ``w_o``: (D, D) projections; ``b_o``: (D,) output bias."""

    w_q: jax.Array
    w_k: jax.Array
    w_v: jax.Array
    w_o: jax.Array
    b_o: jax.Array


def attention_init(key, width: int, dtype=jnp.float32) -> AttentionParams:
    """LeCun normal ``N(0, 1/width)`` for each projection (unit-variance in, unit-variance out), b_o = 0."""
    keys = jax.random.split(key, 4)
    w_q, w_k, w_v, w_o = (lecun_normal(k, (width, width), width, dtype) for k in keys)
    return AttentionParams(w_q, w_k, w_v, w_o, jnp.zeros((width,), dtype))


# shared maths: auto, fwd and bwd all use these -----------------------------------------------------------
def _as(params, dtype) -> AttentionParams:
    return AttentionParams(*(p.astype(dtype) for p in params))


def _split(a, num_heads):
    """(N, T, D) -> (N, H, T, d)."""
    n, t, width = a.shape
    return a.reshape(n, t, num_heads, width // num_heads).transpose(0, 2, 1, 3)


def _merge(a):
    """(N, H, T, d) -> (N, T, D)."""
    n, h, t, d = a.shape
    return a.transpose(0, 2, 1, 3).reshape(n, t, h * d)


def _allowed(t, causal, mask):
    """Which (query, key) pairs may attend: a boolean broadcastable to (N, H, T, T), or None (all)."""
    if causal:  # key j <= query i, rebuilt from iota: nothing to save
        tri = lax.broadcasted_iota(jnp.int32, (t, t), 1) <= lax.broadcasted_iota(jnp.int32, (t, t), 0)
        return tri if mask is None else tri & mask
    return mask


def _block(t, block_size):
    """Rows per block for a sequence of length T, or None: the untiled path (one block)."""
    block = (DEFAULT_BLOCK if t > UNTILED_UP_TO else t) if block_size is None else block_size
    return None if block >= t else block


def _row_shift(s):
    """m: the row max, 0 for a fully masked row; a constant shift, so no gradient flows into it."""
    m = jnp.max(s, axis=-1, keepdims=True, initial=-jnp.inf)
    return lax.stop_gradient(jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m)))


def _log_row_sum(s, m):
    """lse = log sum_j exp(s - m), and 0 (log 1) for a fully masked row (see NOTE)."""
    l = jnp.sum(jnp.exp(s - m), axis=-1, keepdims=True)
    return jnp.log(jnp.where(l > 0, l, jnp.ones_like(l)))


def _untiled_forward(q, k, v, causal, mask):
    """o, m, lse: (N, H, T, d), (N, H, T, 1), (N, H, T, 1), with the whole (T, T) s at once."""
    s = _scores(q, k, _allowed(q.shape[2], causal, mask))
    m = _row_shift(s)
    lse = _log_row_sum(s, m)
    return jnp.exp(s - m - lse) @ v, m, lse                       # (N, H, T, T)(N, H, T, d)


def _forward(params, x, num_heads, causal, mask, block_size):
    """y and the intermediates (q, k, v, o, m, lse) in the compute dtype."""
    dtype = compute_dtype(x, *params)  # at least float32: NOTE (precision)
    p32, x32 = _as(params, dtype), x.astype(dtype)
    q, k, v = (_split(x32 @ w, num_heads) for w in (p32.w_q, p32.w_k, p32.w_v))
    block = _block(x.shape[1], block_size)
    o, m, lse = _untiled_forward(q, k, v, causal, mask) if block is None else tiled_forward(q, k, v, causal, mask, block)
    y = _merge(o) @ p32.w_o + p32.b_o
    return y.astype(jnp.result_type(x, *params)), (q, k, v, o, m, lse)


def attention_auto(params: AttentionParams, x, *, num_heads: int, causal: bool = False, mask=None,
                   block_size=None):
    """Multi-head self-attention; x: (N, T, D) -> y: (N, T, D). ``mask``: True = may attend."""
    check(AttentionParams, params, x, num_heads, causal, mask, block_size)
    return _forward(params, x, num_heads, causal, mask, block_size)[0]


def attention_fwd(params: AttentionParams, x, *, num_heads: int, causal: bool = False, mask=None,
                  block_size=None):
    check(AttentionParams, params, x, num_heads, causal, mask, block_size)
    y, heads = _forward(params, x, num_heads, causal, mask, block_size)
    return y, (params, x, *heads, mask)


def _outer(a, b, w=None):
    """a.T @ b summed over (n, t): (N, T, D), (N, T, D) -> (D, D), sharded as the weight ``w``
    (NOTE (sharding)); the registry's mutants call it without ``w``."""
    return jnp.einsum("ntd,nte->de", a, b, out_sharding=None if w is None else cotangent_sharding(w))


def _untiled_backward(q, k, v, o, m, lse, o_bar, causal, mask):
    """q_bar, k_bar, v_bar: (N, H, T, d), with whole (T, T) blocks (the Backward lines above)."""
    p = jnp.exp(_scores(q, k, _allowed(q.shape[2], causal, mask)) - m - lse)  # recomputed, never saved
    v_bar = jnp.einsum("nhij,nhie->nhje", p, o_bar)                # p.T @ o_bar
    p_bar = jnp.einsum("nhie,nhje->nhij", o_bar, v)                # o_bar @ v.T
    s_bar = p * (p_bar - jnp.sum(p_bar * p, axis=-1, keepdims=True))
    q_bar = jnp.einsum("nhij,nhje->nhie", s_bar, k) / math.sqrt(q.shape[-1])
    k_bar = jnp.einsum("nhij,nhie->nhje", s_bar, q) / math.sqrt(q.shape[-1])
    return q_bar, k_bar, v_bar


def _backward(res, y_bar, num_heads, causal, heads_backward):
    """Cotangents of (params, x): the projections' chain rule around ``heads_backward`` (either path)."""
    params, x, q, k, v, o, m, lse, saved_mask = res  # ``mask`` here is only ever a static None
    p32, x32, y_bar32 = _as(params, q.dtype), x.astype(q.dtype), y_bar.astype(q.dtype)
    o_bar = _split(y_bar32 @ p32.w_o.T, num_heads)
    qkv_bar = [_merge(a) for a in heads_backward(q, k, v, o, m, lse, o_bar, causal, saved_mask)]
    x_bar = sum(a @ w.T for a, w in zip(qkv_bar, p32[:3]))
    grads = ([_outer(x32, a, w) for a, w in zip(qkv_bar, p32[:3])]
             + [_outer(_merge(o), y_bar32, p32.w_o), y_bar32.sum((0, 1))])
    return AttentionParams(*(g.astype(w.dtype) for g, w in zip(grads, params))), x_bar.astype(x.dtype)


def attention_bwd(res, y_bar, *, num_heads: int, causal: bool = False, mask=None, block_size=None):
    block = _block(res[2].shape[2], block_size)
    heads_backward = _untiled_backward if block is None else functools.partial(tiled_backward, block=block)
    return _backward(res, y_bar, num_heads, causal, heads_backward)


attention = make_layer(attention_auto, attention_fwd, attention_bwd, name=NAME, init=attention_init,
                       infer=infer_from_features(attention_init))
