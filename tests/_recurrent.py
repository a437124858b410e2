"""Helpers the lstm and gru tests share: sample arguments, a VJP, a tree comparison."""

import jax
import jax.numpy as jnp
import numpy as np


def sample(sample_args, shape=(4, 2, 3), dtype=jnp.float64, seed=0, kind="normal"):
    """The registry entry's sample arguments ``(params, xs, state)`` at ``shape`` (T, N, D)."""
    return sample_args(np.random.default_rng(seed), dtype, shape, kind)


def vjp(fn, args, y_bar):
    return jax.vjp(fn, *args)[1](y_bar)


def assert_trees_close(a, b, rtol=1e-10):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol)
