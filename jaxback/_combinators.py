"""serial and backprop: the seed's picture of backpropagation, runnable.

The picture (Efficient BackProp, and every first course on neural networks):

1. run forward, storing what each layer needs for its backward (at least its input);
2. walk back from the loss: each layer turns dL/d(its output) into dL/d(its input) and, from the
   weights *before* any update, dL/d(its weights);
3. only then update all weights at once (``W <- W - lr * (dW + lam * W)``, done by optax).

``serial(*layers)`` composes layers; it is itself a Layer:

* ``apply`` chains the children's ``apply``, so ``jax.grad`` through it lets JAX chain our hand
  rules (the "vjp" mode);
* ``auto`` chains the children's ``auto`` (the "auto" mode, pure autodiff);
* ``fwd``/``bwd`` are steps 1 and 2 written out by hand: ``fwd`` keeps one residual per child,
  ``bwd`` walks the children in reverse calling each child's ``bwd``.

``backprop(model, loss, params, x, target)`` runs ``fwd`` then ``bwd`` from the loss with no
``jax.grad``/``jax.vjp`` anywhere (the "explicit" mode).

Params of a serial model: a tuple with one entry per child, ``None`` for parameter-free children.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._layer import Layer

__all__ = ["serial", "backprop"]


def _call(layer: Layer, method: str, params, x):
    fn = getattr(layer, method)
    return fn(params, x) if layer.takes_params else fn(x)


def _check_params(name, layers, params):
    if not isinstance(params, (tuple, list)) or len(params) != len(layers):
        got = f"{type(params).__name__} of length {len(params)}" if isinstance(params, (tuple, list)) else type(params).__name__
        raise ValueError(
            f"{name}: params must be a tuple with one entry per layer ({len(layers)}: "
            f"{', '.join(l.name for l in layers)}), None for parameter-free layers; got {got}."
        )


def serial(*layers: Layer) -> Layer:
    """Compose ``layers`` left to right: ``serial(f, g)(params, x) = g(params[1], f(params[0], x))``.

    Bind hyperparameters with :func:`jaxback.bind`, e.g.
    ``serial(linear, bind(leaky_relu, negative_slope=0.1), linear)``.
    """
    if not layers or not all(isinstance(l, Layer) for l in layers):
        raise TypeError(f"serial: every argument must be a jaxback Layer; got {layers!r}.")
    name = "serial(" + ", ".join(l.name for l in layers) + ")"

    def chain(method):
        def run(params, x):
            _check_params(name, layers, params)
            for layer, p in zip(layers, params):
                x = _call(layer, method, p, x)
            return x

        return run

    def fwd(params, x):
        _check_params(name, layers, params)
        residuals = []
        for layer, p in zip(layers, params):
            x, res = _call(layer, "fwd", p, x)
            residuals.append(res)
        return x, tuple(residuals)

    def bwd(residuals, y_bar):
        params_bar = [None] * len(layers)
        for i in reversed(range(len(layers))):
            cotangents = layers[i].bwd(residuals[i], y_bar)
            if layers[i].takes_params:
                params_bar[i], y_bar = cotangents[0], cotangents[1]
            else:
                (y_bar,) = cotangents
        return tuple(params_bar), y_bar

    return Layer(chain("apply"), chain("auto"), fwd, bwd, None, name, takes_params=True)


def backprop(model: Layer, loss: Layer, params, x, target):
    """The explicit gradient mode: ``(loss_value, grads)`` with no ``jax.grad`` in the path.

    Args:
      model: a Layer taking ``(params, x)`` (typically ``serial(...)``).
      loss: a loss Layer taking ``(prediction, target)``.
      params: the model's parameters; ``grads`` has the same structure.
      x, target: a batch of inputs and targets.
    """
    y, model_res = model.fwd(params, x)          # 1. forward, storing residuals
    loss_value, loss_res = loss.fwd(y, target)
    y_bar, _ = loss.bwd(loss_res, jnp.ones_like(loss_value))  # dL/dL = 1
    grads, _ = model.bwd(model_res, y_bar)       # 2. walk back to the input
    return loss_value, grads
