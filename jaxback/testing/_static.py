"""Static arguments: what ``check_vjp`` holds fixed instead of tracing.

Two kinds of positional input are not arrays to trace and differentiate:

* a ``jax.custom_vjp``'s ``nondiff_argnums`` (``custom_vjp(f, nondiff_argnums=(1,))`` called
  ``f(x, 3)``): JAX refuses a tracer there (``UnexpectedTracerError``), so the whole argument is
  kept as the Python value given, read from the custom_vjp object;
* leaves that are not array-like (an ``equinox.nn.MLP``'s ``activation=jnp.tanh``, strings, any
  Python object): equinox's filter semantics (``eqx.filter_grad``/``filter_jit``), they are
  constants. Array-like leaves (JAX and numpy arrays, numpy scalars, Python bool/int/float/complex)
  stay traced: a Python float is differentiated as before, unlike ``eqx.filter_grad``.

``split_static(f, args)`` returns ``(dynamic, static)``: two trees of ``args``' structure, each
with ``None`` where the other holds the leaf (``eqx.partition``'s layout); ``combine`` merges them
back. Every program then traces ``dynamic`` only, and reports name paths in it.
"""

from __future__ import annotations

import jax
import numpy as np

from ._structure import is_none, labelled_leaves

__all__ = ["Static", "split_static", "combine", "has_static", "nondiff_argnums"]

_ARRAY_LIKE = (jax.Array, np.ndarray, np.generic, bool, int, float, complex)


def nondiff_argnums(f) -> tuple:
    """The ``nondiff_argnums`` of a ``jax.custom_vjp`` (or ``custom_jvp``) object, else ``()``."""
    found = getattr(f, "nondiff_argnums", ())
    return tuple(found) if isinstance(found, (tuple, list)) else ()


class Static:
    """The static part of ``args``: ``positions`` (nondiff_argnums, held whole) and, per argument,
    the value (those positions) or its tree of static leaves. Hashable when its leaves are, so
    programs can be cached; ``hash`` raises TypeError otherwise and they are built afresh."""

    def __init__(self, positions: tuple, parts: tuple):
        self.positions, self.parts = positions, parts
        flat = [(i, p) if i in positions else (i, jax.tree_util.tree_flatten(p, is_leaf=is_none))
                for i, p in enumerate(parts)]
        self.key = (positions, tuple((i, type(p).__qualname__, p) if i in positions else
                                     (i, p[1], tuple((type(l).__qualname__, l) for l in p[0])) for i, p in flat))

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Static) and self.key == other.key

    def describe(self) -> list:
        """``["args[1]=3", "args[0].activation=<PjitFunction tanh>"]`` for the report."""
        whole = [f"args[{i}]={_short(self.parts[i])}" for i in self.positions]
        leaves = [f"{path}={_short(leaf)}" for i, part in enumerate(self.parts) if i not in self.positions
                  for path, leaf in labelled_leaves(part, f"args[{i}]") if leaf is not None]
        return whole + leaves


def _short(value) -> str:
    text = repr(value) if isinstance(value, (bool, int, float, complex, str)) else \
        f"<{type(value).__name__} {getattr(value, '__name__', '')}>".replace(" >", ">")
    return text if len(text) <= 40 else text[:37] + "..."


def split_static(f, args) -> tuple:
    """``(dynamic, Static)`` for ``f(*args)`` (see the module docstring)."""
    positions = nondiff_argnums(f)
    if any(i >= len(args) for i in positions):
        raise TypeError(f"check_vjp: f has nondiff_argnums={positions} but was given {len(args)} positional "
                        f"argument(s); pass every argument positionally, as f(*args) is called.")
    traced = lambda l: l is None or isinstance(l, _ARRAY_LIKE)
    keep = lambda arg, want: jax.tree_util.tree_map(lambda l: l if traced(l) == want else None, arg, is_leaf=is_none)
    dynamic = tuple(None if i in positions else keep(a, True) for i, a in enumerate(args))
    return dynamic, Static(positions, tuple(a if i in positions else keep(a, False) for i, a in enumerate(args)))


def combine(dynamic, static: Static) -> tuple:
    """``args`` again: each ``None`` of ``dynamic`` filled from ``static`` (eqx.combine)."""
    fill = lambda s, d: s if d is None else d
    return tuple(part if i in static.positions else jax.tree_util.tree_map(fill, part, arg, is_leaf=is_none)
                 for i, (arg, part) in enumerate(zip(dynamic, static.parts)))


def has_static(static: Static) -> bool:
    """Whether anything is held static (else programs need no merging)."""
    return bool(static.positions) or any(l is not None for p in static.parts for l in
                                         jax.tree_util.tree_leaves(p, is_leaf=is_none))
