"""The layer registry: one LayerInfo per layer, from which every test is generated (OpInfo-style).

A LayerInfo says, for one layer, everything a test needs to know:

* how to build sample arguments (``sample_args(rng, dtype, shape, kind)``) for a small fixed set of
  ``shapes`` (each compiles once) and hyperparameter settings ``hypers``;
* ``edge_cases``: the numerically hard inputs, each with its documented expected behaviour and a
  check that asserts it;
* ``error_cases``: bad inputs with the exception type and message pattern they must raise;
* ``mutants``: wrong backward rules the generated suite must reject;
* ``dtypes`` it supports and ``supports`` flags for the transformations it works under.

Users get the same generated checks for their own layers with ``jaxback.testing.run_checks(info)``
(no pytest needed) or ``test_mine = jaxback.testing.pytest_tests([info, ...])`` in a test module.
Registries (:class:`Registry`) can be scoped, replaced and cleared; ``register`` and friends act on
the default one, ``REGISTRY``, which is the user's (empty at import). jaxback's own layers' entries
are in a registry of their own, ``builtin_registry()`` (``_builtin.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax.numpy as jnp
import numpy as np

from .._layer import Layer

__all__ = ["LayerInfo", "EdgeCase", "ErrorCase", "Mutant", "FLAGS", "DTYPES", "Registry", "REGISTRY", "register",
           "unregister", "registered"]

FLAGS = ("jit", "vmap", "grad_of_grad", "checkpoint", "scan", "sharding", "symbolic_zeros")
DTYPES = (jnp.float64, jnp.float32, jnp.bfloat16, jnp.float16)


@dataclasses.dataclass(frozen=True)
class EdgeCase:
    """A numerically hard input and the behaviour documented for it.

    ``args(dtype) -> tuple`` builds the inputs. ``expect`` says in words what must happen;
    ``check(y, cotangents)`` asserts it, given the output and the hand VJP of an all-ones cotangent
    (``None`` if the words are all there is to check beyond the autodiff comparison). With
    ``matches_autodiff`` the hand VJP must also equal autodiff's there (``check_vjp`` without finite
    differences).
    """

    name: str
    args: Callable[[Any], tuple]
    expect: str
    check: Optional[Callable[[Any, tuple], None]] = None
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    matches_autodiff: bool = True


@dataclasses.dataclass(frozen=True)
class ErrorCase:
    """Bad input: ``layer(*args(), **hyper)`` must raise ``error`` with a message matching ``match``."""

    name: str
    args: Callable[[], tuple]
    error: type
    match: str
    hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """A deliberately wrong rule for the layer, which the checks must reject: a backward
    ``bwd(res, y_bar, **hyper)``, or a forward-mode ``jvp(primals, tangents, **hyper)`` (give one)."""

    name: str
    bwd: Optional[Callable[..., tuple]] = None
    jvp: Optional[Callable[..., tuple]] = None

    def __post_init__(self):
        if (self.bwd is None) == (self.jvp is None):
            raise ValueError(f"Mutant({self.name!r}): give exactly one wrong rule, bwd= or jvp=.")


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Everything the generated tests need to know about one layer (see the module docstring).

    Attributes:
      layer: the Layer under test.
      sample_args: ``(rng, dtype, shape, kind) -> tuple`` of positional arguments; ``shape`` comes
        from ``shapes`` and ``kind`` from ``strategies.VALUE_KINDS``.
      shapes: the small fixed set of input shapes to draw from.
      hypers: hyperparameter settings (dicts of keyword arguments) to draw from.
      value_kinds: random value kinds the layer must match autodiff on (beyond "normal").
      edge_cases, error_cases, mutants: see the classes above.
      dtypes: the floating dtypes the layer supports (tolerances: ``_tolerances.RTOL``).
      supports: the transformations it works under, a subset of ``FLAGS``.
      not_applicable: flags or dtype names that make no sense for the layer (shown as "n.a."
        rather than as unsupported).
      finite_differences: whether central differences of the *whole* output are a valid witness
        (False where an output is deliberately not differentiated, e.g. running statistics).
      notes: why a flag or dtype is missing or not applicable, for the conformance table.
      bench_shape, bench_hyper: a realistic size for the memory audit (``benchmarks/``); no
        audit row without a bench_shape.
    """

    layer: Layer
    sample_args: Callable[..., tuple]
    shapes: tuple
    hypers: tuple = ({},)
    value_kinds: tuple = ("wide", "ties", "extreme")
    edge_cases: tuple = ()
    error_cases: tuple = ()
    mutants: tuple = ()
    dtypes: tuple = DTYPES
    supports: frozenset = frozenset(FLAGS)
    not_applicable: frozenset = frozenset()
    finite_differences: bool = True
    notes: str = ""
    bench_shape: Optional[tuple] = None
    bench_hyper: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.layer.name

    def args(self, seed: int, dtype=jnp.float64, shape=None, kind: str = "normal") -> tuple:
        """Sample arguments from a seed (the first shape unless one is given)."""
        return self.sample_args(np.random.default_rng(seed), dtype, self.shapes[0] if shape is None else shape, kind)


def _validate(info: LayerInfo) -> None:
    unknown = (set(info.supports) | set(info.not_applicable)) - set(FLAGS) - {jnp.dtype(d).name for d in DTYPES}
    if unknown:
        raise ValueError(f"register({info.name}): unknown support flags {sorted(unknown)}; known: {FLAGS}")


class Registry:
    """LayerInfos by name, in registration order. ``REGISTRY`` is the default one, for your layers
    (``builtin_registry()`` gives jaxback's); make more (``Registry([info, ...])``), or undo what a
    test registers with ``scoped()``."""

    def __init__(self, infos=()):
        self._infos: dict[str, LayerInfo] = {}
        for info in infos:
            self.register(info)

    def register(self, info: LayerInfo, *, replace: bool = False) -> LayerInfo:
        """Add ``info``; returns it. Registering the same entry again is a no-op; another entry
        with a taken name raises ``ValueError`` unless ``replace=True``."""
        _validate(info)
        if info.name in self._infos and self._infos[info.name] is not info and not replace:
            raise ValueError(f"register: a layer named {info.name!r} is already registered; pass replace=True "
                             f"to replace it, unregister({info.name!r}) first, or register inside "
                             f"REGISTRY.scoped() (or a Registry of your own)")
        self._infos[info.name] = info
        return info

    def unregister(self, name) -> LayerInfo:
        """Remove the entry named ``name`` (or the LayerInfo ``name``); returns it."""
        return self._infos.pop(self.lookup(getattr(name, "name", name)).name)

    def clear(self) -> None:
        self._infos.clear()

    def registered(self) -> tuple:
        return tuple(self._infos.values())

    def lookup(self, name: str) -> LayerInfo:
        try:
            return self._infos[name]
        except KeyError:
            raise KeyError(f"no layer named {name!r} is registered; known: {sorted(self._infos)}") from None

    def __contains__(self, name) -> bool:
        return name in self._infos

    def __len__(self) -> int:
        return len(self._infos)

    @contextlib.contextmanager
    def scoped(self):
        """``with registry.scoped(): ...``: entries registered, replaced or removed inside are
        undone on exit (for tests that register layers of their own)."""
        saved = dict(self._infos)
        try:
            yield self
        finally:
            self._infos = saved


REGISTRY = Registry()  # the user's: jaxback's own entries are in _builtin.builtin_registry()


def register(info: LayerInfo, *, replace: bool = False) -> LayerInfo:
    """``REGISTRY.register``: add ``info`` to the default registry; returns it."""
    return REGISTRY.register(info, replace=replace)


def unregister(name) -> LayerInfo:
    """``REGISTRY.unregister``."""
    return REGISTRY.unregister(name)


def registered() -> tuple[LayerInfo, ...]:
    """Every LayerInfo in the default registry (yours, not jaxback's), in registration order."""
    return REGISTRY.registered()
