"""The memory claim, per registered layer at its benchmark shape: the hand rule never keeps more
residuals than autodiff of ``.auto``, and its jitted VJP never allocates more compiled temp, with or
without the layer's output (``benchmarks/memory_audit.py`` prints the same numbers as a table).

Only compiled (never run) at the benchmark shapes, apart from one forward for the residuals.
"""

import functools

import jax
import jax.numpy as jnp
import pytest

from jaxback._layer import saved_only
from jaxback.testing import builtin_registry, random_cotangent
from jaxback.testing.memory import compiled_temp_bytes, residual_bytes

BENCHED = [info for info in builtin_registry().registered() if info.bench_shape is not None]


@pytest.fixture(params=BENCHED, ids=lambda info: info.name)
def bench(request):
    info = request.param
    args = info.args(0, dtype="float32", shape=info.bench_shape)
    hand = functools.partial(info.layer.apply, **info.bench_hyper)
    auto = functools.partial(info.layer.auto, **info.bench_hyper)
    return args, hand, auto


def test_hand_rule_keeps_no_more_residuals_than_autodiff(bench):
    args, hand, auto = bench
    assert residual_bytes(hand, *args) <= residual_bytes(auto, *args)


@pytest.mark.parametrize("with_output", [False, True], ids=["grad", "output+grad"])
def test_hand_rule_allocates_no_more_compiled_temp_than_autodiff(bench, with_output):
    args, hand, auto = bench
    y_bar = random_cotangent(auto(*args))
    temp = functools.partial(compiled_temp_bytes, args=args, y_bar=y_bar, with_output=with_output)
    assert temp(hand) <= temp(auto)


def test_saved_only_pins_traced_floating_residuals_only():
    def barriers(*res):
        eqns = jax.make_jaxpr(lambda *r: saved_only(r))(*res).eqns
        return [len(e.invars) for e in eqns if e.primitive.name == "optimization_barrier"]

    assert barriers(jnp.ones(3), jnp.arange(3), jax.random.PRNGKey(0)) == [1]  # the float only
    assert barriers(jnp.arange(3), jax.random.PRNGKey(0)) == [0]  # integers and keys stay shareable
    concrete = (jnp.ones(3), None, 2.0)
    assert saved_only(concrete)[0] is concrete[0]  # op by op: passed through untouched
