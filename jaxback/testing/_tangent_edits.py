"""Builders of wrong forward-mode rules (jvp mutants) shared by the registry entries.

A plausible mistake in a hand JVP is often the same across layers: a term of the product rule
dropped (``with_tangents(jvp, zeroed("w"))``: that input's tangent never reaches y_dot), or the
tangent taken at the wrong primal (``tangent_at(jvp, flipped_kernel)``). Each builder wraps the
layer's own ``jvp``, so the mutant differs from the true rule in that one step only.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["with_tangents", "zeroed", "tangent_at", "flipped_kernel"]


def with_tangents(jvp, edit):
    """The true ``jvp`` run on the tangents ``edit(primals, tangents)``."""

    def wrong(primals, tangents, **hyper):
        return jvp(primals, edit(primals, tangents), **hyper)

    return wrong


def zeroed(field):
    """An edit for ``with_tangents``: the params tangent's ``field`` zeroed (its term dropped)."""

    def edit(primals, tangents):
        params_dot, *rest = tangents
        return (params_dot._replace(**{field: jnp.zeros_like(getattr(params_dot, field))}), *rest)

    return edit


def tangent_at(jvp, edit):
    """y from the true ``jvp``, y_dot from the true ``jvp`` at the primals ``edit(primals)``."""

    def wrong(primals, tangents, **hyper):
        y, _ = jvp(primals, tangents, **hyper)
        return y, jvp(edit(primals), tangents, **hyper)[1]

    return wrong


def flipped_kernel(primals):
    """An edit for ``tangent_at``: ``params.w`` flipped along its spatial axes (all but the last two):
    a convolution where the layer correlates."""
    params, *rest = primals
    return (params._replace(w=jnp.flip(params.w, tuple(range(params.w.ndim - 2)))), *rest)
