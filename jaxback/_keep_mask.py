"""Dropout's keep mask, shared by ``dropout`` and attention's dropout on P.

The mask is drawn from a PRNG key (True with probability ``1 - rate``) and applied with inverted
scaling, ``where(keep, v / (1 - rate), 0)``, on the forward's values and on the backward's
cotangents alike. It depends on ``(key, rate, shape)`` only, not on any dtype, so a rule regenerates
in its backward the very bits of its forward from the key it saved (2 uint32 words), never the mask.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._validate import describe, require_real

__all__ = ["keep_mask", "mask_and_scale", "require_rate", "require_key"]


def keep_mask(key, rate, shape):
    """True with probability ``1 - rate``; depends on (key, rate, shape) only."""
    return jax.random.bernoulli(key, 1.0 - float(rate), shape)


def mask_and_scale(v, keep, rate):
    """``where(keep, v / (1 - rate), 0)``: the forward on values, the backward on cotangents."""
    # float(): a numpy scalar rate would be strongly typed and promote a bfloat16 v to float32
    return jnp.where(keep, v / (1.0 - float(rate)), jnp.zeros_like(v))


def require_rate(layer: str, arg: str, rate) -> None:
    """A drop probability: a Python real number in [0, 1)."""
    require_real(layer, arg, rate, hint=", passed by keyword")
    if not 0.0 <= rate < 1.0:  # also refuses nan
        raise ValueError(
            f"{layer}: {arg} (the probability of dropping an entry) must be in [0, 1); got {arg}={rate!r}. "
            f"{arg}=1 would drop everything and divide by 1 - {arg} = 0."
        )


def require_key(layer: str, arg: str, key) -> None:
    """One PRNG key: a typed ``jax.random.key(seed)`` (a scalar) or a raw ``PRNGKey(seed)`` (uint32[2])."""
    typed = jax.dtypes.issubdtype(jnp.result_type(key), jax.dtypes.prng_key)
    if (jnp.ndim(key) != 0) if typed else (jnp.result_type(key) != jnp.uint32 or jnp.ndim(key) != 1):
        raise ValueError(
            f"{layer}: {arg} must be one PRNG key, jax.random.key(seed) or jax.random.PRNGKey(seed); got {arg} "
            f"{describe(key)}. To drop differently per example, split keys and vmap."
        )
