"""The Layer record: one forward, two ways to differentiate it.

A Layer bundles the same forward maths twice:

* ``apply``: ``jax.custom_vjp(auto)`` with the hand-derived rule ``defvjp(fwd, bwd)``;
* ``auto``: the plain forward, which JAX autodiff differentiates by itself.

so that hand and automatic gradients can be compared on the same code.

Hyperparameters (``axis``, ``negative_slope``, ``eps``...) are keyword-only Python values: they are
static under ``jit`` and are baked into one ``custom_vjp`` per distinct setting (``_rule_for``).
``fwd`` and ``bwd`` receive them as keywords too, because residuals may only hold arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax

__all__ = ["Layer", "make_layer", "bind"]


@dataclasses.dataclass(frozen=True)
class Layer:
    """An immutable record: ``apply``, ``auto``, ``fwd``, ``bwd``, ``init``, ``name``.

    Attributes:
      apply: forward with the hand-derived VJP registered by ``jax.custom_vjp``; ``layer(...)``
        calls it.
      auto: the same forward without a custom rule: JAX autodiff differentiates it.
      fwd: ``fwd(*args, **hyper) -> (y, res)``, the first half of the hand rule.
      bwd: ``bwd(res, y_bar, **hyper) -> cotangents``, a tuple with one entry per positional
        argument of ``apply`` (``None`` for integer inputs such as labels).
      init: ``init(key, ...) -> params`` for layers with parameters, else ``None``.
      name: short name used in error messages and reports.
      takes_params: whether the first positional argument is a parameter pytree. ``serial`` uses
        it to decide between ``layer(params, x)`` and ``layer(x)``.
    """

    apply: Callable[..., Any]
    auto: Callable[..., Any]
    fwd: Callable[..., Any]
    bwd: Callable[..., Any]
    init: Optional[Callable[..., Any]]
    name: str
    takes_params: bool = False

    def __call__(self, *args, **hyper):
        return self.apply(*args, **hyper)

    def __repr__(self) -> str:
        return f"<jaxback Layer {self.name}>"


def _hyper_key(name: str, hyper: dict) -> tuple:
    """A hashable key for a hyperparameter setting; refuses traced or unhashable values."""
    key = tuple(sorted(hyper.items()))
    try:
        hash(key)
    except TypeError:
        raise TypeError(
            f"{name}: hyperparameters must be hashable Python values (they are static under jit); "
            f"got {hyper!r}. Pass arrays as positional arguments instead."
        ) from None
    return key


def make_layer(auto, fwd, bwd, *, name: str, init=None, takes_params=None) -> Layer:
    """Build a :class:`Layer` from its forward and hand-derived rule.

    Args:
      auto: ``auto(*args, **hyper) -> y``, the forward maths with no custom rule.
      fwd: ``fwd(*args, **hyper) -> (y, res)``; ``y`` must equal ``auto(*args, **hyper)``.
      bwd: ``bwd(res, y_bar, **hyper) -> tuple`` of cotangents, one per positional argument,
        each with exactly its primal's shape and dtype (``None`` for integer arguments).
      name: short name used in errors and reports.
      init: ``init(key, ...) -> params`` for layers with parameters.
      takes_params: whether the first positional argument is a parameter pytree; defaults to
        ``init is not None``.

    Returns:
      A Layer whose ``apply`` is ``jax.custom_vjp(auto)`` with ``defvjp(fwd, bwd)``.
    """

    @functools.lru_cache(maxsize=None)
    def _rule_for(hyper_key: tuple):
        hyper = dict(hyper_key)
        rule = jax.custom_vjp(functools.partial(auto, **hyper))
        rule.defvjp(functools.partial(fwd, **hyper), functools.partial(bwd, **hyper))
        return rule

    @functools.wraps(auto)
    def apply(*args, **hyper):
        return _rule_for(_hyper_key(name, hyper))(*args)

    if takes_params is None:
        takes_params = init is not None
    return Layer(apply, auto, fwd, bwd, init, name, takes_params)


def bind(layer: Layer, **hyper) -> Layer:
    """Fix some of ``layer``'s hyperparameters, e.g. ``bind(jb.leaky_relu, negative_slope=0.1)``.

    The result is a Layer like any other (so it can go into ``serial``); its name records the
    bound values.
    """
    _hyper_key(layer.name, hyper)  # fail early on unhashable values
    settings = ", ".join(f"{k}={v!r}" for k, v in sorted(hyper.items()))
    return make_layer(
        functools.partial(layer.auto, **hyper),
        functools.partial(layer.fwd, **hyper),
        functools.partial(layer.bwd, **hyper),
        name=f"{layer.name}({settings})",
        init=layer.init,
        takes_params=layer.takes_params,
    )
