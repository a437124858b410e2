"""max_pool2d, avg_pool2d and flatten on NHWC inputs.

Shapes first. ``x``: (N, H, W, C); a ``window`` (kh, kw) slides with a ``stride`` (sh, sw) over x
padded by ``pads = ((top, bottom), (left, right))``, giving ``y``: (N, H', W', C) with
``H' = (H + top + bottom - kh) // sh + 1``. Channels and examples never mix.

A window is a list of strided slices. For each offset (a, c) in the window (row-major order,
``K = kh * kw`` of them), ``xs_ac = xp[:, a : a + sh*(H'-1) + 1 : sh, c : ... : sw, :]`` is an
(N, H', W', C) array holding entry (a, c) of every window; ``xp`` is x padded with ``-inf`` (max) or
``0`` (avg). Then

  Forward   max_pool2d:  y = max over (a, c) of xs_ac
            avg_pool2d:  y = (sum over (a, c) of xs_ac) / K

Chain rule. Slicing is linear, and its transpose *places* an (N, H', W', C) array back at the strided
positions of a zero (N, Hp, Wp, C) array (``place`` below, a ``lax.pad`` with interior padding
sh - 1). Every entry of x lies in several windows when the stride is smaller than the window, so
its gradient is the *sum* of the placed pieces (overlapping windows accumulate). Cropping the padding
off transposes the padding. With ``y_bar = dL/dy``: (N, H', W', C):

* avg: dy/dxs_ac = 1/K for every offset, so every entry of a window gets y_bar / K:

      x_bar = crop(sum over (a, c) of place(y_bar / K, a, c))

* max: dy/dxs_ac = 1 for the offset that holds the maximum and 0 for the others, so

      choice = index of the first maximum in each window                 (N, H', W', C) ints
      x_bar  = crop(sum over k = (a, c) of place(where(choice == k, y_bar, 0), a, c))

* flatten: y = x.reshape(N, -1) only renumbers the entries, so x_bar = y_bar.reshape(x.shape).

Forward mode. Move x along a tangent x_dot. A window's maximum is one of its entries, so to first
order y moves with the entry that holds it: find it by reducing each window over (x, position)
pairs, keeping the pair with the larger x, and read x_dot there. avg_pool2d and flatten are linear
in x, so their tangent is the layer applied to x_dot:

  Tangent   x_dot: (N, H, W, C)
            max:      at    = reduce over the window of the pairs (xs_ac, position_ac), from (-inf, -1),
                              with (k, p), (k', p') -> (k, p) if k >= k' else (k', p')     (N, H', W', C)
                      y_dot = x_dot[at] (0 where at = -1: padding, or a maximum of -inf)   (N, H', W', C)
            avg:      y_dot = (sum over (a, c) of xs_dot_ac) / K                               (N, H', W', C)
            flatten:  y_dot = x_dot.reshape(N, -1)

NOTE (max ties): when several entries of a window share the maximum, the whole gradient goes to the
*first* one in row-major window order (top row first, left to right), as JAX's autodiff of
``lax.reduce_window(x, -inf, lax.max, ...)`` does on CPU (XLA's select-and-scatter with ``>=``,
checked in tests/test_conv.py). We find it the same way: walk the offsets in order and keep the
current choice unless a later entry is *not* ``<=`` it (``~(best >= xs)``). Without NaN that is the
first maximum; with a NaN it reproduces XLA's choice as well. Padding entries take part as ``-inf``:
in a window whose real entries are all -inf, the gradient may go to the padding and is dropped,
again as autodiff does. Each padding must be smaller than the window, so every window holds a real
entry.
NOTE (max ties, forward mode): the jvp's (x, position) reduction compares as autodiff's forward mode
does (on CPU JAX lowers select_and_gather_add to a reduce_window over (x, x_dot) pairs), so its ties
are autodiff's forward ones, in an order XLA picks: on CPU (jax 0.10.2, measured) row-major, the
bwd's first maximum, except where padding adds an output column: 2x2 windows column by column
(x = [[0, 1, 0], [1, 0, 0]], padding ((0, 0), (0, 1)): entry (1, 0), where the bwd takes (0, 1)).
A window whose maximum is -inf gets tangent 0; the bwd sends its cotangent to the first entry.
NOTE (avg padding): avg_pool2d always divides by the full window size K; padded zeros count as
entries (PyTorch's ``count_include_pad=True``, flax's default), so with "SAME" padding a border
output is the sum of its real entries over K.
Residuals: max_pool2d saves ``x`` only (autodiff saves x as well); avg_pool2d and flatten save
nothing but x's static shape and dtype (a ``_Like`` record with no array leaves: zero bytes).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._layer import Like as _Like, make_layer
from ._validate import require_float, require_rank
from ._windows import explicit_padding, pair

__all__ = ["max_pool2d", "avg_pool2d", "flatten"]


def _check(name, x, window, stride, padding):
    """Validate x and the hyperparameters; return ``_geometry``'s ``(k, s, pads)``."""
    require_float(name, "x", x)
    require_rank(name, "x", x, 4, hint="Expected NHWC: (N, H, W, C).")
    return _geometry(name, x.shape, window, stride, padding)


def _geometry(name, shape, window, stride, padding):
    """``(k, s, pads)``: window, stride and ``((top, bottom), (left, right))`` for an input shape."""
    k, s = pair(name, "window", window), pair(name, "stride", stride)
    pads = explicit_padding(name, padding, shape[1:3], k, s)
    if any(p >= ki for (lo, hi), ki in zip(pads, k) for p in (lo, hi)):
        raise ValueError(f"{name}: each padding must be smaller than the window {k} (else a window holds no "
                         f"input); got padding={pads}.")
    if any(h + lo + hi < ki for h, (lo, hi), ki in zip(shape[1:3], pads, k)):
        raise ValueError(f"{name}: the window {k} is larger than the padded input (x shape={tuple(shape)}, "
                         f"padding={pads}).")
    return k, s, pads


def _offsets(k):
    return [(a, c) for a in range(k[0]) for c in range(k[1])]  # row-major: the tie order


def _pad(x, value, pads):
    return lax.pad(x, jnp.asarray(value, x.dtype), ((0, 0, 0), *((lo, hi, 0) for lo, hi in pads), (0, 0, 0)))


def _slice(xp, a, c, s, out_hw):
    """Entry (a, c) of every window: (N, H', W', C)."""
    end = (a + s[0] * (out_hw[0] - 1) + 1, c + s[1] * (out_hw[1] - 1) + 1)
    return lax.slice(xp, (0, a, c, 0), (xp.shape[0], *end, xp.shape[3]), (1, *s, 1))


def _place(part, a, c, s, padded_hw):
    """The transpose of ``_slice``: ``part`` at the strided positions of a zero (N, Hp, Wp, C) array."""
    config = [(0, 0, 0), (0, 0, 0), (0, 0, 0), (0, 0, 0)]
    for axis, off, si, size in ((1, a, s[0], padded_hw[0]), (2, c, s[1], padded_hw[1])):
        config[axis] = (off, size - off - si * (part.shape[axis] - 1) - 1, si - 1)
    return lax.pad(part, jnp.zeros((), part.dtype), config)


def _unpool(parts, k, s, pads, like):
    """``crop(sum_k place(parts[k], offset k))``: the transpose of taking all K slices."""
    hw = like.shape[1:3]
    padded_hw = tuple(h + lo + hi for h, (lo, hi) in zip(hw, pads))
    x_bar_p = sum(_place(p, a, c, s, padded_hw) for p, (a, c) in zip(parts, _offsets(k)))
    (top, _), (left, _) = pads
    x_bar = lax.slice(x_bar_p, (0, top, left, 0), (like.shape[0], top + hw[0], left + hw[1], like.shape[3]))
    return x_bar.astype(like.dtype)


def _first_max(slices):
    """Per window, the offset index XLA's select-and-scatter picks (see NOTE on ties)."""
    best, choice = slices[0], jnp.zeros(slices[0].shape, jnp.int32)
    for i, xs in enumerate(slices[1:], start=1):
        beaten = ~(best >= xs)  # not "best < xs": a NaN candidate wins, as in XLA
        best, choice = jnp.where(beaten, xs, best), jnp.where(beaten, i, choice)
    return choice


def _larger(a, b):
    """Of two (key, position) pairs the one with the larger key, ``a`` on a tie (NOTE on ties)."""
    (key_a, at_a), (key_b, at_b) = a, b
    keep = key_a >= key_b
    return jnp.where(keep, key_a, key_b), jnp.where(keep, at_a, at_b)


def _winners(x, k, s, pads):
    """Per window, the flat position (row * W + column) in x of its maximum as autodiff's forward
    mode picks it: a max-reduction of (x, position) pairs; -1 where the maximum is -inf."""
    n, h, w, c = x.shape
    position = jnp.broadcast_to(jnp.arange(h * w, dtype=jnp.int32).reshape(1, h, w, 1), x.shape)
    init = (np.asarray(-np.inf, x.dtype), np.asarray(-1, np.int32))  # the padding: key -inf, no position
    return _reduce((x, position), init, _larger, k, s, pads)[1]


def _jit_hyper(rule):
    """A bwd or jvp compiled as one program (hyperparameters static): run eagerly, its K slices, wheres
    and pads would each dispatch (and compile) on their own, ~10x slower. Inlined under an outer jit."""
    return jax.jit(rule, static_argnames=("window", "stride", "padding"))


def _reduce(x, init: float, op, k, s, pads):
    # A Python scalar init: JAX then recognises the monoid (reduce_window_max/sum), which autodiff
    # knows; a traced init under jit would give the generic reduce_window, which it cannot linearize.
    return lax.reduce_window(x, init, op, (1, *k, 1), (1, *s, 1), ((0, 0), *pads, (0, 0)))


# max_pool2d ---------------------------------------------------------------------------------------------
def max_pool2d_auto(x: jax.Array, *, window: int | tuple[int, int] = 2, stride: int | tuple[int, int] = 2,
                    padding: str | int | tuple = "VALID") -> jax.Array:
    """Max over each window; x: (N, H, W, C) -> y: (N, H', W', C)."""
    k, s, pads = _check("max_pool2d", x, window, stride, padding)
    return _reduce(x, -math.inf, lax.max, k, s, pads)


def max_pool2d_fwd(x, *, window=2, stride=2, padding="VALID"):
    return max_pool2d_auto(x, window=window, stride=stride, padding=padding), x


def max_pool2d_bwd(res, y_bar, *, window=2, stride=2, padding="VALID"):
    x = res
    k, s, pads = _geometry("max_pool2d", x.shape, window, stride, padding)
    xp = _pad(x, -jnp.inf, pads)
    choice = _first_max([_slice(xp, a, c, s, y_bar.shape[1:3]) for a, c in _offsets(k)])
    parts = [jnp.where(choice == i, y_bar, jnp.zeros_like(y_bar)) for i in range(k[0] * k[1])]
    return (_unpool(parts, k, s, pads, x),)


def max_pool2d_jvp(primals, tangents, *, window=2, stride=2, padding="VALID"):
    (x,), (x_dot,) = primals, tangents
    k, s, pads = _check("max_pool2d", x, window, stride, padding)
    y, at = _reduce(x, -math.inf, lax.max, k, s, pads), _winners(x, k, s, pads)  # (N, H', W', C) each
    n, h, w, c = x.shape
    spots = jnp.maximum(at, 0).reshape(n, math.prod(y.shape[1:3]), c)
    picked = jnp.take_along_axis(x_dot.reshape(n, h * w, c), spots, axis=1).reshape(y.shape)
    return y, jnp.where(at >= 0, picked, 0)  # a gather: linear in x_dot, and JAX can transpose it


max_pool2d = make_layer(max_pool2d_auto, max_pool2d_fwd, _jit_hyper(max_pool2d_bwd), name="max_pool2d",
                        jvp=_jit_hyper(max_pool2d_jvp))


# avg_pool2d ---------------------------------------------------------------------------------------------
def avg_pool2d_auto(x: jax.Array, *, window: int | tuple[int, int] = 2, stride: int | tuple[int, int] = 2,
                    padding: str | int | tuple = "VALID") -> jax.Array:
    """Mean over each window, padding counted as zeros; x: (N, H, W, C) -> y: (N, H', W', C)."""
    k, s, pads = _check("avg_pool2d", x, window, stride, padding)
    return _average(x, k, s, pads)


def _average(x, k, s, pads):
    return _reduce(x, 0.0, lax.add, k, s, pads) / (k[0] * k[1])


def avg_pool2d_fwd(x, *, window=2, stride=2, padding="VALID"):
    return avg_pool2d_auto(x, window=window, stride=stride, padding=padding), _Like(x.shape, x.dtype)


def avg_pool2d_bwd(res, y_bar, *, window=2, stride=2, padding="VALID"):
    like = res
    k, s, pads = _geometry("avg_pool2d", like.shape, window, stride, padding)
    share = y_bar / (k[0] * k[1])  # every entry of a window gets 1/K of its gradient
    return (_unpool([share] * (k[0] * k[1]), k, s, pads, like),)


def avg_pool2d_jvp(primals, tangents, *, window=2, stride=2, padding="VALID"):
    (x,), (x_dot,) = primals, tangents
    k, s, pads = _check("avg_pool2d", x, window, stride, padding)
    return _average(x, k, s, pads), _average(x_dot, k, s, pads)  # linear: the layer applied to x_dot


avg_pool2d = make_layer(avg_pool2d_auto, avg_pool2d_fwd, _jit_hyper(avg_pool2d_bwd), name="avg_pool2d",
                        jvp=_jit_hyper(avg_pool2d_jvp))


# flatten ------------------------------------------------------------------------------------------------
def flatten_auto(x: jax.Array) -> jax.Array:
    """(N, ...) -> (N, prod(...)), row-major (C order)."""
    require_float("flatten", "x", x)
    require_rank("flatten", "x", x, 1, at_least=True, hint="Expected (N, ...).")
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


def flatten_fwd(x):
    return flatten_auto(x), _Like(x.shape, x.dtype)


def flatten_bwd(res, y_bar):
    like = res
    return (y_bar.reshape(like.shape).astype(like.dtype),)


def flatten_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    y = flatten_auto(x)
    return y, x_dot.reshape(y.shape)


flatten = make_layer(flatten_auto, flatten_fwd, flatten_bwd, name="flatten", jvp=flatten_jvp)
