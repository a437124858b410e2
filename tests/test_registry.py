"""Every test generated from the layer registry: each entry x each applicable check.

Checks a layer does not support (its ``supports`` flags and ``dtypes``) are skipped, and show as
skips in the report; the conformance table (tests/test_conformance.py) is built from the same data.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import jaxback as jb
from jaxback._layer import split_keywords
from jaxback.testing import Mutant, check_vjp, registered
from jaxback.testing._checks import (SAMPLE_CHECKS, check_edge_case, check_error_case,
                                     injected_error_is_caught, mutant_is_killed)
from jaxback.testing.strategies import seeds

INFOS = registered()
# Structural checks (dtypes, jit, vmap, ...): one example per CI run (a new shape compiles anew),
# 50 in the thorough profile.
FEW = settings(max_examples=max(1, settings().max_examples // 4))
by_info = pytest.mark.parametrize("info", INFOS, ids=lambda i: i.name)


def _pairs(attribute):
    return [pytest.param(info, item, id=f"{info.name}-{item.name}")
            for info in INFOS for item in getattr(info, attribute)]


def _draw(data, info, dtype=jnp.float64, kinds=("normal",), shape=None, hyper=None):
    shape = data.draw(st.sampled_from(info.shapes), label="shape") if shape is None else shape
    hyper = data.draw(st.sampled_from(info.hypers), label="hyper") if hyper is None else hyper
    kind = data.draw(st.sampled_from(kinds), label="kind")
    rng = np.random.default_rng(data.draw(seeds(), label="seed"))
    return info.sample_args(rng, dtype, shape, kind), hyper, shape


def test_every_exported_layer_is_registered():
    exported = {getattr(jb, n).name for n in jb.__all__ if isinstance(getattr(jb, n), jb.Layer)}
    assert exported <= {i.name for i in INFOS}, exported - {i.name for i in INFOS}


@by_info
@given(data=st.data())
def test_float64_matches_autodiff_and_finite_differences(info, data):
    args, hyper, _ = _draw(data, info)
    check_vjp(info.layer, *args, fd=info.finite_differences, **hyper)


@by_info
@given(data=st.data())
def test_hard_random_values_match_autodiff(info, data):
    args, hyper, _ = _draw(data, info, kinds=info.value_kinds)
    check_vjp(info.layer, *args, fd=False, **hyper)  # kinks and infinities: no difference quotient


@by_info
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=lambda d: jnp.dtype(d).name)
@FEW
@given(data=st.data())
def test_low_precision_matches_autodiff(info, dtype, data):
    if dtype not in info.dtypes:
        pytest.skip(f"{info.name} does not support {jnp.dtype(dtype).name}: {info.notes}")
    args, hyper, _ = _draw(data, info, dtype, ("normal", "ties"))
    check_vjp(info.layer, *args, fd=False, **hyper)


@by_info
@pytest.mark.parametrize("check", SAMPLE_CHECKS, ids=str)
@FEW
@given(data=st.data())
def test_sample_check(info, check, data):
    fn, flag = SAMPLE_CHECKS[check]
    if flag is not None and flag not in info.supports:
        pytest.skip(f"{info.name} does not support {flag}: {info.notes}")
    args, hyper, shape = _draw(data, info)
    if check in ("vmap", "scan"):  # two more examples of the same shape and hyperparameters
        more = [_draw(data, info, shape=shape, hyper=hyper)[0] for _ in range(2)]
        fn(info, args, hyper, more)
    else:
        fn(info, args, hyper)


@pytest.mark.parametrize("info, case", _pairs("edge_cases"))
def test_edge_case_behaves_as_documented(info, case):
    check_edge_case(info, case)


@pytest.mark.parametrize("info, case", _pairs("error_cases"))
def test_error_case_raises_the_documented_error(info, case):
    check_error_case(info, case)


def _samples(info, seed=0):
    return [(info.args(seed, shape=s), h) for s in info.shapes for h in info.hypers]


@pytest.mark.parametrize("info, mutant", _pairs("mutants"))
def test_mutant_is_killed(info, mutant):
    assert mutant_is_killed(info, mutant, _samples(info)), f"{info.name}: mutant {mutant.name!r} survived"


@by_info
def test_the_mutant_harness_accepts_the_true_rule(info):
    """So that every kill above is real: the same harness with the layer's own bwd survives."""
    assert not mutant_is_killed(info, Mutant("none", info.layer.bwd), _samples(info))


@by_info
def test_every_layer_has_edge_error_and_mutant_entries(info):
    assert info.edge_cases and info.error_cases and len(info.mutants) >= 2


@by_info
def test_a_relative_error_of_1e_minus_4_in_any_cotangent_is_caught(info):
    shape = max(info.shapes, key=lambda s: np.prod(s))  # non-empty, the largest sample
    for hyper in info.hypers:
        args = info.args(0, shape=shape)
        y, res = info.layer.fwd(*args, **hyper)
        n_leaves = len(jax.tree_util.tree_leaves(info.layer.bwd(res, y, **split_keywords(hyper)[0])))
        for leaf in range(n_leaves):
            assert injected_error_is_caught(info, args, hyper, leaf), f"{info.name}: leaf {leaf}, {hyper}"
