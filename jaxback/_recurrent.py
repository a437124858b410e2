"""Shared by the recurrent layers (lstm, gru): dtype promotion, the states entering each step, and
the gate slopes written from saved outputs, and the batch-first layout (``batch_first=True``: xs and
hs are (N, T, .), transposed to time-major around the scan, as PyTorch's and flax's flag), for the
forward, the backward and the forward-mode rule (``sequence_jvp``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._validate import require_bool, require_rank

__all__ = ["promote", "states_before", "sigmoid_slope", "tanh_slope", "swap_time_batch", "time_major",
           "sequence_jvp"]


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


def swap_time_batch(a, batch_first: bool):
    """(N, T, ...) <-> (T, N, ...) when ``batch_first``; ``a`` unchanged otherwise (its own inverse)."""
    return jnp.swapaxes(a, 0, 1) if batch_first else a


def time_major(name: str, xs, batch_first):
    """``xs`` as (T, N, D), after checking the flag and the rank against the layout it names."""
    require_bool(name, "batch_first", batch_first)
    layout = "batch-first (N, T, D)" if batch_first else "time-major (T, N, D); batch_first=True takes (N, T, D)"
    require_rank(name, "xs", xs, 3, hint=f"Expected {layout}.")
    return swap_time_batch(xs, batch_first)


def sequence_jvp(name, tangent_run, primals, tangents, batch_first):
    """A recurrent layer's hand JVP: ``tangent_run(primals, tangents) -> ((hs, final), (hs_dot,
    final_dot))``, time-major, with xs and its tangent swapped in and hs and its tangent swapped out
    when ``batch_first`` (the same swap for both: a transpose is linear)."""
    (params, xs, state), (params_dot, xs_dot, state_dot) = primals, tangents
    xs, xs_dot = time_major(name, xs, batch_first), swap_time_batch(xs_dot, batch_first)
    (hs, final), (hs_dot, final_dot) = tangent_run((params, xs, state), (params_dot, xs_dot, state_dot))
    return (swap_time_batch(hs, batch_first), final), (swap_time_batch(hs_dot, batch_first), final_dot)
