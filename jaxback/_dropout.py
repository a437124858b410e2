"""dropout: zero each entry with probability ``rate`` and scale the survivors by 1 / (1 - rate).

Shapes first: ``x`` has any shape, ``key`` is one PRNG key, ``y`` has ``x``'s shape. The key draws a
boolean ``keep`` mask of ``x``'s shape, each entry True with probability ``1 - rate``. Dividing the
kept entries by ``1 - rate`` ("inverted" dropout) keeps the expectation unchanged,
E[y] = (1 - rate) * x / (1 - rate) = x, so at evaluation time the layer is simply the identity.

  Forward   x: (...), key     keep = bernoulli(key, 1 - rate, x.shape)        keep: (...) bool
            y = where(keep, x / (1 - rate), 0)                                y: (...)

Chain rule. For a fixed key the mask is a constant, and ``y[i]`` depends on ``x[i]`` alone, so the
Jacobian is diagonal: dy[i]/dx[i] = 1 / (1 - rate) where keep[i], else 0. Hence
dL/dx[i] = y_bar[i] * dy[i]/dx[i], the *same* masking-and-scaling applied to ``y_bar``:

  Backward  y_bar = dL/dy: (...)
            keep  = bernoulli(key, 1 - rate, y_bar.shape)      (regenerated from the key)
            x_bar = where(keep, y_bar / (1 - rate), 0)         (...)
            key_bar = None                                     (a key has no gradient)

Forward mode. For a fixed key y is linear in x, so the tangent gets the same masking and scaling,
with the same mask: the jvp draws it once, for y and y_dot together. The key has no tangent.

  Tangent   x_dot: (...)
            keep  = bernoulli(key, 1 - rate, x.shape)          (the forward's mask)
            y_dot = where(keep, x_dot / (1 - rate), 0)         (...)

Residuals: the key alone (2 uint32 words), never the mask. Autodiff of ``auto`` saves the mask,
``x.size`` booleans (and, on jax 0.10.2, an x-sized float array besides); regenerating it costs one pass of the random-bit generator, elementwise work
like the scaling itself, and frees O(x.size) memory between forward and backward for every dropout
layer of a network. Same key, same shape, same rate: the same bits, so the regenerated mask is
exactly the forward's. ``rate == 0`` and ``training=False`` are the identity: no bits are drawn,
nothing is saved, and ``x_bar = y_bar``.

NOTE (mask): the mask depends only on ``(key, rate, x.shape)``, not on ``x``'s dtype, so float32 and
float64 runs drop the same entries. ``auto`` draws it with the same helper, so autodiff agrees.
NOTE (inf/nan): ``where`` (not ``x * keep``) makes a dropped entry exactly 0 even when ``x`` is inf
or NaN (inf * 0 would be NaN), and its gradient exactly 0 too.
NOTE (keys): raw ``jax.random.PRNGKey`` (uint32) keys and typed ``jax.random.key`` keys both work
and give the same mask for the same seed. Reusing a key reuses the mask: split keys per layer/step.
"""

from __future__ import annotations

import jax

from ._keep_mask import keep_mask, mask_and_scale, require_key, require_rate
from ._layer import make_layer
from ._validate import require_bool, require_float

__all__ = ["dropout"]

NAME = "dropout"


def _check(x, key, rate, training) -> None:
    require_float(NAME, "x", x)
    require_rate(NAME, "rate", rate)
    require_bool(NAME, "training", training)
    require_key(NAME, "key", key)


def _is_identity(rate, training) -> bool:
    return rate == 0 or not training


def dropout_auto(x: jax.Array, key: jax.Array, *, rate: float = 0.5, training: bool = True) -> jax.Array:
    """Inverted dropout: drop each entry of ``x`` with probability ``rate``; x: (...) -> y: (...)."""
    _check(x, key, rate, training)
    if _is_identity(rate, training):
        return x
    return mask_and_scale(x, keep_mask(key, rate, x.shape), rate)


def dropout_fwd(x, key, *, rate=0.5, training=True):
    y = dropout_auto(x, key, rate=rate, training=training)
    return y, (() if _is_identity(rate, training) else key)  # the key, not the mask


def dropout_bwd(res, y_bar, *, rate=0.5, training=True):
    key = res
    if _is_identity(rate, training):
        return y_bar, None
    keep = keep_mask(key, rate, y_bar.shape)  # regenerated: the same bits as the forward's
    x_bar = mask_and_scale(y_bar, keep, rate)  # y has x's dtype, so y_bar and x_bar do too
    return x_bar, None


def dropout_jvp(primals, tangents, *, rate=0.5, training=True):
    (x, key), (x_dot, _) = primals, tangents  # the key has no tangent
    _check(x, key, rate, training)
    if _is_identity(rate, training):
        return x, x_dot
    keep = keep_mask(key, rate, x.shape)  # one mask for y and y_dot
    return mask_and_scale(x, keep, rate), mask_and_scale(x_dot, keep, rate)


dropout = make_layer(dropout_auto, dropout_fwd, dropout_bwd, name=NAME, roles=("x", "key"), jvp=dropout_jvp)
