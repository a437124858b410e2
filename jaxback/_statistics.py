"""Normalisation statistics shared by layer_norm, rms_norm and batch_norm (see ``_norm``'s NOTEs).

Shifted two-pass moments in at least float32 with overflow-free squares, the centred input
gradient ``rstd * (g - mean(g) - x_hat * mean(g * x_hat))`` (and, the Jacobian being symmetric, the same map
of a tangent: ``centered_tangent``) and the checks of affine parameters.
``axes`` are the axes a statistic runs along: the last for the norms of a row, all but the last for
batch norm's channels.
"""

from __future__ import annotations

import functools

import jax.numpy as jnp
from jax import lax

from ._validate import describe, require_float, require_rank, require_real

__all__ = [
    "check_affine", "compute_dtype", "first_entries", "centered", "mean_square_and_rstd", "moments", "centered_x_bar",
    "centered_tangent", "sum_rows",
]


# checks ---------------------------------------------------------------------------------------------
def check_affine(layer: str, params, x, eps, params_type) -> None:
    """params a ``params_type`` of floating (D,) arrays; x: (..., D) floating, D >= 1; eps > 0."""
    if getattr(params, "_fields", None) != params_type._fields:
        raise TypeError(f"{layer}: params must be a {params_type.__name__}{params_type._fields}; got "
                        f"{type(params).__name__}. Build it with {layer}.init(key, num_features).")
    require_float(layer, "x", x)
    require_rank(layer, "x", x, 1, at_least=True)
    if x.shape[-1] < 1:
        raise ValueError(f"{layer}: x.shape[-1] must be >= 1; got x {describe(x)}.")
    for field, value in params._asdict().items():
        require_float(layer, f"params.{field}", value)
        if jnp.shape(value) != (x.shape[-1],):
            raise ValueError(f"{layer}: params.{field} must have shape (x.shape[-1],) = ({x.shape[-1]},); "
                             f"got params.{field} {describe(value)}, x {describe(x)}.")
    require_real(layer, "eps", eps, lambda v: v > 0, "> 0 (it keeps 1/sqrt(var + eps) finite)")


# maths ----------------------------------------------------------------------------------------------
def compute_dtype(*arrays):
    """At least float32: statistics of bfloat16/float16 data are accumulated in float32."""
    return jnp.promote_types(jnp.result_type(*arrays), jnp.float32)


def first_entries(x, axes):
    """x's first entry along ``axes`` (keepdims): the shift x0, a constant (no gradient)."""
    return lax.stop_gradient(x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))])


def centered(x, mu, axes):
    """``(x - x0) - mu`` = x - mean(x), with mu = mean(x - x0) (see NOTE on stability)."""
    return (x - first_entries(x, axes)) - mu


def mean_square_and_rstd(xc, bound, eps, axes):
    """``(mean(xc**2), 1/sqrt(mean(xc**2) + eps))`` along ``axes``, squaring xc * p (no overflow)."""
    p = 1 / jnp.maximum(lax.stop_gradient(bound), 1)
    ms_p = jnp.mean(jnp.square(xc * p), axes, keepdims=True)  # = mean(xc**2) * p**2
    return ms_p / p / p, p * lax.rsqrt(ms_p + eps * p * p)


def moments(x, eps, axes):
    """``(mu, var, rstd)`` along ``axes`` (keepdims): mean = x0 + mu, two-pass variance."""
    dev = x - first_entries(x, axes)
    mu = jnp.mean(dev, axes, keepdims=True)
    var, rstd = mean_square_and_rstd(dev - mu, jnp.max(jnp.abs(dev), axes, keepdims=True), eps, axes)
    return mu, var, rstd


def centered_x_bar(g, x_hat, rstd, axes):
    """``rstd * (g - mean(g) - x_hat * mean(g * x_hat))``, means along ``axes``."""
    mean = functools.partial(jnp.mean, axis=axes, keepdims=True)
    return rstd * (g - mean(g) - x_hat * mean(g * x_hat))


def centered_tangent(x_dot, x_hat, rstd, axes):
    """The tangent of x_hat = (x - mean(x)) * rstd along x_dot: ``J x_dot`` with the Jacobian
    J = rstd (I - 1/M - x_hat x_hat^T / M), which is symmetric, so J x_dot = J^T x_dot: the map
    that ``centered_x_bar`` applies to a cotangent, applied to the tangent."""
    return centered_x_bar(x_dot, x_hat, rstd, axes)


def sum_rows(t, dtype):
    """Sum over every axis but the last (the gradient of a parameter shared by all rows)."""
    return t.sum(tuple(range(t.ndim - 1))).astype(dtype)
