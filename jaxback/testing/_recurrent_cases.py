"""Registry cases shared by the recurrent layers (lstm, gru): the ``batch_first=True`` layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._registry import EdgeCase, ErrorCase

__all__ = ["batch_first_cases"]


def _swap(a):
    return jnp.swapaxes(a, 0, 1)


def batch_first_cases(layer, args, rank2_args):
    """``(edge_case, error_cases)`` for ``batch_first``: the layer on ``args(dtype)`` with xs swapped
    to (N, T, D) must give the time-major results swapped; a rank-2 xs (``rank2_args()``) and a
    non-bool flag are refused."""
    name = layer.name

    def swapped_args(dtype):
        params, xs, state = args(dtype)
        return params, _swap(xs), state

    def check(y, cotangents):
        dtype = jax.tree_util.tree_leaves(y)[0].dtype
        tol = max(1e-6, 8 * float(jnp.finfo(dtype).eps))
        params, xs, state = args(dtype)
        (hs, final), vjp = jax.vjp(layer, params, xs, state)
        params_bar, xs_bar, state_bar = vjp(jax.tree_util.tree_map(jnp.ones_like, (hs, final)))
        expected = ((_swap(hs), final), (params_bar, _swap(xs_bar), state_bar))
        for mine, ref in zip(jax.tree_util.tree_leaves((y, cotangents)), jax.tree_util.tree_leaves(expected),
                             strict=True):
            np.testing.assert_allclose(mine, ref, rtol=tol, atol=tol)

    edge = EdgeCase("batch_first=True: xs (N, T, D)", swapped_args,
                    "hs (N, T, H) and xs_bar (N, T, D) are the time-major ones swapped; the final state "
                    "and the other cotangents unchanged", check, hyper={"batch_first": True})
    errors = (
        ErrorCase("batch_first=True with xs of rank 2", rank2_args, ValueError,
                  rf"{name}: xs must have exactly 3 dimension\(s\).*batch-first \(N, T, D\)",
                  hyper={"batch_first": True}),
        ErrorCase("batch_first not a bool", lambda: args(jnp.float64), TypeError,
                  rf"{name}: batch_first must be True or False", hyper={"batch_first": 1}),
    )
    return edge, errors
