"""Memory measurements for a VJP: what it keeps alive, and what a jitted gradient allocates.

* ``residual_bytes(fn, *args)``: bytes of the arrays the VJP closure keeps between forward and
  backward, i.e. the leaves of ``jax.vjp(fn, *args)[1]`` (the list that
  ``jax.ad_checkpoint.print_saved_residuals`` prints), without jit;
* ``compiled_temp_bytes(fn, args, y_bar)``: ``temp_size_in_bytes`` of the compiled
  ``jit(grad(args -> <fn(*args), y_bar>))``: what a jitted gradient step really allocates beyond its
  inputs and outputs. XLA fuses and rematerialises elementwise work, so only this number is a claim
  about real memory under jit.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ._checks import float_positions

__all__ = ["residual_bytes", "compiled_temp_bytes"]


def residual_bytes(fn, *args) -> int:
    """Bytes held by the VJP closure of ``fn`` at ``args``."""
    vjp_fn = jax.vjp(fn, *args)[1]
    return sum(l.size * l.dtype.itemsize for l in jax.tree_util.tree_leaves(vjp_fn) if hasattr(l, "dtype"))


def compiled_temp_bytes(fn, args, y_bar) -> int:
    """Temp bytes of the jitted gradient of ``<fn(*args), y_bar>`` w.r.t. the floating arguments.

    ``y_bar`` is an argument of the compiled function, not a closed-over constant: in a training
    step the cotangent is computed at run time, and a constant would let XLA fold work away (or
    into a different fusion) that a real step has to do.
    """
    pos = float_positions(args)

    def pairing(float_args, y_bar):
        full = list(args)
        for i, a in zip(pos, float_args):
            full[i] = a
        outputs = jax.tree_util.tree_leaves(fn(*full))
        return sum(jnp.vdot(y, g) for y, g in zip(outputs, jax.tree_util.tree_leaves(y_bar)))

    grad = jax.jit(jax.grad(pairing))
    return grad.lower(tuple(args[i] for i in pos), y_bar).compile().memory_analysis().temp_size_in_bytes
