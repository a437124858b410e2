"""run_checks, pytest_tests and the registry, on a layer defined here (as a user would)."""

import dataclasses
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import Phase, settings

import jaxback as jb
from jaxback.testing import (EdgeCase, ErrorCase, LayerInfo, Mutant, Registry, builtin_registry, lookup, pytest_tests,
                             register, registered, run_checks, unregister)


# a user's layer: y = x * |x| (a kink-free odd square), with its own registry entry -------------------------
def _auto(x):
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"signed_square: x must be floating; got {x.dtype}")
    return x * jnp.abs(x)


def _fwd(x):
    return _auto(x), x


def _bwd(x, y_bar):
    return ((2 * jnp.abs(x) * y_bar).astype(x.dtype),)


SIGNED_SQUARE = jb.make_layer(_auto, _fwd, _bwd, name="signed_square")


def _sample_args(rng, dtype, shape, kind):
    return (jnp.asarray(jb.testing.strategies.values(rng, shape, kind), dtype),)


INFO = LayerInfo(
    SIGNED_SQUARE, _sample_args, shapes=((3,), (2, 4)), value_kinds=("wide", "ties"),
    edge_cases=(EdgeCase("zero", lambda dt: (jnp.zeros(3, dt),), "slope 0 at 0",
                         lambda y, cots: np.testing.assert_array_equal(cots[0], 0.0)),),
    error_cases=(ErrorCase("integer x", lambda: (jnp.arange(3),), TypeError, "must be floating"),),
    mutants=(Mutant("no abs", lambda x, g: (2 * x * g,)), Mutant("missing 2", lambda x, g: (jnp.abs(x) * g,))),
    supports=frozenset({"jit", "vmap", "grad_of_grad", "checkpoint", "scan", "symbolic_zeros"}),
    notes="no sharding test for a user's layer",
)

# the generated pytest tests, exactly as a user's test module gets them
test_signed_square = pytest_tests([INFO], name="signed_square")


def test_run_checks_runs_every_generated_check_without_pytest():
    report = run_checks(INFO)
    assert report.ok and not report.failed
    assert {"float64", "hard_values", "dtype[float32]", "sample[vmap]", "sample[grad_of_grad]", "edge[zero]",
            "error[integer x]", "mutant[no abs]", "mutant[missing 2]", "true_rule_survives",
            "injected_error"} <= set(report.passed)
    assert report.ran == report.passed
    assert str(report).startswith(f"run_checks(signed_square): {len(report.passed)} passed, 0 failed")


def test_run_checks_lists_every_failed_check():
    wrong = jb.make_layer(_auto, _fwd, lambda x, g: ((2 * x * g).astype(x.dtype),), name="signed_square_wrong")
    info = dataclasses.replace(INFO, layer=wrong, mutants=(Mutant("true rule", _bwd),))
    with pytest.raises(AssertionError) as err:
        run_checks(info, only=("float64", "sample", "mutant", "true_rule_survives"))
    message = str(err.value)
    assert message.startswith("run_checks(signed_square_wrong): ")
    for check in ("float64", "sample[jit]", "sample[grad_of_grad]", "sample[symbolic_zeros]", "true_rule_survives"):
        assert f"FAILED {check}: " in message, check
    assert "5 passed, 6 failed" in message  # vmap, scan, checkpoint...: the wrong rule agrees with itself
    assert "FAILED mutant[true rule]: signed_square_wrong: mutant 'true rule' survived" in message
    assert "check_vjp(signed_square_wrong" in message and "(drawn: shape=" in message
    report = run_checks(info, only=("float64",), raise_on_failure=False)
    assert [name for name, _ in report.failed] == ["float64"] and not report.passed


def test_run_checks_reports_skips_for_unsupported_flags_and_dtypes():
    info = dataclasses.replace(INFO, dtypes=(jnp.float64, jnp.float32), supports=frozenset({"jit"}))
    report = run_checks(info, only=("dtype", "sample[vmap]"))
    assert report.passed == ("dtype[float32]",)
    assert [name for name, _ in report.skipped] == ["dtype[bfloat16]", "dtype[float16]", "sample[vmap]"]


def test_registries_can_be_scoped_replaced_and_cleared():
    before = registered()
    with jb.testing.REGISTRY.scoped():
        register(INFO)
        assert lookup("signed_square") is INFO and registered()[-1] is INFO
        register(INFO)  # the same entry again: a no-op
        other = dataclasses.replace(INFO, notes="another entry, same name")
        with pytest.raises(ValueError, match=r"'signed_square' is already registered.*replace=True"):
            register(other)
        register(other, replace=True)
        assert lookup("signed_square") is other
        assert unregister("signed_square") is other and "signed_square" not in jb.testing.REGISTRY
        jb.testing.REGISTRY.clear()
        assert registered() == ()
    assert registered() == before  # the scope restored the default registry
    mine = Registry([INFO])
    assert mine.registered() == (INFO,) and INFO.name not in jb.testing.REGISTRY
    with pytest.raises(KeyError, match="no layer named 'nope' is registered"):
        mine.lookup("nope")


def test_a_users_layer_may_take_the_name_of_one_of_jaxbacks():
    """The default registry is the user's: jaxback's own entries are in builtin_registry()."""
    builtin = builtin_registry()
    jaxbacks_tanh = builtin.lookup("tanh")
    assert jaxbacks_tanh.layer is jb.tanh and "tanh" not in jb.testing.REGISTRY
    mine = dataclasses.replace(INFO, layer=jb.make_layer(_auto, _fwd, _bwd, name="tanh"))
    with jb.testing.REGISTRY.scoped():
        jb.testing.REGISTRY.clear()
        assert register(mine) is mine and registered() == (mine,)  # no collision, and only mine
        assert lookup("tanh") is mine and builtin_registry().lookup("tanh") is jaxbacks_tanh
    assert lookup("tanh") is jaxbacks_tanh  # nothing of mine named tanh: jaxback's
    builtin.unregister("tanh")  # each call is a fresh registry: editing one leaves the next intact
    assert "tanh" in builtin_registry() and len(builtin_registry()) == len(builtin) + 1
    with pytest.raises(KeyError, match=r"no layer named 'nope' is registered; yours: .*jaxback's: \[.*'tanh'"):
        lookup("nope")


def test_importing_jaxback_testing_loads_none_of_jaxbacks_entries():
    """The ``_entries_*`` modules load on the first builtin_registry() call, not at import."""
    code = ("import sys, jaxback.testing as t; loaded = lambda: sorted(m for m in sys.modules if '._entries_' in m); "
            "print(loaded()); t.builtin_registry(); print(len(loaded()))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", str(len(jb.testing._builtin.MODULES))], done.stdout


@pytest.fixture
def one_example_no_shrinking():
    """Shrinking a failure re-runs the check hundreds of times: this test only needs the verdicts."""
    settings.register_profile("_before_one_example", settings())
    settings.register_profile("_one_example", max_examples=1, phases=[Phase.generate], deadline=None)
    settings.load_profile("_one_example")
    yield
    settings.load_profile("_before_one_example")


def test_pytest_tests_fail_a_wrong_rule(one_example_no_shrinking):
    """The test pytest_tests builds, called on each of its parameters: the wrong rule fails the
    checks against autodiff and the harness check, its mutant still dies, unsupported checks skip."""
    wrong = jb.make_layer(lambda x: x ** 3, lambda x: (x ** 3, x), lambda x, g: (2 * x * x * g,), name="cube")
    info = LayerInfo(wrong, _sample_args, shapes=((3,),), mutants=(Mutant("zero", lambda x, g: (0 * g,)),),
                     dtypes=(jnp.float64,), supports=frozenset({"jit"}))
    test = pytest_tests([info], name="cube")
    assert test.__name__ == "test_cube"
    (mark,) = test.pytestmark
    outcome = {}
    for param in mark.args[1]:
        (check,) = param.values
        try:
            test(check)
            outcome[param.id] = "passed"
        except AssertionError:
            outcome[param.id] = "failed"
        except pytest.skip.Exception as skip:
            outcome[param.id] = f"skipped: {skip.msg}"
    assert {k for k, v in outcome.items() if v == "failed"} == {
        "cube-float64", "cube-hard_values", "cube-sample[jit]", "cube-true_rule_survives"}
    assert outcome["cube-mutant[zero]"] == "passed" and outcome["cube-sample[zero_cotangent]"] == "passed"
    assert outcome["cube-sample[vmap]"] == "skipped: cube does not support vmap: "
    assert outcome["cube-dtype[float32]"].startswith("skipped: cube does not support float32")
