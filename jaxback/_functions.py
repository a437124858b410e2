"""Numerically stable elementwise functions shared by several layers (activations and losses)."""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["softplus"]


def softplus(x):
    """``softplus(x) = log(1 + exp(x))``, as ``max(x, 0) + log1p(exp(-|x|))`` (no overflow).

    NOTE: both kinks (max and |x|) are written with the same ``x >= 0`` branch, so autodiff of this
    smooth function gets sigmoid(0) = 1/2 at 0; ``jnp.maximum`` and ``jnp.abs`` would give 0 there.
    """
    nonneg = x >= 0
    return jnp.where(nonneg, x, jnp.zeros_like(x)) + jnp.log1p(jnp.exp(jnp.where(nonneg, -x, x)))
