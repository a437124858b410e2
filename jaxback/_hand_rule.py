"""hand_rule: one JAX primitive that carries a layer's two hand rules, the VJP and the JVP.

``jax.custom_vjp`` takes a hand VJP, but then forward mode (``jax.jvp``, ``jacfwd``, ``linearize``)
raises; ``jax.custom_jvp`` takes a hand JVP, but then reverse mode transposes the tangent rule and
stores what *it* needs (softmax: y, where the hand VJP saves x and the log-sum-exp). A
``jax.experimental.hijax.VJPHiPrimitive`` takes both, and JAX asks each transformation for the rule
it needs:

  reverse mode (``grad``, ``vjp``)   ``vjp_fwd`` -> ``fwd``, ``vjp_bwd_retval`` -> ``bwd``: the same
                                     residuals as the custom_vjp, so the same memory
  forward mode (``jvp``, ``jacfwd``) ``jvp`` -> the layer's hand ``jvp``
  ``linearize``                      ``lin`` saves the primals, ``linearized`` runs ``jvp`` on them
  ``vmap``                           the rules vmapped (``_Vmapped``)
  no transformation (and ``jit``)    ``expand`` -> ``auto``, the plain forward

hijax is experimental: this is the only module that touches it (and the one private class,
``VmapOf``, whose ``lin`` JAX does not provide yet), so an API change of JAX's changes this file only.

Tangent conventions for a hand ``jvp(primals, tangents, **keywords) -> (y, y_dot)``: ``tangents``
has ``primals``' structure, every floating leaf's tangent an array (JAX's symbolic zeros are
instantiated) and ``None`` for integer, boolean and key inputs (labels, ids, PRNG keys), which
have no tangent. A ``None`` in ``bwd``'s cotangents, or in ``jvp``'s ``y_dot``, is a zero.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax._src import hijax as _hijax_internal  # VmapOf: vmap of a VJPHiPrimitive
from jax._src.interpreters import batching as _batching
from jax.experimental import hijax

__all__ = ["HandRules", "hand_rule", "chained_jvp"]


class HandRules(NamedTuple):
    """One layer's rules at one setting of its hyperparameters (hashable: it identifies the primitive)."""

    auto: Callable
    fwd: Callable
    bwd: Callable
    jvp: Callable


def _is_zero(t) -> bool:
    return isinstance(t, hijax.Zero)


def _has_tangent(aval) -> bool:
    return jnp.issubdtype(aval.dtype, jnp.inexact)


def _tangent_or_none(t, aval):
    """A tangent as the hand ``jvp`` sees it: an array for floating inputs, ``None`` otherwise."""
    if not _has_tangent(aval):
        return None
    return jnp.zeros(aval.shape, aval.dtype) if _is_zero(t) else t


def _tangents(tangents, avals):
    return jax.tree_util.tree_map(_tangent_or_none, tangents, avals, is_leaf=_is_zero)


def _zeros_for_none(values, avals, zero):
    """``values`` with each ``None`` (a whole subtree's zero) replaced by ``zero(aval)`` per leaf."""
    def fill(value, aval_tree):
        if value is None:
            return jax.tree_util.tree_map(zero, aval_tree)
        return value
    return jax.tree_util.tree_map(fill, values, avals, is_leaf=lambda v: v is None)


class _HandRule(hijax.VJPHiPrimitive):
    def __init__(self, rules: HandRules, in_avals, out_aval):
        self.in_avals, self.out_aval = in_avals, out_aval
        self.params = dict(rules=rules, avals=(in_avals, out_aval))
        super().__init__()

    def expand(self, *args):
        return self.rules.auto(*args)

    def vjp_fwd(self, _nonzeros, *args):
        return self.rules.fwd(*args)

    def vjp_bwd_retval(self, res, y_bar):
        y_bar = jax.tree_util.tree_map(lambda g: hijax.instantiate_zeros(g) if _is_zero(g) else g, y_bar,
                                       is_leaf=_is_zero)
        cotangents = tuple(self.rules.bwd(res, y_bar))
        return _zeros_for_none(cotangents, self.in_avals, lambda a: hijax.Zero(a.to_ct_aval()))

    def jvp(self, primals, tangents):
        y, y_dot = self.rules.jvp(primals, _tangents(tangents, self.in_avals))
        return y, _zeros_for_none(y_dot, self.out_aval, lambda a: jnp.zeros(a.shape, a.dtype))

    def lin(self, _nonzeros, *primals):
        return self.rules.auto(*primals), primals  # the tangent map needs the primals only

    def linearized(self, primals, *tangents):
        return self.jvp(primals, tangents)[1]

    def batch_dim_rule(self, axis_data, dims):
        return jax.tree_util.tree_map(lambda _: 0, self.out_aval)  # vmap puts the batch axis first

    def batch(self, axis_data, args, dims):
        out_dims = self.batch_dim_rule(axis_data, dims)
        return _Vmapped(self, axis_data, dims, out_dims)(*args), out_dims


class _Vmapped(_hijax_internal.VmapOf):
    """JAX's vmap of a hijax primitive, with the ``lin``/``linearized`` it lacks (linearize of vmap)."""

    def lin(self, nonzeros, *args):
        lin_one = lambda *a: self.prim.lin(nonzeros, *a)  # noqa: E731
        (y, res), (_, res_dims) = jax.vmap(lin_one, in_axes=self.in_dims, out_axes=(self.out_dim, _batching.infer),
                                           **self._vmap_params)(*args)
        return y, (res, _hijax_internal.Static(res_dims))

    def linearized(self, res_and_dims, *tangents):
        res, res_dims = res_and_dims[0], res_and_dims[1].val
        return jax.vmap(self.prim.linearized, in_axes=(res_dims, *self.in_dims), out_axes=self.out_dim,
                        **self._vmap_params)(res, *tangents)

    def batch(self, axis_data, args, dims):  # vmap of vmap
        out_dims = self.batch_dim_rule(axis_data, dims)
        return _Vmapped(self, axis_data, dims, out_dims)(*args), out_dims


def _aval(x):
    return jax.typeof(x)


def hand_rule(rules: HandRules) -> Callable:
    """``f(*args)``: ``rules.auto`` as a primitive whose derivatives are ``rules``' hand rules."""
    def call(*args):
        traced, shapes = jax.make_jaxpr(rules.auto, return_shape=True)(*args)
        out_aval = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(shapes), traced.out_avals)
        return _HandRule(rules, jax.tree_util.tree_map(_aval, args), out_aval)(*args)
    return call


def chained_jvp(fn: Callable) -> Callable:
    """A ``jvp`` for :class:`HandRules` that is ``jax.jvp`` of ``fn``: the hand JVPs of the layers
    ``fn`` calls, chained by JAX (remat's: forward mode keeps nothing for a later pass, so there is
    nothing to recompute). Inputs whose tangent is ``None`` (keys, ids) are held fixed."""
    def jvp(primals, tangents):
        leaves, tree = jax.tree_util.tree_flatten(primals)
        moving = [t is not None for t in tree.flatten_up_to(tangents)]
        pick = lambda values: [v for v, m in zip(values, moving) if m]  # noqa: E731

        def of_moving(*moved):
            moved = iter(moved)
            return fn(*tree.unflatten([next(moved) if m else leaf for leaf, m in zip(leaves, moving)]))

        return jax.jvp(of_moving, pick(leaves), pick(tree.flatten_up_to(tangents)))
    return jvp
