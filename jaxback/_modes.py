"""The three gradient modes as one API: ``value_and_grad(model, loss, mode=...)``.

The same model, the same loss, three ways to get dL/dparams (they agree: explicit and vjp run the
same rules in the same order, bit for bit under ``jit`` on one backend; auto to rounding):

* ``"explicit"``: :func:`jaxback.backprop`, the textbook algorithm written out: each layer's ``fwd``
  storing its residuals, the loss, then each layer's hand ``bwd`` from the loss back to the input.
  No ``jax.grad``/``jax.vjp`` on the path. Only this mode can ``record`` each layer's quantities.
* ``"vjp"``: ``jax.value_and_grad`` through ``model`` and ``loss``: JAX chains the hand rules
  (each layer's ``apply`` is a ``jax.custom_vjp``).
* ``"auto"``: ``jax.value_and_grad`` through ``model.auto`` and ``loss.auto``: plain autodiff of the
  same forward maths, the reference.
"""

from __future__ import annotations

import jax

from ._backprop import backprop
from ._layer import Layer
from ._model import as_node, require_state, root_ctx

__all__ = ["MODES", "value_and_grad"]

MODES = ("explicit", "vjp", "auto")


def value_and_grad(model: Layer, loss: Layer, *, mode: str = "explicit"):
    """``f(params, x, target, *, state=None, key=None, training=True, record=False, **inputs)``, the
    loss and its gradient with respect to ``params`` in one gradient ``mode`` (``MODES``).

    ``f`` returns the layout of :func:`jaxback.backprop` in every mode: ``(loss, grads)``; with a
    model that has state, ``((loss, new_state), grads)``; with ``record=True`` (explicit mode only),
    the record as a third item. ``**inputs`` are per-call arrays for the layers that take them
    (``mask=...``). Under ``jax.jit``, ``training`` and ``record`` are Python bools: pass them as
    static (``jax.jit(f, static_argnames=("training", "record"))``) or keep the defaults.

    Example::

        grad_fn = jb.value_and_grad(model, jb.softmax_cross_entropy, mode="vjp")
        loss, grads = jax.jit(grad_fn)(params, x, labels)
    """
    if mode not in MODES:
        raise ValueError(f"value_and_grad: mode must be one of {', '.join(map(repr, MODES))}; got {mode!r}.")
    node = as_node(model)
    if not isinstance(loss, Layer):
        raise TypeError(f"value_and_grad: loss must be a jaxback Layer (jb.softmax_cross_entropy, jb.mse, or "
                        f"one built with jb.make_layer), so each mode can use its own path; got {loss!r}.")
    if mode == "explicit":
        def explicit(params, x, target, *, state=None, key=None, training=True, record=False, **inputs):
            return backprop(model, loss, params, x, target, state=state, key=key, training=training,
                            record=record, **inputs)
        return explicit

    method = "apply" if mode == "vjp" else "auto"

    def through_jax(params, x, target, *, state=None, key=None, training=True, record=False, **inputs):
        if record:
            raise TypeError(f"value_and_grad(mode={mode!r}): record=True needs mode='explicit' (the record is "
                            f"what the explicit walk stores; JAX's autodiff keeps no such tape).")
        require_state(node, state, "value_and_grad")
        ctx = root_ctx(node, key, training, inputs=inputs)

        def objective(p):
            y, new_state = node.run(method, p, state, x, ctx)
            return getattr(loss, method)(y, target), new_state

        (value, new_state), grads = jax.value_and_grad(objective, has_aux=True)(params)
        return ((value, new_state), grads) if node.has_state else (value, grads)

    through_jax.__name__ = f"value_and_grad_{mode}"
    return through_jax
