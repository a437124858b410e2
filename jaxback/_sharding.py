"""The sharding a hand rule gives a cotangent, under meshes with explicit axes.

Under ``jax.set_mesh(jax.make_mesh(...))`` (every axis ``AxisType.Explicit``, ``make_mesh``'s
default) shardings are part of the types, and two things in a backward rule need one spelled out:

* a contraction over the sharded batch, ``w_bar = x.T @ y_bar``: both operands are split along the
  summed axis, so JAX cannot tell how the (n, m) result should be split and raises
  ``ShardingTypeError: Contracting dimensions are sharded``. A parameter's cotangent is sharded as
  the parameter (replicated, for a data-parallel user): ``out_sharding=cotangent_sharding(w)``;
* a zero cotangent built from a shape (``jnp.zeros``) has no sharding, where ``custom_vjp`` wants
  the primal's type: :class:`ZeroCotangent` keeps it.

With no mesh, or a mesh of ``Auto`` axes, ``cotangent_sharding`` is ``None``: the ops' default, so
the program (HLO) and its values are exactly those without this module.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

__all__ = ["cotangent_sharding", "ZeroCotangent"]


def cotangent_sharding(primal) -> Any:
    """The sharding ``primal``'s cotangent must have: the primal's own under a mesh with explicit
    axes (pass it as ``out_sharding=``), ``None`` otherwise (JAX's default, today's program)."""
    if not jax.sharding.get_abstract_mesh().explicit_axes:
        return None
    return jax.typeof(primal).sharding


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class ZeroCotangent:
    """A primal's shape, dtype and (explicit mesh only) sharding: a residual of zero bytes from
    which ``zeros()`` builds the primal's zero cotangent with the type ``custom_vjp`` expects."""

    shape: tuple
    dtype: Any
    sharding: Any = None

    @classmethod
    def of(cls, x) -> "ZeroCotangent":
        return cls(tuple(jnp.shape(x)), jnp.result_type(x), cotangent_sharding(x))

    def zeros(self) -> jax.Array:
        return jnp.zeros(self.shape, self.dtype, out_sharding=self.sharding)
