"""attention: multi-head attention (self, cross, grouped-query, with dropout), flash-attention style.

Shapes first. ``x``: (N, T, D), N sequences of T queries of width D; ``kv``: (N, S, D), the sequence the
keys and values come from (cross-attention; ``kv=None``: kv = x, S = T, self-attention). H =
``num_heads`` query heads of size d = D / H; Hkv = ``num_kv_heads`` K/V heads (default H), each shared
by g = H / Hkv query heads (grouped-query attention). ``split`` cuts a width into heads, (N, L, H*d) ->
(N, H, L, d), ``merge`` undoes it; ``share`` repeats each K/V head for its g query heads (see
_attention_heads.py). Per head, a leading (N, H) is left implicit: read Q, O as (T, d), K, V as (S, d).

  Forward   Q = split(x @ w_q), K = split(kv @ w_k), V = split(kv @ w_v)   (T, d), (S, d); w_k: (D, Hkv*d)
            S = Q @ share(K).T / sqrt(d)                       (T, d)(d, S) -> (T, S)
            S[i, j] = -inf where query i may not see key j     (causal: j > i + S - T; mask[.., i, j] False)
            P = softmax(S) along j                             (T, S), each row sums to 1
            P_drop = where(keep, P / (1 - r), 0)               dropout, r = dropout_rate; P if r = 0 or no key
            O = P_drop @ share(V)                              (T, S)(S, d) -> (T, d)
            y = merge(O) @ w_o + b_o                           (N, T, D)

Chain rule, from the top down; y_bar = dL/dy: (N, T, D).

* y = merge(O) @ w_o + b_o is a linear layer (see _linear.py) on the input merge(O):
    b_o_bar = y_bar summed over (n, t),  w_o_bar = merge(O).T @ y_bar,  o_bar = split(y_bar @ w_o.T).
* O = P_drop @ V, so O[i, e] = sum_j P_drop[i, j] V[j, e]: V[j, e] reaches O[i, e] for every query i
  with slope P_drop[i, j], and P_drop[i, j] every O[i, e] with slope V[j, e]:
    v_bar = P_drop.T @ o_bar        (S, T)(T, d),    p_drop_bar = o_bar @ V.T        (T, d)(d, S)
* P_drop = where(keep, P / (1 - r), 0) is dropout (see _dropout.py) with a fixed mask, a diagonal
  Jacobian: p_bar = where(keep, p_drop_bar / (1 - r), 0), the same masking of the cotangent.
* Softmax, one row i at a time (see _softmax.py): dP[i, j]/dS[i, k] = P[i, j] (delta_jk - P[i, k]),
    s_bar[i, k] = P[i, k] * (p_bar[i, k] - sum_j p_bar[i, j] P[i, j]).
  A masked entry has P = 0, so its s_bar is 0: no gradient flows into a -inf score.
* S = Q @ K.T / sqrt(d) is a product again: Q[i, e] meets every K[j, e], and K[j, e] every Q[i, e]:
    q_bar = s_bar @ K / sqrt(d),   k_bar = s_bar.T @ Q / sqrt(d)              (T, S)(S, d), (S, T)(T, d)
* share copies K/V head c into its g query heads: a fan-out, so its cotangent is the sum of the
  copies' (group_sum): k_bar[c] = sum of the g heads' k_bar, v_bar alike.
* Q is a linear map of x, K and V of kv: x collects q_bar's term, kv those of k_bar and v_bar (all
  three into x when kv = x), and each w one.

  Backward  y_bar = dL/dy: (N, T, D)
            p       = exp(s - m - lse)                 recomputed from q, k: (N, H, T, S)
            keep    = the forward's mask               regenerated from the key (_attention_dropout.py)
            o_bar   = split(y_bar @ w_o.T)             (N, H, T, d)
            v_bar   = p_drop.T @ o_bar                 (S, T)(T, d) per head, p_drop = dropped(p, keep)
            p_bar   = dropped(o_bar @ v.T, keep)       (T, d)(d, S)
            s_bar   = p * (p_bar - rowsum(p_bar * p))  (T, S)
            q_bar   = s_bar @ k / sqrt(d)              (T, S)(S, d)
            k_bar   = s_bar.T @ q / sqrt(d)            (S, T)(T, d)
            k_bar, v_bar = group_sum(k_bar), group_sum(v_bar)          (N, Hkv, S, d)
            kv_bar  = merge(k_bar) @ w_k.T + merge(v_bar) @ w_v.T       (N, S, D)
            x_bar   = merge(q_bar) @ w_q.T (+ kv_bar when kv is None)   (N, T, D)
            w_q_bar = x.T @ merge(q_bar), w_k_bar = kv.T @ merge(k_bar), w_v_bar alike   summed over (n, t)
            w_o_bar = merge(o).T @ y_bar               summed over (n, t)
            b_o_bar = y_bar.sum((0, 1))

Forward mode: perturb the inputs along tangents (x_dot, kv_dot, params_dot: their shapes); each
product changes by the product rule, one term per factor, and P by softmax's tangent (per head:
_attention_tangents.py, which also gives the tiled form):

  Tangent   x_dot: (N, T, D), kv_dot: (N, S, D) (kv_dot = x_dot when kv is None), w_q_dot ...: as w_q ...
            q_dot = split(x_dot @ w_q + x @ w_q_dot)          k_dot, v_dot alike, from kv, kv_dot, w_k, w_v
            s_dot = (q_dot @ k.T + q @ k_dot.T) / sqrt(d)     (T, S), k and k_dot shared over the group
            p_dot = p * (s_dot - rowsum(p * s_dot))           (T, S)
            o_dot = dropped(p_dot, keep) @ v + p_drop @ v_dot (T, d)
            y_dot = merge(o_dot) @ w_o + merge(o) @ w_o_dot + b_o_dot      (N, T, D)

Residuals (the flash-attention idea, Dao et al. 2022): ``res = (params, x, q, k, v, o, m, lse, mask,
inputs)``: q, o: (N, H, T, d), N*T*D numbers each; k, v: (N, Hkv, S, d), not shared (N*S*D*Hkv/H
each); m, lse: (N, H, T, 1); ``mask`` and ``inputs`` (kv, and the key, 2 uint32 words, only when it
drops: r > 0) are the arguments as given, kept by reference (one per argument: ``bwd`` returns a
cotangent for each). Never P or the keep mask: ``bwd`` recomputes s from q and k, p = exp(s - m -
lse), and the mask from the key. Autodiff keeps P and more, N*H*T*S each (and the mask).

Tiling (``block_size``, see _attention_tiled.py for the block form of these equations): the untiled
path above builds (T, S) temporaries (s, p, p_bar, s_bar) inside one call; the tiled path visits
(B, B) blocks of them in a loop, so a jitted gradient's temp grows as (T + S)*d. ``block_size=None``
picks: untiled up to max(T, S) = UNTILED_UP_TO (where it measured faster), else blocks of
DEFAULT_BLOCK rows; an int B tiles with blocks of B (B >= max(T, S) is one block: the untiled code).
``auto`` runs the same schedule, so autodiff differentiates the very loop the hand rule replaces.

NOTE (causal, S != T): the queries are taken to be the last T of the S positions (aligned at the
end, as a decoder with a KV cache of S - T earlier tokens): query i sees key j <= i + S - T. For S = T
that is j <= i. For S < T the first T - S queries see no key (NOTE (fully masked rows)). PyTorch's
``is_causal`` aligns at the start instead; its ``causal_lower_right`` is this convention.
NOTE (dropout): the keep mask of each block of scores is drawn from fold_in(fold_in(key, i), j), so
it depends on (key, dropout_rate, block_size, shapes), never on a dtype; no key (a model that is
not training passes none) or dropout_rate=0 is no dropout, and saves no key. P's row sums, m and lse
are those before dropout. Reusing a key reuses the masks: split keys per layer and step.
NOTE (lse), NOTE (rowsum), NOTE (stability): see _attention_untiled.py.
NOTE (fully masked rows): a query that may see no key has no softmax. Convention: its row of P is
0, so its row of O is 0, its y is b_o, and it sends no gradient into q, k, v (only b_o_bar sees its
y_bar). m is set to 0 where the row max is -inf and lse to log(1) = 0 where the row sum is 0, so
P = exp(-inf) = 0 with no inf - inf anywhere; ``auto`` uses the same ``where``s, so autodiff agrees.
NOTE (precision): below float32 the layer computes in float32 (scores and their exp need the range;
flash kernels accumulate in float32 too) and casts y and the cotangents back to the inputs' dtypes.
NOTE (no q/k/v biases): a bias on K adds q_i . b_k to every score of row i, which softmax ignores;
a bias on V adds b_v @ w_o to every y (rows of P sum to 1; fully masked rows and dropout aside),
which b_o already provides; a bias on Q adds a learned per-key term b_q . k_j, which many
transformers omit. So only the output has a bias, and the rule stays four matrix products.
NOTE (sharding): under a mesh with explicit axes the four weight cotangents (sums over a sharded
batch) are given their weight's sharding (``_sharding.cotangent_sharding``; ``None``, the same program,
without such a mesh).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._attention_checks import Settings, check, heads_of
from ._attention_heads import group_sum, merge, share, split
from ._attention_tangents import tiled_tangent, untiled_tangent
from ._attention_tiled import tiled_backward, tiled_forward
from ._attention_untiled import untiled_backward, untiled_forward
from ._init import lecun_normal
from ._layer import make_layer
from ._sharding import cotangent_sharding
from ._statistics import compute_dtype

__all__ = ["AttentionParams", "attention"]

NAME = "attention"
UNTILED_UP_TO = 256  # block_size=None: untiled for max(T, S) <= this. Measured 2026-12-01: the T=512 block's
                     # attention (N=8, 4 heads of 32; 7 rounds beside a test suite) ran 1.9x slower
                     # untiled; attention alone (benchmarks/attention_scaling.py, quiet: N=1, heads of
                     # 16) tiled / untiled was 1.55x at T=256, 1.20x at 512, 0.83x at 1024, 0.61x at 2048
DEFAULT_BLOCK = 128  # and blocks of this many rows above it


class AttentionParams(NamedTuple):
    """``w_q``, ``w_o``: (D, D); ``w_k``, ``w_v``: (D, Hkv*d) (D, D unless K/V heads are grouped);
    ``b_o``: (D,) output bias."""

    w_q: jax.Array
    w_k: jax.Array
    w_v: jax.Array
    w_o: jax.Array
    b_o: jax.Array


def attention_init(key, width: int, dtype=jnp.float32, *, num_heads: Optional[int] = None,
                   num_kv_heads: Optional[int] = None) -> AttentionParams:
    """LeCun normal ``N(0, 1/width)`` for each projection (unit-variance in, unit-variance out), b_o = 0;
    w_k, w_v: (width, num_kv_heads * width / num_heads) with num_kv_heads (num_heads then required)."""
    if num_kv_heads is None:
        kv_width = width
    elif num_heads is None:
        raise ValueError(f"{NAME}.init: num_kv_heads={num_kv_heads} needs num_heads (w_k has num_kv_heads * width "
                         f"/ num_heads columns); got num_heads=None.")
    else:
        kv_width = num_kv_heads * heads_of(num_heads, num_kv_heads, width, f"width={width}")[2]
    keys = jax.random.split(key, 4)
    shapes = [(width, width), (width, kv_width), (width, kv_width), (width, width)]
    return AttentionParams(*(lecun_normal(k, s, width, dtype) for k, s in zip(keys, shapes)), jnp.zeros((width,), dtype))


def attention_infer(key, x, num_heads: Optional[int] = None, num_kv_heads: Optional[int] = None):
    """For a model: ``attention_init(key, D, x.dtype, ...)`` for x: (N, T, D) or the pair (x, kv); no
    state. Grouped K/V heads: ``jb.bind(jb.attention, num_heads=H, num_kv_heads=Hkv).sized(H, Hkv)``."""
    x = x[0] if isinstance(x, tuple) else x
    return attention_init(key, x.shape[-1], x.dtype, num_heads=num_heads, num_kv_heads=num_kv_heads), None


# shared maths: auto, fwd and bwd all use these -----------------------------------------------------------
def _as(params, dtype) -> AttentionParams:
    return AttentionParams(*(p.astype(dtype) for p in params))


def _given(kv) -> tuple:
    return () if kv is None else (kv,)


def _block(length, block_size):
    """Rows per block for sequences of length max(T, S), or None: the untiled path (one block)."""
    block = (DEFAULT_BLOCK if length > UNTILED_UP_TO else length) if block_size is None else block_size
    return None if block >= length else block


def _attend(q, k, v, mask, key, settings):
    """o, m, lse from q: (N, H, T, d) and k, v: (N, Hkv, S, d), on the untiled or the tiled path."""
    block = _block(max(q.shape[2], k.shape[2]), settings.block_size)
    args = (q, share(k, settings.group), share(v, settings.group), settings.causal, mask, key, settings.dropout_rate)
    return untiled_forward(*args) if block is None else tiled_forward(*args, block)


def _forward(params, x, kv, key, mask, settings):
    """y and the intermediates (q, k, v, o, m, lse) in the compute dtype."""
    dtype = compute_dtype(x, *_given(kv), *params)  # at least float32: NOTE (precision)
    p32, x32 = _as(params, dtype), x.astype(dtype)
    kv32 = x32 if kv is None else kv.astype(dtype)
    q = split(x32 @ p32.w_q, settings.num_heads)
    k, v = (split(kv32 @ w, settings.kv_heads) for w in (p32.w_k, p32.w_v))
    o, m, lse = _attend(q, k, v, mask, key, settings)
    y = merge(o) @ p32.w_o + p32.b_o
    return y.astype(jnp.result_type(x, *_given(kv), *params)), (q, k, v, o, m, lse)


def _checked(params, x, kv, key, mask, num_heads, num_kv_heads, causal, block_size, dropout_rate) -> Settings:
    settings = Settings(num_heads, num_kv_heads, causal, block_size, dropout_rate)
    check(AttentionParams, params, x, kv, key, settings, mask)
    return settings


def attention_auto(params: AttentionParams, x, kv=None, key=None, *, num_heads: int, num_kv_heads=None,
                   causal: bool = False, mask=None, block_size=None, dropout_rate: float = 0.0):
    """Multi-head attention; x: (N, T, D), kv: (N, S, D) or None (self) -> y: (N, T, D). ``mask``:
    True = may attend, broadcast to (N, H, T, S); ``key``: drops P with ``dropout_rate`` (None: no dropout)."""
    settings = _checked(params, x, kv, key, mask, num_heads, num_kv_heads, causal, block_size, dropout_rate)
    return _forward(params, x, kv, key, mask, settings)[0]


def _kv_and_key(inputs) -> tuple:
    """(kv, key) from the positional arguments after (params, x), either or both left out."""
    if len(inputs) > 2:
        raise TypeError(f"{NAME}: takes (params, x, kv=None, key=None); got {2 + len(inputs)} positional arguments.")
    return (*inputs, None, None)[:2]


def attention_fwd(params: AttentionParams, x, *inputs, num_heads: int, num_kv_heads=None, causal: bool = False,
                  mask=None, block_size=None, dropout_rate: float = 0.0):
    kv, key = _kv_and_key(inputs)
    settings = _checked(params, x, kv, key, mask, num_heads, num_kv_heads, causal, block_size, dropout_rate)
    y, heads = _forward(params, x, kv, key, mask, settings)
    kept = (kv, key if dropout_rate else None)[:len(inputs)]  # the key only when it drops: NOTE (dropout)
    return y, (params, x, *heads, mask, kept)


def _outer(a, b, w):
    """a.T @ b summed over (n, t): (N, L, D), (N, L, E) -> (D, E), sharded as the weight ``w``
    (NOTE (sharding))."""
    return jnp.einsum("ntd,nte->de", a, b, out_sharding=cotangent_sharding(w))


def _heads_backward(q, k, v, o, m, lse, o_bar, mask, key, settings, tiled=tiled_backward):
    """q_bar: (N, H, T, d), k_bar, v_bar: (N, Hkv, S, d), on either path: the K/V heads' cotangents
    summed over the query heads sharing them (group_sum). The registry's mutants pass ``tiled``."""
    block = _block(max(q.shape[2], k.shape[2]), settings.block_size)
    heads_backward = untiled_backward if block is None else functools.partial(tiled, block=block)
    q_bar, k_bar, v_bar = heads_backward(q, share(k, settings.group), share(v, settings.group), o, m, lse, o_bar,
                                         settings.causal, mask, key, settings.dropout_rate)
    return q_bar, group_sum(k_bar, settings.group), group_sum(v_bar, settings.group)


def _backward(res, y_bar, settings, heads_backward=_heads_backward):
    """Cotangents of (params, x[, kv[, key]]): the projections' chain rule around ``heads_backward``."""
    params, x, q, k, v, o, m, lse, saved_mask, kept = res  # the mask as given: bwd gets no array keyword
    kv, key = (*kept, None, None)[:2]
    p32, x32, y_bar32 = _as(params, q.dtype), x.astype(q.dtype), y_bar.astype(q.dtype)
    kv32 = x32 if kv is None else kv.astype(q.dtype)
    o_bar = split(y_bar32 @ p32.w_o.T, settings.num_heads)
    q_bar, k_bar, v_bar = (merge(a) for a in heads_backward(q, k, v, o, m, lse, o_bar, saved_mask, key, settings))
    kv_bar = k_bar @ p32.w_k.T + v_bar @ p32.w_v.T
    x_bar = q_bar @ p32.w_q.T + kv_bar if kv is None else q_bar @ p32.w_q.T
    grads = [_outer(x32, q_bar, p32.w_q), _outer(kv32, k_bar, p32.w_k), _outer(kv32, v_bar, p32.w_v),
             _outer(merge(o), y_bar32, p32.w_o), y_bar32.sum((0, 1))]
    params_bar = AttentionParams(*(g.astype(w.dtype) for g, w in zip(grads, params)))
    cotangents = (params_bar, x_bar.astype(x.dtype), None if kv is None else kv_bar.astype(kv.dtype), None)
    return cotangents[:2 + len(kept)]  # one per argument given


def attention_bwd(res, y_bar, *, num_heads: int, num_kv_heads=None, causal: bool = False, mask=None,
                  block_size=None, dropout_rate: float = 0.0):
    return _backward(res, y_bar, Settings(num_heads, num_kv_heads, causal, block_size, dropout_rate))


def _heads_tangent(q, k, v, q_dot, k_dot, v_dot, mask, key, settings):
    """o, o_dot: (N, H, T, d) on the untiled or the tiled path, K/V and their tangents shared."""
    block = _block(max(q.shape[2], k.shape[2]), settings.block_size)
    shared = [share(a, settings.group) for a in (k, v, k_dot, v_dot)]
    args = (q, *shared[:2], q_dot, *shared[2:], settings.causal, mask, key, settings.dropout_rate)
    return untiled_tangent(*args) if block is None else tiled_tangent(*args, block)


def _tangent(primals, tangents, mask, settings, heads_tangent=_heads_tangent):
    """y, y_dot: the Tangent lines; ``heads_tangent`` is the registry mutants' hook (as ``_backward``'s)."""
    (params, x, *inputs), (params_dot, x_dot, *input_dots) = primals, tangents
    kv, key = _kv_and_key(inputs)
    dtype = compute_dtype(x, *_given(kv), *params)  # NOTE (precision)
    p32, w_dot = _as(params, dtype), _as(params_dot, dtype)
    x32, x_dot32 = x.astype(dtype), x_dot.astype(dtype)
    kv32, kv_dot32 = (x32, x_dot32) if kv is None else (kv.astype(dtype), input_dots[0].astype(dtype))

    def projected(a, a_dot, w, w_dot_, heads):  # split(a @ w) and its tangent by the product rule
        return split(a @ w, heads), split(a_dot @ w + a @ w_dot_, heads)

    (q, q_dot), (k, k_dot), (v, v_dot) = (projected(x32, x_dot32, p32.w_q, w_dot.w_q, settings.num_heads),
                                          projected(kv32, kv_dot32, p32.w_k, w_dot.w_k, settings.kv_heads),
                                          projected(kv32, kv_dot32, p32.w_v, w_dot.w_v, settings.kv_heads))
    o, o_dot = heads_tangent(q, k, v, q_dot, k_dot, v_dot, mask, key, settings)
    y, y_dot = merge(o) @ p32.w_o + p32.b_o, merge(o_dot) @ p32.w_o + merge(o) @ w_dot.w_o + w_dot.b_o
    out = jnp.result_type(x, *_given(kv), *params)
    return y.astype(out), y_dot.astype(out)


def attention_jvp(primals, tangents, *, num_heads: int, num_kv_heads=None, causal: bool = False, mask=None,
                  block_size=None, dropout_rate: float = 0.0):
    params, x, *inputs = primals
    kv, key = _kv_and_key(inputs)
    settings = _checked(params, x, kv, key, mask, num_heads, num_kv_heads, causal, block_size, dropout_rate)
    return _tangent(primals, tangents, mask, settings)


attention = make_layer(attention_auto, attention_fwd, attention_bwd, name=NAME, init=attention_init,
                       roles=("params", "x", "x", "key"), infer=attention_infer, jvp=attention_jvp)
