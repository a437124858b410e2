"""pytest_tests: the generated checks of your layers as one parametrised pytest test.

In a test module of your own::

    from jaxback.testing import pytest_tests
    test_my_layers = pytest_tests([MY_INFO])          # or pytest_tests(my_registry.registered())

Each check is one test, ``test_my_layers[<layer>-<check>]``; unsupported ones show as skips.
Checks that draw inputs run under hypothesis (your profile's ``max_examples``, a quarter of it for
the structural checks, at least one; ``deadline=None``: every new shape compiles). pytest and
hypothesis are imported when this is called, never when ``jaxback.testing`` is imported.
"""

from __future__ import annotations

from ._generate import generated_checks
from .strategies import DrawChooser, require_hypothesis

__all__ = ["pytest_tests"]


def _run_under_hypothesis(check):
    hypothesis = require_hypothesis()
    profile = hypothesis.settings()
    examples = profile.max_examples if check.draws == "many" else max(1, profile.max_examples // 4)
    checks = hypothesis.HealthCheck

    @hypothesis.settings(profile, max_examples=examples, deadline=None,
                         suppress_health_check=[checks.too_slow, checks.data_too_large])
    @hypothesis.given(data=hypothesis.strategies.data())
    def run(data):
        check.run(DrawChooser(lambda strategy, label: data.draw(strategy, label=label)))

    # one example database entry per check, as hypothesis' own stateful tests do (else every
    # check would replay the others' failures)
    run.hypothesis.inner_test._hypothesis_internal_add_digest = check.id.encode()
    run()


def pytest_tests(infos, name: str = "generated"):
    """One pytest test function, parametrised over every generated check of every LayerInfo in
    ``infos``; assign it to a ``test_...`` name in a test module."""
    import pytest

    cases = [pytest.param(check, id=check.id) for info in infos for check in generated_checks(info)]

    @pytest.mark.parametrize("check", cases)
    def test(check):
        if check.skip:
            pytest.skip(check.skip)
        if check.draws == "none":
            check.run()
        else:
            _run_under_hypothesis(check)

    test.__name__ = test.__qualname__ = f"test_{name}"
    return test
