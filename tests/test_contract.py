"""The layer contract, checked on every row of LAYERS_UNDER_TEST.

Hand rule vs autodiff with a random cotangent (never grad(sum(f))), float64 near-exact plus finite
differences, edge values, float32/bfloat16/float16, jit, vmap, reverse-over-reverse.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, strategies as st

import jaxback as jb
from jaxback.testing import check_vjp, random_cotangent
from jaxback.testing._tolerances import mismatch, rtol_for
from jaxback.testing.strategies import seeds

from layer_table import LAYERS_UNDER_TEST

cases = pytest.mark.parametrize("case", LAYERS_UNDER_TEST, ids=lambda c: c.id)


def _draw(data, case, dtype, kinds=("normal",)):
    shape = data.draw(st.sampled_from(case.shapes), label="shape")
    hyper = data.draw(st.sampled_from(case.hypers), label="hyper")
    kind = data.draw(st.sampled_from(kinds), label="kind")
    rng = np.random.default_rng(data.draw(seeds(), label="seed"))
    return case.make_args(rng, dtype, shape, kind), hyper


def _float_positions(args):
    return [i for i, a in enumerate(args)
            if all(jnp.issubdtype(l.dtype, jnp.floating) for l in jax.tree_util.tree_leaves(a))]


def _vjp_fn(fn, hyper, args, y_bar):
    return jax.vjp(functools.partial(fn, **hyper), *args)[1](y_bar)


def _assert_trees_close(hand, auto):
    for h, a in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves(auto)):
        if jnp.issubdtype(a.dtype, jnp.floating):
            found = mismatch(h, a, rtol_for(a.dtype))
            assert found is None, found


def test_every_exported_layer_is_in_the_table():
    exported = {getattr(jb, n).name for n in jb.__all__ if isinstance(getattr(jb, n), jb.Layer)}
    assert exported == {c.id for c in LAYERS_UNDER_TEST}


@cases
@given(data=st.data())
def test_float64_matches_autodiff_and_finite_differences(case, data):
    args, hyper = _draw(data, case, jnp.float64)
    check_vjp(case.layer, *args, fd=True, **hyper)


@cases
@given(data=st.data())
def test_edge_values_match_autodiff(case, data):
    args, hyper = _draw(data, case, jnp.float64, case.edge_kinds)
    check_vjp(case.layer, *args, fd=False, **hyper)  # kinks and infinities: no difference quotient


@cases
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16], ids=str)
@given(data=st.data())
def test_low_precision_matches_autodiff(case, dtype, data):
    args, hyper = _draw(data, case, dtype, ("normal", "ties"))
    check_vjp(case.layer, *args, fd=False, **hyper)


@cases
@given(data=st.data())
def test_jit_vjp_matches_eager(case, data):
    args, hyper = _draw(data, case, jnp.float64)
    y_bar = random_cotangent(case.layer.auto(*args, **hyper))
    hand_jit = jax.jit(functools.partial(_vjp_fn, case.layer.apply, hyper))(args, y_bar)
    auto_jit = jax.jit(functools.partial(_vjp_fn, case.layer.auto, hyper))(args, y_bar)
    _assert_trees_close(hand_jit, auto_jit)
    _assert_trees_close(hand_jit, _vjp_fn(case.layer.apply, hyper, args, y_bar))


@cases
@given(data=st.data())
def test_vmap_of_vjp_equals_a_loop(case, data):
    """Per-example VJPs: vmap over a stack of 3 examples (same shape and hyper) equals a loop."""
    args0, hyper = _draw(data, case, jnp.float64)
    rng = np.random.default_rng(data.draw(seeds(), label="seed"))
    shape_of = lambda a: jax.tree_util.tree_map(jnp.shape, a)
    examples = [args0] + [case.make_args(rng, jnp.float64, _leading_shape(case, args0), "normal")
                          for _ in range(2)]
    assert len({str(shape_of(a)) for a in examples}) == 1
    stack = lambda trees: jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)
    y_bars = [random_cotangent(case.layer.auto(*a, **hyper), seed=i) for i, a in enumerate(examples)]
    batched = jax.vmap(functools.partial(_vjp_fn, case.layer.apply, hyper))(stack(examples), stack(y_bars))
    looped = [_vjp_fn(case.layer.auto, hyper, a, g) for a, g in zip(examples, y_bars)]
    _assert_trees_close(batched, stack(looped))


def _leading_shape(case, args):
    """The table shape that produced ``args`` (the shape of the first array argument)."""
    first = args[1] if case.layer.takes_params else args[0]
    return tuple(first.shape)


@cases
@given(data=st.data())
def test_grad_of_grad_matches_autodiff(case, data):
    """Reverse over reverse: differentiate <vjp(args)(y_bar), v> once more, w.r.t. the inputs."""
    args, hyper = _draw(data, case, jnp.float64)
    pos = _float_positions(args)
    y_bar = random_cotangent(case.layer.auto(*args, **hyper), seed=1)
    v = random_cotangent(tuple(args[i] for i in pos), seed=2)

    def pairing(fn, float_args):
        full = list(args)
        for i, a in zip(pos, float_args):
            full[i] = a
        cot = _vjp_fn(fn, hyper, full, y_bar)
        return sum(jnp.vdot(c, w) for c, w in
                   zip(jax.tree_util.tree_leaves([cot[i] for i in pos]), jax.tree_util.tree_leaves(v)))

    float_args = tuple(args[i] for i in pos)
    hand = jax.grad(functools.partial(pairing, case.layer.apply))(float_args)
    auto = jax.grad(functools.partial(pairing, case.layer.auto))(float_args)
    _assert_trees_close(hand, auto)
