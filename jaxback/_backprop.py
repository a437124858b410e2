"""backprop: the explicit gradient mode, the seed's picture of backpropagation made runnable.

The picture (Efficient BackProp, and every first course on neural networks):

1. run forward, storing what each layer needs for its backward (at least its input);
2. walk back from the loss: each layer turns dL/d(its output) into dL/d(its input) and, from the
   weights *before* any update, dL/d(its weights);
3. only then update all weights at once (``W <- W - lr * (dW + lam * W)``, done by optax).

``backprop`` is steps 1 and 2 for any model (``jaxback._model``): ``model.fwd``'s chain of each
layer's ``fwd``, the loss's ``fwd`` and ``bwd`` from dL/dL = 1, then each layer's ``bwd`` in
reverse, with the combinators' own rules at forks and joins. No ``jax.grad``/``jax.vjp`` anywhere
on this path (a test monkeypatches them to raise).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._layer import Layer
from ._model import as_node, require_state, root_ctx
from ._validate import describe

__all__ = ["backprop"]


def backprop(model: Layer, loss: Layer, params, x, target, *, state=None, key=None, training: bool = True,
             record: bool = False, **inputs):
    """The explicit gradient mode: the loss and the gradients with no ``jax.grad`` in the path.

    Args:
      model: a model (``serial(...)`` & co.) or a single layer ``f(params, x)`` / ``f(x)``.
      loss: a loss Layer ``loss(prediction, target) -> scalar``.
      params: the model's parameters; ``grads`` has the same structure (``None`` entries stay).
      x, target: a batch of inputs and targets.
      state: the model's state (batch norm statistics), if it has one.
      key: the PRNG key of this step (dropout); training: the flag passed to the layers.
      record: also return, for every layer by its path (``serial[2].batch_norm``), the seed's
        stored quantities: ``{"x": its input, "x_bar": dL/d(input), "params_bar": dL/d(weights)}``.
      **inputs: per-call arrays for the layers that take them (``mask=...`` for attention), as in
        ``model(params, x, mask=mask)``; not differentiated.

    Returns:
      ``(loss, grads)``; with a model that has state, ``((loss, new_state), grads)`` (the layout
      of ``jax.value_and_grad(..., has_aux=True)``); with ``record=True``, the record as a third
      item.
    """
    node = as_node(model)
    require_state(node, state, "backprop")
    if not isinstance(training, bool):
        raise TypeError(f"backprop: training must be True or False; got {training!r}.")
    ctx = root_ctx(node, key, training, {} if record else None, inputs)
    y, new_state, res = node.fwd(params, state, x, ctx)        # 1. forward, storing residuals
    loss_value, loss_res = loss.fwd(y, target)
    if jnp.ndim(loss_value) != 0:
        raise ValueError(f"backprop: the loss must return a scalar; {loss.name} gave {describe(loss_value)}.")
    y_bar, _ = loss.bwd(loss_res, jnp.ones_like(loss_value))  # dL/dL = 1
    grads, _ = node.bwd(res, y_bar, ctx)                      # 2. walk back to the input
    out = (loss_value, grads) if not node.has_state else ((loss_value, new_state), grads)
    return out + (ctx.tape,) if record else out
