"""jaxback's own layers' registry entries, loaded on first use (one ``_entries_*`` module per family).

They live apart from the default registry, ``REGISTRY``, which is yours: a layer of your own may be
named "tanh" or "linear" without colliding with jaxback's, and ``pytest_tests(registered())`` runs
your entries only. Nor does ``import jaxback.testing`` import them: their constant sample arrays
start JAX's backend and compile eager ops, which was most of that import's time.
"""

from __future__ import annotations

import functools
import importlib

from ._registry import REGISTRY, LayerInfo, Registry

__all__ = ["builtin_registry", "lookup"]

MODULES = ("_entries_core", "_entries_losses", "_entries_misc", "_entries_attention", "_entries_attention_tiled",
           "_entries_attention_cross", "_entries_attention_dropout", "_entries_norm", "_entries_group_norm",
           "_entries_conv", "_entries_conv1d", "_entries_conv_transpose", "_entries_lstm", "_entries_gru",
           "_entries_mean", "_entries_upsample", "_entries_models", "_entries_remat")


@functools.cache
def _entries() -> tuple[LayerInfo, ...]:
    return tuple(info for name in MODULES for info in importlib.import_module(f".{name}", __package__).ENTRIES)


def builtin_registry() -> Registry:
    """A new :class:`Registry` of jaxback's own layers' entries (the ``_entries_*`` modules are
    imported on the first call), in the order of ``tests/test_registry.py``. Each call gives a fresh
    registry of the same LayerInfo objects, so editing one changes neither the next call's nor yours.

    ``builtin_registry().lookup("linear")`` is jaxback's linear entry (its sample inputs, edge cases,
    mutants), e.g. to check a variant of the rule: ``dataclasses.replace(info, layer=my_linear)``."""
    return Registry(_entries())


def lookup(name: str) -> LayerInfo:
    """The entry named ``name``: yours if the default registry (``REGISTRY``) has one, else jaxback's
    own (``builtin_registry().lookup(name)``, loaded on first need)."""
    if name in REGISTRY:
        return REGISTRY.lookup(name)
    builtin = builtin_registry()
    if name in builtin:
        return builtin.lookup(name)
    raise KeyError(f"no layer named {name!r} is registered; yours: {sorted(i.name for i in REGISTRY.registered())}, "
                   f"jaxback's: {sorted(i.name for i in builtin.registered())}")
