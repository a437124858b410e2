"""Registry cases shared by the recurrent layers (lstm, gru): the ``batch_first=True`` layout."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._registry import EdgeCase, ErrorCase, LayerInfo

__all__ = ["batch_first_cases", "recurrent_info"]


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


def recurrent_info(layer, sample_args, edge_cases, error_cases, mutants, notes: str) -> LayerInfo:
    """The registry entry of a recurrent layer (lstm, gru): the same shapes (the first with T > 1,
    so the mutants show), value kinds (no 'inf': an inf input meets weights of both signs in
    x @ w_x, giving NaN pre-activations in any implementation) and benchmark shape."""
    return LayerInfo(layer=layer, sample_args=sample_args, shapes=((4, 2, 3), (1, 1, 3), (4, 1, 3), (1, 2, 3)),
                     value_kinds=("wide", "ties", "extreme"), edge_cases=edge_cases, error_cases=error_cases,
                     mutants=mutants, bench_shape=(128, 8, 16),
                     notes=f"batch_first=True (xs, hs: (N, T, .)) is an edge case. {notes}'inf' values are left "
                           "out: an inf input meets weights of both signs in x @ w_x, giving inf - inf = NaN "
                           "pre-activations in any implementation.")
