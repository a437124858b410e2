"""remat(inner): rematerialisation, the textbook backward walk with recomputation.

A model's backward needs what each layer's ``fwd`` saved (its residuals). ``remat(inner)`` trades
time for memory: its forward keeps only what ``inner`` was called with, and its backward runs
``inner``'s forward again to get the residuals back, then ``inner``'s own backward.

Shapes: whatever ``inner`` takes and gives; params and state are ``inner``'s own.

  Forward   y = inner(params, x)                  (key, per-call arrays: ``inner``'s, passed down)
            res = (params, state, x, key, arrays)  the inputs only: none of inner's residuals
  Backward  y_bar = dL/dy
            _, _, inner_res = inner.fwd(params, state, x)     recompute: the same forward, so the
                                                              same residuals (same key: same masks)
            params_bar, x_bar = inner.bwd(inner_res, y_bar)   inner's own rule, unchanged

``remat(inner)`` is ``inner`` to its users: the same parameters from ``init`` and the same PRNG
keys per layer (its child draws remat's own keys), so the same dropout masks. The gradient is
exactly ``inner``'s: remat changes when the residuals exist, not what they are
(the chain rule is the same; only the order of evaluation moves). Explicit mode (``backprop``) runs
the rule above, and so does the vjp mode (``apply`` is one hand-rule primitive carrying it,
``_hand_rule``, so JAX chains this rule with the other layers' hand rules). ``auto`` is
``jax.checkpoint`` of ``inner.auto``: the fair twin, recomputing the same forward for autodiff.

Forward mode (``jax.jvp``, ``jacfwd``, ``linearize``) keeps nothing across the pass: each tangent
is computed beside its primal and dropped, so there is nothing to recompute, and remat's tangent
rule is inner's (``_hand_rule.chained_jvp``: JAX chains inner's hand JVPs):

  Tangent   params_dot, x_dot: params', x's shapes (state, key, per-call arrays: as given)
            y, y_dot = jax.jvp(inner, (params, state, x), (params_dot, state_dot, x_dot))

NOTE (why the recomputation reads its inputs through ``_after(res, y_bar)``): under ``jit`` XLA
sees the recomputed forward as a copy of the original one. An ``optimization_barrier`` does not
stop it merging the two on XLA CPU: the CPU pipeline expands barriers right after its first
common-subexpression pass and runs a second one after fusion, which merged every recomputed
matmul of a stack of remat'd blocks with the forward's (0 of 4 recomputed dots left in a 2-block
step), so the forward's intermediates lived until the backward and remat stored *more* than
``inner`` (8 MiB per block against 6). ``_after`` selects each saved input against a predicate
computed from ``y_bar`` that is always false (``y_bar[0] > inf``, false for NaN too): the values
are the inputs, bit for bit, but they are new HLO values, so nothing is merged, and the recompute
depends on ``y_bar``, so no scheduler can run it before the backward reaches this block.
"""

from __future__ import annotations

from types import MappingProxyType

import jax
import jax.numpy as jnp

from ._hand_rule import HandRules, chained_jvp, hand_rule
from ._model import Model, Node, as_node, make_model

__all__ = ["remat"]


def _after(tree, y_bar):
    """``tree``'s arrays, unchanged in value but computed after ``y_bar`` (see the module NOTE).
    Run op by op (no tracer) nothing is merged or reordered, and ``tree`` comes back as it is."""
    probes = [g for g in jax.tree_util.tree_leaves(y_bar)
              if isinstance(g, jax.core.Tracer) and jnp.issubdtype(g.dtype, jnp.inexact) and g.size]
    if not probes:
        return tree
    never = jnp.ravel(probes[0])[0].real > jnp.inf  # False for every float, NaN included

    def select(a):
        if not hasattr(a, "dtype"):
            return a
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):  # typed keys: select their raw bits
            impl = jax.random.key_impl(a)
            return jax.random.wrap_key_data(select(jax.random.key_data(a)), impl=impl)
        return jax.lax.select(jnp.broadcast_to(never, jnp.shape(a)), jnp.zeros_like(a), a)

    return jax.tree_util.tree_map(select, tree)


def remat(inner) -> Model:
    """``inner`` (a layer or a model) whose backward recomputes its forward instead of storing it.

    ``jb.serial(embed, *[jb.remat(block) for block in blocks], head)``: each block's step memory
    is its input alone; its backward runs its forward once more (about a third more time).
    """
    node_in = as_node(inner)
    segment = "." + node_in.kind

    def init(key, x, path):  # the same key: remat(inner) has inner's parameters
        return node_in.init(key, x, path + segment)

    def fwd(params, state, x, ctx):
        y, new_state, _ = node_in.fwd(params, state, x, ctx.child(segment, None))  # inner's residuals dropped
        return y, new_state, (params, state, x, ctx.key, dict(ctx.inputs))

    def bwd(res, y_bar, ctx):
        params, state, x, key, inputs = _after(res, y_bar)
        child = ctx._replace(key=key, inputs=MappingProxyType(inputs)).child(segment, None)
        _, _, inner_res = node_in.fwd(params, state, x, child)                  # recompute
        return node_in.bwd(inner_res, y_bar, child)

    def run(method, params, state, x, ctx):
        if method == "auto":  # the fair twin: autodiff of inner with JAX's own recomputation
            child = ctx.child(segment, None)
            return jax.checkpoint(lambda p, s, x: node_in.run(method, p, s, x, child))(params, state, x)
        return _hand_rules(node_in.run, fwd, bwd, ctx, segment)(params, state, x, ctx.key, dict(ctx.inputs))

    paths = lambda tree, prefix: node_in.paths(tree, prefix + segment)
    node = Node("remat", node_in.has_state, init, run, fwd, bwd, paths, children=((segment, node_in),))
    return make_model(node, (node_in.kind,))


def _hand_rules(run, fwd, bwd, ctx, segment):
    """The vjp mode: remat's ``fwd``/``bwd`` (and inner's chained JVP) as one hand-rule primitive
    over its array inputs (the primal is ``inner.apply``); the static rest of ``ctx`` (path,
    training flag) is closed over. Only params and x get cotangents."""

    def with_arrays(key, inputs):
        return ctx._replace(key=key, inputs=MappingProxyType(inputs))

    def primal(params, state, x, key, inputs):
        return run("apply", params, state, x, with_arrays(key, inputs).child(segment, None))

    def rule_fwd(params, state, x, key, inputs):
        y, new_state, res = fwd(params, state, x, with_arrays(key, inputs))
        return (y, new_state), res

    def rule_bwd(res, out_bar):
        params_bar, x_bar = bwd(res, out_bar[0], ctx)  # new_state's cotangent is ignored
        return params_bar, None, x_bar, None, None

    return hand_rule(HandRules(primal, rule_fwd, rule_bwd, chained_jvp(primal)))
