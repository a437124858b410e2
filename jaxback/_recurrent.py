"""Shared by the recurrent layers (lstm, gru): dtype promotion, the states entering each step, and
the gate slopes written from saved outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["promote", "states_before", "sigmoid_slope", "tanh_slope"]


def promote(*trees):
    """Every array in ``trees`` cast to their common float dtype (the scan carry needs one dtype)."""
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(trees))
    return tuple(jax.tree_util.tree_map(lambda a: a.astype(dtype), tree) for tree in trees)


def states_before(first, rest):
    """``[first, rest[0], .., rest[T-2]]``: the states entering each step, (T, N, H)."""
    return jnp.concatenate([first[None], rest])[:-1]


def sigmoid_slope(s):
    """sigmoid'(z) from the saved output ``s = sigmoid(z)``."""
    return s * (1 - s)


def tanh_slope(t):
    """tanh'(z) from the saved output ``t = tanh(z)``, as (1 - t)(1 + t), not 1 - t*t: exact for
    saturated t (see _activations.py)."""
    return (1 - t) * (1 + t)
