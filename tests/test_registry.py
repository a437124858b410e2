"""Every test generated from the layer registry: each entry x each applicable check.

The checks themselves live in the package (``jaxback.testing._generate``): this module is what a
user's suite writes for its own layers, ``pytest_tests(infos)``, over jaxback's registry. Checks a
layer does not support (its ``supports`` flags and ``dtypes``) show as skips; the conformance table
(tests/test_conformance.py) is built from the same data.
"""

import jaxback as jb
from jaxback.testing import builtin_registry, pytest_tests

INFOS = builtin_registry().registered()

test_registry = pytest_tests(INFOS, name="registry")


def test_every_exported_layer_is_registered():
    exported = {getattr(jb, n).name for n in jb.__all__ if isinstance(getattr(jb, n), jb.Layer)}
    assert exported <= {i.name for i in INFOS}, exported - {i.name for i in INFOS}


def test_every_layer_has_edge_error_and_mutant_entries():
    thin = [i.name for i in INFOS if not (i.edge_cases and i.error_cases and len(i.mutants) >= 2)]
    assert not thin, f"every jaxback layer needs edge cases, error cases and at least 2 mutants: {thin}"
