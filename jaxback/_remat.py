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
the rule above. The vjp mode runs ``jax.checkpoint`` of the chain of ``inner``'s hand rules (JAX
re-runs their ``fwd`` in the backward, then their ``bwd``), and ``auto`` is ``jax.checkpoint`` of
``inner.auto``: the fair twin, recomputing the same forward for autodiff.

NOTE (common subexpressions): under ``jit``, XLA would merge the recomputed forward with the
original one and keep the original's intermediates alive, undoing the saving. The backward reads
its saved inputs through ``saved_only`` (``lax.optimization_barrier``), as ``jax.checkpoint`` does
with ``prevent_cse``, and through the same barrier as ``y_bar``: the recomputation then cannot be
scheduled before the backward reaches it (where its residuals would live as long as stored ones).
"""

from __future__ import annotations

from types import MappingProxyType

import jax

from ._layer import saved_only
from ._model import Model, Node, as_node, make_model

__all__ = ["remat"]


def remat(inner) -> Model:
    """``inner`` (a layer or a model) whose backward recomputes its forward instead of storing it."""
    node_in = as_node(inner)
    segment = "." + node_in.kind

    def init(key, x, path):  # the same key: remat(inner) has inner's parameters
        return node_in.init(key, x, path + segment)

    def run(method, params, state, x, ctx):
        child = ctx.child(segment, None)
        return jax.checkpoint(lambda p, s, x: node_in.run(method, p, s, x, child))(params, state, x)

    def fwd(params, state, x, ctx):
        y, new_state, _ = node_in.fwd(params, state, x, ctx.child(segment, None))  # inner's residuals dropped
        return y, new_state, (params, state, x, ctx.key, dict(ctx.inputs))

    def bwd(res, y_bar, ctx):
        (params, state, x, key, inputs), y_bar = saved_only((res, y_bar))  # one barrier: recompute after y_bar
        child = ctx._replace(key=key, inputs=MappingProxyType(inputs)).child(segment, None)
        _, _, inner_res = node_in.fwd(params, state, x, child)                  # recompute
        return node_in.bwd(inner_res, y_bar, child)

    paths = lambda tree, prefix: node_in.paths(tree, prefix + segment)
    node = Node("remat", node_in.has_state, init, run, fwd, bwd, paths, children=((segment, node_in),))
    return make_model(node, (node_in.kind,))
