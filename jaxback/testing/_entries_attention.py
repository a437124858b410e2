"""Registry entries for multi-head self-attention, and the helpers and the mutant harness that the
entries of attention's other settings (tiled, cross and grouped, dropout) share."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._attention import AttentionParams, Settings, _as, _backward, _block, attention
from .._attention_dropout import UNTILED, block_keep, dropped
from .._attention_heads import group_sum, share
from .._attention_tiled import tiled_backward
from .._attention_untiled import allowed, scores
from ._attention_jvp_mutants import JVP_MUTANTS
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

# Every sample shape has T = 4, so one (T, T) mask fits them all (hypers are drawn independently of
# shapes). Query 1 of _MASK sees no key: the fully-masked-row convention runs under every check.
SHAPES = ((1, 4, 4), (2, 4, 6), (3, 4, 2))
_MASK = jnp.asarray(np.random.default_rng(3).random((4, 4)) < 0.6).at[1].set(False)
_HEAD_MASK = jnp.asarray(np.random.default_rng(4).random((2, 4, 4)) < 0.7)  # per head, broadcast over N


def _params(rng, width, dtype, kv_width=None):
    """w_k, w_v: (width, kv_width) (grouped K/V heads), width by default."""
    columns = [width, kv_width or width, kv_width or width, width]
    ws = (rng.standard_normal((width, c)) / math.sqrt(width) for c in columns)
    return AttentionParams(*(jnp.asarray(w, dtype) for w in ws), jnp.asarray(rng.standard_normal(width), dtype))


def _sample_args(rng, dtype, shape, kind):
    return _params(rng, shape[-1], dtype), jnp.asarray(values(rng, shape, kind), dtype)


def _fixed_args(shape, scale=1.0, seed=0):
    """Deterministic float64 arguments, so an edge case's check can rebuild what it expects."""
    rng = np.random.default_rng(seed)
    return _params(rng, shape[-1], jnp.float64), jnp.asarray(scale * rng.standard_normal(shape))


def _cast(args, dtype):
    """The arguments' floating arrays in ``dtype`` (params, x, a kv); a key or None unchanged."""
    params, *arrays = args
    cast = [a.astype(dtype) if a is not None and jnp.issubdtype(a.dtype, jnp.floating) else a for a in arrays]
    return (_as(params, dtype), *cast)


def _value_path(params, x):
    """y of a query whose one visible key is itself (P = 1): x @ w_v @ w_o + b_o."""
    return x @ params.w_v @ params.w_o + params.b_o


def _close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol=1e-6, atol=1e-6)


def _equal(actual, expected):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    np.testing.assert_array_equal(*np.broadcast_arrays(actual, expected))


def _finite(*trees):
    for leaf in [l for t in trees for l in (t if isinstance(t, (tuple, list)) else (t,))]:
        assert np.all(np.isfinite(np.asarray(leaf, np.float64))), f"not finite: {leaf}"


_EMPTY_ROW = jnp.ones((3, 3), bool).at[1].set(False)
_ONE_TOKEN, _CAUSAL, _SATURATED, _MASKED = (1, 1, 4), (2, 3, 4), (2, 4, 4), (2, 3, 4)
EDGE_CASES = (
    EdgeCase("fully masked query row", lambda dt: _cast(_fixed_args(_MASKED), dt),
             "query 1 sees no key: its P row is 0, so y[:, 1] = b_o exactly; all cotangents finite",
             lambda y, cots: (_equal(y[:, 1], _fixed_args(_MASKED)[0].b_o.astype(y.dtype)), _finite(*cots[0], cots[1])),
             {"num_heads": 2, "mask": _EMPTY_ROW}),
    EdgeCase("a single token", lambda dt: _cast(_fixed_args(_ONE_TOKEN), dt),
             "T = 1: P = 1, so y = x @ w_v @ w_o + b_o",
             lambda y, cots: _close(y, _value_path(*_fixed_args(_ONE_TOKEN))), {"num_heads": 2}),
    EdgeCase("causal: the first token sees only itself", lambda dt: _cast(_fixed_args(_CAUSAL), dt),
             "y[:, 0] = x[:, 0] @ w_v @ w_o + b_o",
             lambda y, cots: _close(y[:, 0], _value_path(*_fixed_args(_CAUSAL))[:, 0]),
             {"num_heads": 2, "causal": True}),
    EdgeCase("saturated rows: scores ~1e7", lambda dt: _cast(_fixed_args(_SATURATED, scale=1e4), dt),
             "every P row is one-hot: finite y and cotangents, w_q_bar and w_k_bar exactly 0 (as autodiff)",
             lambda y, cots: (_finite(y, *cots[0], cots[1]), _equal(cots[0].w_q, 0), _equal(cots[0].w_k, 0)),
             {"num_heads": 2}),
)


def _x(shape, dtype=jnp.float32):
    return jnp.ones(shape, dtype)


_P8 = AttentionParams(*(jnp.ones((8, 8)),) * 4, jnp.zeros(8))
ERROR_CASES = (
    ErrorCase("x of rank 2", lambda: (_P8, _x((5, 8))), ValueError,
              r"attention: x must have exactly 3 dimension\(s\); got shape=\(5, 8\).*\(batch, sequence, width\)",
              {"num_heads": 2}),
    ErrorCase("heads do not divide the width", lambda: (_P8, _x((2, 5, 8))), ValueError,
              r"attention: num_heads=3 must divide the width D=8; got x shape=\(2, 5, 8\).*"
              r"among 1, 2, 4, 8", {"num_heads": 3}),
    ErrorCase("w_k of the wrong shape", lambda: (_P8._replace(w_k=jnp.ones((8, 4))), _x((2, 5, 8))), ValueError,
              r"attention: params.w_k must have shape \(8, 8\) to match the width D=8.*got w_k shape=\(8, 4\).*"
              r"Its 4 columns make 1 K/V heads of size 4: pass num_kv_heads=1",
              {"num_heads": 2}),
    ErrorCase("b_o of the wrong size", lambda: (_P8._replace(b_o=jnp.ones(4)), _x((2, 5, 8))), ValueError,
              r"attention: params.b_o must have shape \(8,\)", {"num_heads": 2}),
    ErrorCase("integer x", lambda: (_P8, _x((2, 5, 8), jnp.int32)), TypeError,
              r"attention: x must be a floating-point array", {"num_heads": 2}),
    ErrorCase("float mask", lambda: (_P8, _x((2, 5, 8))), TypeError,
              r"attention: mask must be a boolean array \(True = may attend\) or None; got shape=\(5, 5\) dtype=float",
              {"num_heads": 2, "mask": jnp.ones((5, 5))}),
    ErrorCase("mask of the wrong length", lambda: (_P8, _x((2, 5, 8))), ValueError,
              r"attention: mask must broadcast to \(N, num_heads, T, S\) = \(2, 2, 5, 5\).*got mask shape=\(4, 4\)",
              {"num_heads": 2, "mask": jnp.ones((4, 4), bool)}),
    ErrorCase("num_heads = 0", lambda: (_P8, _x((2, 5, 8))), ValueError,
              r"attention: num_heads must be a positive Python int; got num_heads=0", {"num_heads": 0}),
    ErrorCase("causal is a string", lambda: (_P8, _x((2, 5, 8))), TypeError,
              r"attention: causal must be True or False; got causal='yes'", {"num_heads": 2, "causal": "yes"}),
)


# mutants: the true bwd, step by step, with one step swapped for a classic mistake ------------------------
# The per-head steps are the untiled path's (_attention_untiled.untiled_backward); on a tiled sample the
# harness runs ``tiled`` (the true loops unless a mutant brings its own), so it is right on every sample.
def _right_steps():
    sqrt_d = lambda n: math.sqrt(n["q"].shape[-1])
    return dict(
        allowed=lambda n: allowed(n["q"].shape[2], n["k"].shape[2], n["s"].causal, n["mask"]),
        keep=lambda n: block_keep(n["key"], *UNTILED, n["s"].dropout_rate, n["p"].shape),
        v_bar=lambda n: jnp.einsum("nhij,nhie->nhje", dropped(n["p"], n["keep"], n["s"].dropout_rate), n["o_bar"]),
        p_bar=lambda n: dropped(jnp.einsum("nhie,nhje->nhij", n["o_bar"], n["v"]), n["keep"], n["s"].dropout_rate),
        s_bar=lambda n: n["p"] * (n["p_bar"] - jnp.sum(n["p_bar"] * n["p"], axis=-1, keepdims=True)),
        q_bar=lambda n: jnp.einsum("nhij,nhje->nhie", n["s_bar"], n["k"]) / sqrt_d(n),
        k_bar=lambda n: jnp.einsum("nhij,nhie->nhje", n["s_bar"], n["q"]) / sqrt_d(n),
        group_sum=group_sum,
    )


def _untiled_steps(steps, n):
    """q_bar, k_bar, v_bar of the shared heads, the Backward lines one step at a time."""
    n["p"] = jnp.exp(scores(n["q"], n["k"], steps["allowed"](n)) - n["m"] - n["lse"])
    n["keep"] = steps["keep"](n)
    n["p_bar"] = steps["p_bar"](n)
    n["s_bar"] = steps["s_bar"](n)
    return steps["q_bar"](n), steps["k_bar"](n), steps["v_bar"](n)


def _mutant(name, tiled=tiled_backward, edit=None, **wrong):
    """The true rule (``_attention._backward`` around the harness's per-head steps), with the ``wrong``
    steps swapped in, ``tiled`` loops on tiled samples, and ``edit(cotangents, y_bar)`` applied last."""
    steps = {**_right_steps(), **wrong}

    def heads_backward(q, k, v, o, m, lse, o_bar, mask, key, settings):
        g = settings.group
        n = dict(q=q, k=share(k, g), v=share(v, g), m=m, lse=lse, o_bar=o_bar, mask=mask, key=key, s=settings)
        block = _block(max(q.shape[2], k.shape[2]), settings.block_size)
        shares = _untiled_steps(steps, n) if block is None else tiled(
            q, n["k"], n["v"], o, m, lse, o_bar, settings.causal, mask, key, settings.dropout_rate, block=block)
        return shares[0], steps["group_sum"](shares[1], g), steps["group_sum"](shares[2], g)

    def bwd(res, y_bar, *, num_heads, num_kv_heads=None, causal=False, mask=None, block_size=None, dropout_rate=0.0):
        settings = Settings(num_heads, num_kv_heads, causal, block_size, dropout_rate)
        cotangents = _backward(res, y_bar, settings, heads_backward)
        return cotangents if edit is None else edit(cotangents, y_bar)

    return Mutant(name, bwd)


def _b_o_bar_mean(cotangents, y_bar):
    params_bar, *rest = cotangents
    return (params_bar._replace(b_o=y_bar.mean((0, 1)).astype(params_bar.b_o.dtype)), *rest)


MUTANTS = (
    _mutant("s_bar without the rowsum term", s_bar=lambda n: n["p"] * n["p_bar"]),
    _mutant("q_bar missing 1/sqrt(d)", q_bar=lambda n: jnp.einsum("nhij,nhje->nhie", n["s_bar"], n["k"])),
    _mutant("v_bar = p @ o_bar instead of p.T @ o_bar",
            v_bar=lambda n: jnp.einsum("nhij,nhje->nhie", n["p"], n["o_bar"])),
    _mutant("sign flip in k_bar", k_bar=lambda n: -_right_steps()["k_bar"](n)),
    _mutant("mask forgotten when recomputing p", allowed=lambda n: None),
    _mutant("b_o_bar: mean instead of sum", edit=_b_o_bar_mean),
)

ATTENTION = LayerInfo(
    attention, _sample_args, SHAPES,
    hypers=({"num_heads": 1}, {"num_heads": 2}, {"num_heads": 2, "causal": True},
            {"num_heads": 2, "mask": _MASK}, {"num_heads": 2, "causal": True, "mask": _HEAD_MASK}),
    value_kinds=("wide", "ties"),
    edge_cases=EDGE_CASES, error_cases=ERROR_CASES, mutants=MUTANTS + JVP_MUTANTS,
    bench_shape=(2, 512, 64), bench_hyper={"num_heads": 4, "causal": True},
    notes="value kind 'extreme' left out: with |x| ~ 1e4 the scores reach ~1e7 and a row that is not "
          "saturated makes w_q_bar, w_k_bar ill-conditioned; against a 60-digit reference both autodiff and "
          "the hand rule are off by ~1e-8 relative, beyond float64's 1e-10 (saturated rows: edge case). At the "
          "saturated edge case the exact zeros of w_q_bar, w_k_bar hold op by op; under jit on CPU XLA rounds "
          "fused code differently and both rules give small nonzeros there (max 3.4e-4 hand, 4.2e-5 autodiff).",
)

ENTRIES = (ATTENTION,)
