"""Public checkers for hand-written gradients: use them on your own layers.

    from jaxback.testing import check_vjp
    check_vjp(my_layer, params, x)            # raises AssertionError with a readable report

``jaxback.testing.strategies`` holds hypothesis strategies for layer inputs.
"""

from . import strategies
from ._check_vjp import check_vjp, random_cotangent
from ._tolerances import RTOL, rtol_for

__all__ = ["check_vjp", "random_cotangent", "rtol_for", "RTOL", "strategies"]
