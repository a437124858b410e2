"""jaxback.testing.strategies for users' own @given tests: shapes, params, whole layer calls, and
shrinking at work (the classic wrong bias rule shrinks to the smallest batch that exposes it)."""

import dataclasses
import subprocess
import sys

import jax.numpy as jnp
import pytest
from hypothesis import HealthCheck, find, given, settings, strategies as st

import jaxback as jb
from jaxback.testing import check_vjp, lookup, strategies


def _mean_bias_bwd(res, y_bar):
    """linear's rule with the classic bug: b_bar = y_bar.mean(0) (right only for a batch of 1)."""
    params_bar, x_bar = jb.linear.bwd(res, y_bar)
    return params_bar._replace(b=y_bar.reshape(-1, y_bar.shape[-1]).mean(0).astype(params_bar.b.dtype)), x_bar


MEAN_BIAS = jb.make_layer(jb.linear.auto, jb.linear.fwd, _mean_bias_bwd, name="linear_mean_bias", init=jb.linear.init)


def test_the_wrong_bias_rule_shrinks_to_a_batch_of_2():
    """Batch 1 cannot tell mean from sum; batch 2 is the minimal failing example, and every value
    choice shrinks to its simplest (the first setting and kind, seed 0)."""
    info = dataclasses.replace(lookup("linear"), layer=MEAN_BIAS)
    calls = strategies.layer_calls(info, shapes=strategies.shapes(batch=(1, 8), trailing=(5,)))

    def fails(call):
        try:
            check_vjp(info.layer, *call.args, fd=False, jit=False, **call.hyper)
        except AssertionError:
            return True
        return False

    minimal = find(calls, fails, settings=settings(max_examples=50, database=None, derandomize=True, deadline=None))
    assert minimal.shape == (2, 5)
    assert minimal.hyper == info.hypers[0]
    assert repr(minimal) == "LayerCall(shape=(2, 5), hyper={}, dtype=float64, kind='normal', seed=0)"
    one_smaller = strategies.LayerCall(info.args(0, shape=(1, 5)), {}, (1, 5), jnp.float64, "normal", 0)
    assert not fails(one_smaller)  # batch 2 is minimal: a batch of 1 passes


@given(shape=strategies.shapes(batch=(1, 3), trailing=(4, 2)))
def test_shapes_draw_a_batch_then_the_trailing_axes(shape):
    assert 1 <= shape[0] <= 3 and shape[1:] == (4, 2)


@given(shape=strategies.shapes(choices=[(2,), (3, 4)]))
def test_shapes_draw_from_a_fixed_set(shape):
    assert shape in [(2,), (3, 4)]


@settings(max_examples=3, suppress_health_check=[HealthCheck.too_slow])
@given(params=strategies.params(jb.linear, st.sampled_from([2, 4]), 3))
def test_params_come_from_the_layers_init(params):
    assert isinstance(params, jb.LinearParams) and params.w.shape[1] == 3 and params.w.shape[0] in (2, 4)
    assert params.b.shape == (3,)


@settings(max_examples=2)
@given(call=strategies.layer_calls(lookup("tanh"), dtype=jnp.float32, kinds=("wide",)))
def test_layer_calls_are_whole_calls_of_a_registered_layer(call):
    assert call.args[0].dtype == jnp.float32 and call.args[0].shape == call.shape
    check_vjp(jb.tanh, *call.args, fd=False, **call.hyper)


def test_params_refuse_a_layer_without_init():
    with pytest.raises(TypeError, match=r"strategies.params\(relu\): the layer has no init"):
        strategies.params(jb.relu)


def test_strategies_without_hypothesis_raise_an_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # what an install without the extra sees
    with pytest.raises(ImportError, match=r"pip install 'jaxback\[test\]'"):
        strategies.seeds()
    assert strategies.values(__import__("numpy").random.default_rng(0), (2,)).shape == (2,)  # numpy only


def test_importing_jaxback_testing_imports_neither_pytest_nor_hypothesis():
    code = ("import sys, jaxback as jb; jb.testing.check_vjp; jb.testing.run_checks; "
            "print(sorted({'pytest', 'hypothesis', '_pytest'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
