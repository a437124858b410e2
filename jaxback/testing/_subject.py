"""What ``check_vjp`` checks: a jaxback Layer, or any callable with a hand-written VJP.

A :class:`Subject` is the common view of both:

* a Layer ``f``: ``apply`` (its custom_vjp), the reference ``f.auto`` (or the one given), and its
  explicit halves ``fwd``/``bwd``. A *composed* Layer (a model: ``getattr(f, "composed", False)``)
  chains its children's rules in ``apply`` and runs a separate explicit chain in ``fwd``/``bwd``,
  so both paths are compared with the reference;
* any other callable (a ``jax.custom_vjp`` function, an ``equinox.filter_custom_vjp``, a function
  that calls them): ``apply`` is the callable, the reference is required, and there are no
  separate halves: its VJP (``jax.vjp``) is what is checked.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

from .._layer import Layer

__all__ = ["Subject", "subject_of"]


@dataclasses.dataclass(frozen=True)
class Subject:
    """Attributes:
      name: shown in reports.
      apply: the function whose VJP is checked (``layer.apply`` or the callable itself).
      reference: the same forward left to JAX autodiff.
      fwd, bwd: a Layer's explicit halves (``None`` for a plain callable).
      composed: whether ``fwd``/``bwd`` are a path separate from ``apply`` (models).
      roles: a Layer's ``roles`` (what each positional argument is: ``params``, ``x``, ``state``,
        ``key``); ``()`` for a plain callable. ``state`` arguments are not differentiated, and
        the output is then ``(y, new_state)`` (see ``jaxback._layer.Layer``).
      model_paths: for a model, ``tree -> [(path, leaf)]`` (its ``node.paths``), to name its
        params and state leaves in reports as ``model.paths`` does.
    """

    name: str
    apply: Callable[..., Any]
    reference: Callable[..., Any]
    fwd: Optional[Callable[..., Any]] = None
    bwd: Optional[Callable[..., Any]] = None
    composed: bool = False
    roles: tuple = ()
    model_paths: Optional[Callable[..., Any]] = dataclasses.field(default=None, compare=False)  # a view of f

    @property
    def state_positions(self) -> tuple:
        """Positions of the ``state`` arguments (never differentiated)."""
        return tuple(i for i, role in enumerate(self.roles) if role == "state")


def _model_paths(layer):
    node = getattr(layer, "node", None)
    return None if node is None else (lambda tree: node.paths(tree, node.kind))


def _callable_name(f) -> str:
    for candidate in (f, getattr(f, "fn", None), getattr(f, "__wrapped__", None), getattr(f, "fun", None)):
        name = getattr(candidate, "__name__", None)
        if isinstance(name, str):
            return name
    return type(f).__name__


def subject_of(f, reference=None) -> Subject:
    """The :class:`Subject` for ``check_vjp(f, ..., reference=reference)``; raises ``TypeError``
    for a non-Layer callable without a reference (there is nothing to compare it with)."""
    if isinstance(f, Layer):
        return Subject(f.name, f.apply, f.auto if reference is None else reference, f.fwd, f.bwd,
                       bool(getattr(f, "composed", False)), tuple(f.roles), _model_paths(f))
    if not callable(f):
        raise TypeError(f"check_vjp: f must be a jaxback Layer or a callable; got {type(f).__name__} {f!r}.")
    name = _callable_name(f)
    if reference is None:
        raise TypeError(
            f"check_vjp({name}): f is not a jaxback Layer, so it has no autodiff twin: pass "
            f"reference=, the same forward with no custom rule (JAX autodiff differentiates it), e.g. "
            f"check_vjp(f, *args, reference=f_plain). For a jax.custom_vjp function, its undecorated "
            f"body is the reference (f.fun).")
    if not callable(reference):
        raise TypeError(f"check_vjp({name}): reference must be callable; got {type(reference).__name__}.")
    return Subject(name, f, reference)
