"""Memory measurements for a VJP: what it keeps alive, and what a jitted gradient allocates.

* ``residual_bytes(fn, *args)``: bytes of the arrays the VJP closure keeps between forward and
  backward, i.e. the leaves of ``jax.vjp(fn, *args)[1]`` (the list that
  ``jax.ad_checkpoint.print_saved_residuals`` prints), without jit;
* ``compiled_temp_bytes(fn, args, y_bar, with_output=False)``: ``temp_size_in_bytes`` of the
  compiled ``jit((args, y_bar) -> vjp(fn, *args)[1](y_bar))`` (with ``fn``'s output as well):
  what a jitted gradient step really allocates beyond its inputs and outputs. XLA fuses and rematerialises elementwise work, so only this number is a claim
  about real memory under jit.
"""

from __future__ import annotations

import jax

from ._check_vjp import with_values
from ._checks import float_positions

__all__ = ["residual_bytes", "compiled_temp_bytes"]


def residual_bytes(fn, *args) -> int:
    """Bytes held by the VJP closure of ``fn`` at ``args``."""
    vjp_fn = jax.vjp(fn, *args)[1]
    return sum(l.size * l.dtype.itemsize for l in jax.tree_util.tree_leaves(vjp_fn) if hasattr(l, "dtype"))


def compiled_temp_bytes(fn, args, y_bar, *, with_output=False) -> int:
    """Temp bytes of the jitted VJP of ``fn`` at ``args``, applied to ``y_bar``.

    The compiled function maps (floating arguments, y_bar) to the cotangents of the floating
    arguments; ``with_output=True`` returns ``fn``'s output too, as a layer inside a network must
    (the next layer reads it; a training step logs its loss). Without it, XLA may drop forward work
    whose only use was that output, so the two settings can differ either way.

    ``y_bar`` is an argument, not a closed-over constant: in a training step the cotangent is
    computed at run time, and a constant would let XLA fold work away that a real step has to do.
    """
    pos = float_positions(args)

    def step(float_args, y_bar):
        y, vjp = jax.vjp(lambda float_args: fn(*with_values(args, pos, float_args)), float_args)
        return (y, vjp(y_bar)[0]) if with_output else vjp(y_bar)[0]

    compiled = jax.jit(step).lower(tuple(args[i] for i in pos), y_bar).compile()
    return compiled.memory_analysis().temp_size_in_bytes
