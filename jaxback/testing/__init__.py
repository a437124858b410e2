"""Public checkers for hand-written gradients: use them on your own layers and custom_vjp functions.

    from jaxback.testing import check_vjp
    check_vjp(my_layer, params, x)                          # a jaxback Layer: reference = my_layer.auto
    check_vjp(my_custom_vjp_fn, x, reference=plain_fn)      # any callable with a custom VJP
    check_jvp(my_layer, params, x)                          # its hand forward-mode rule (jvp=), the same way

Both raise AssertionError with a readable report. A ``LayerInfo`` describes a layer's sample inputs,
edge inputs, error inputs, mutants, dtypes and support flags; ``run_checks(info)`` runs every check
generated from it (no pytest needed) and ``pytest_tests([info, ...])`` makes them one parametrised
pytest test. ``register(info)`` adds yours to the default registry, ``REGISTRY`` (``registered()``
lists them); jaxback's own layers' entries are a registry of their own, ``builtin_registry()``,
loaded on first use (``tests/test_registry.py`` is ``pytest_tests(builtin_registry().registered())``),
so a layer of yours may share a name with one of jaxback's. ``lookup(name)`` finds yours first, then
jaxback's.

Nothing here imports pytest or hypothesis at import time: ``jaxback.testing.strategies`` (hypothesis
strategies for ``@given`` tests) needs the test extra, ``pip install 'jaxback[test]'``.
"""

from ._check_jvp import check_jvp, random_tangent
from ._check_vjp import check_vjp, random_cotangent
from ._generate import GeneratedCheck, generated_checks
from ._pytest import pytest_tests
from ._builtin import builtin_registry, lookup
from ._registry import (DTYPES, FLAGS, REGISTRY, EdgeCase, ErrorCase, LayerInfo, Mutant, Registry, register,
                        registered, unregister)
from ._runner import CheckReport, run_checks
from ._tolerances import RTOL, rtol_for
from . import strategies  # plain numpy at import; its strategies import hypothesis when called

__all__ = [
    "check_vjp", "random_cotangent", "check_jvp", "random_tangent", "rtol_for", "RTOL", "strategies",
    "run_checks", "CheckReport", "pytest_tests", "generated_checks", "GeneratedCheck",
    "LayerInfo", "EdgeCase", "ErrorCase", "Mutant", "FLAGS", "DTYPES",
    "Registry", "REGISTRY", "register", "unregister", "registered", "lookup", "builtin_registry",
]
