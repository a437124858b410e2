"""linear: the seed layer, ``y = x @ w + b``.

Shapes first. ``x`` may carry any number of leading batch dimensions; flatten them into one,
``N = prod(x.shape[:-1])``, so the layer is a single matrix product:

  Forward   x: (N, n), w: (n, m), b: (m,)     y = x @ w + b          y: (N, m)
            y[i, j] = sum_k x[i, k] * w[k, j] + b[j]

Chain rule. Let ``y_bar = dL/dy`` (N, m) be the gradient arriving from above. Every input reaches
the loss only through ``y``, so for any input entry ``u``: dL/du = sum_ij y_bar[i, j] * dy[i, j]/du.

* ``dy[i, j]/dx[i, k] = w[k, j]``, so dL/dx[i, k] = sum_j y_bar[i, j] * w[k, j]   -> y_bar @ w.T
* ``dy[i, j]/dw[k, j] = x[i, k]``, so dL/dw[k, j] = sum_i x[i, k] * y_bar[i, j]   -> x.T @ y_bar
* ``dy[i, j]/db[j]    = 1``,       so dL/db[j]    = sum_i y_bar[i, j]              -> y_bar.sum(0)

The sum over ``i`` in ``w_bar`` is the sum over the batch: one (n, N)(N, m) matrix product, never the
N x n x m stack of per-example outer products.

  Backward  y_bar = dL/dy: (N, m)
            x_bar = y_bar @ w.T               (N, m)(m, n) -> (N, n)
            w_bar = x.T @ y_bar               (n, N)(N, m) -> (n, m)
            b_bar = y_bar.sum(0)              (m,)

Forward mode. Perturb every input along a tangent (``x_dot``, ``w_dot``, ``b_dot``, same shapes as
``x``, ``w``, ``b``); y changes to first order by the product rule, one term per input:

  Tangent   x_dot: (N, n), w_dot: (n, m), b_dot: (m,)
            y_dot = x_dot @ w + x @ w_dot + b_dot    (N, n)(n, m) + (N, n)(n, m) + (m,) -> (N, m)

Each cotangent is cast to its primal's dtype (a bfloat16 ``x`` into a float32 layer gets a bfloat16
``x_bar``). Residuals: ``w`` and ``x`` (inputs, held by reference) and a 0-byte token of ``b``'s
dtype; ``y`` is not needed.
NOTE (sharding): under a mesh with explicit axes (``jax.make_mesh``'s default) w_bar = x.T @ y_bar
sums over a sharded batch, so its sharding is ambiguous to JAX: it is given w's own
(``_sharding.cotangent_sharding``; ``None`` without such a mesh, the same program as before).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._init import lecun_normal
from ._layer import dtype_token, make_layer
from ._sharding import cotangent_sharding
from ._validate import describe, require_float, require_rank

__all__ = ["LinearParams", "linear"]

NAME = "linear"


class LinearParams(NamedTuple):
    """``w``: (in, out) weights, ``b``: (out,) bias."""

    w: jax.Array
    b: jax.Array


def linear_init(key, in_features: int, out_features: int, dtype=jnp.float32) -> LinearParams:
    """LeCun normal (``_init.lecun_normal``): ``w ~ N(0, 1/in_features)``, ``b = 0``."""
    w = lecun_normal(key, (in_features, out_features), in_features, dtype)
    return LinearParams(w=w, b=jnp.zeros((out_features,), dtype))


def linear_infer(key, x, out_features: int):
    """For a model: ``(params, None)`` with ``in_features = x.shape[-1]``, in ``x``'s dtype."""
    return linear_init(key, x.shape[-1], out_features, x.dtype), None


def _check(params, x) -> None:
    require_float(NAME, "x", x)
    require_float(NAME, "params.w", params.w)
    require_float(NAME, "params.b", params.b)
    require_rank(NAME, "params.w", params.w, 2, hint="Expected (in_features, out_features).")
    require_rank(NAME, "x", x, 1, at_least=True)
    n, m = params.w.shape
    if x.shape[-1] != n:
        raise ValueError(
            f"{NAME}: x.shape[-1] must equal w.shape[0]; got x {describe(x)}, "
            f"w {describe(params.w)}. Did you transpose w?"
        )
    if params.b.shape != (m,):
        raise ValueError(
            f"{NAME}: b must have shape (w.shape[1],) = ({m},); got b {describe(params.b)}."
        )


def linear_auto(params: LinearParams, x: jax.Array) -> jax.Array:
    """``y = x @ w + b``; x: (..., in) -> y: (..., out)."""
    _check(params, x)
    return x @ params.w + params.b


def linear_fwd(params: LinearParams, x):
    return linear_auto(params, x), (params.w, dtype_token(params.b), x)


def linear_bwd(res, y_bar):
    w, b_dtype, x = res
    n, m = w.shape
    x_flat = x.reshape(math.prod(x.shape[:-1]), n)          # (N, n)
    y_bar_flat = y_bar.reshape(math.prod(y_bar.shape[:-1]), m)  # (N, m)
    x_bar = (y_bar @ w.T).astype(x.dtype)                    # (..., m)(m, n) -> (..., n)
    w_bar = jnp.matmul(x_flat.T, y_bar_flat, out_sharding=cotangent_sharding(w)).astype(w.dtype)  # (n, N)(N, m)
    b_bar = y_bar_flat.sum(0).astype(b_dtype.dtype)          # (m,)
    return LinearParams(w_bar, b_bar), x_bar


def linear_jvp(primals, tangents):
    (params, x), (params_dot, x_dot) = primals, tangents
    y = linear_auto(params, x)
    y_dot = x_dot @ params.w + x @ params_dot.w + params_dot.b   # (..., n)(n, m) twice, + (m,)
    return y, y_dot.astype(y.dtype)


linear = make_layer(linear_auto, linear_fwd, linear_bwd, name=NAME, init=linear_init, infer=linear_infer,
                    jvp=linear_jvp)
