"""Public checkers for hand-written gradients: use them on your own layers.

    from jaxback.testing import check_vjp
    check_vjp(my_layer, params, x)            # raises AssertionError with a readable report

The registry (``LayerInfo``, ``register``, ``registered``) describes each layer's sample inputs,
edge inputs, error inputs, mutants, dtypes and support flags; ``tests/test_registry.py`` generates
every test from it, and users can register their own layers to get the same checks.
``jaxback.testing.strategies`` holds hypothesis strategies for layer inputs.
"""

from . import strategies
from ._check_vjp import check_vjp, random_cotangent
from ._registry import DTYPES, FLAGS, EdgeCase, ErrorCase, LayerInfo, Mutant, lookup, register, registered
from ._tolerances import RTOL, rtol_for
from . import _builtin  # noqa: F401  (registers jaxback's own layers)

__all__ = [
    "check_vjp", "random_cotangent", "rtol_for", "RTOL", "strategies",
    "LayerInfo", "EdgeCase", "ErrorCase", "Mutant", "FLAGS", "DTYPES", "register", "registered", "lookup",
]
