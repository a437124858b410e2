"""What lstm and gru share: a long sequence stays finite and matches autodiff, the backward
through time is written by hand (one reverse scan, no JAX autodiff inside), and so is the tangent
rule (one forward scan)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _recurrent import vjp as _vjp
from jaxback import gru, gru_state, lstm, lstm_state
from jaxback.testing import random_cotangent
from jaxback.testing._entries_gru import faulty_step_jvp, sample_args as gru_args
from jaxback.testing._entries_lstm import faulty_cell_jvp, sample_args as lstm_args

LAYERS = {"lstm": (lstm, lstm_state, lstm_args), "gru": (gru, gru_state, gru_args)}
FAULTY_JVP = {"lstm": faulty_cell_jvp, "gru": faulty_step_jvp}
by_layer = pytest.mark.parametrize("name", sorted(LAYERS))


@by_layer
def test_long_sequence_is_finite_and_matches_autodiff(name):
    """200 steps in float32: the hand VJP and the hand JVP stay finite and agree with autodiff's."""
    layer, state_of, sample = LAYERS[name]
    _, xs, _ = sample(np.random.default_rng(0), jnp.float32, (200, 2, 3), "wide")
    params, state = layer.init(jax.random.PRNGKey(0), 3, 4), state_of(2, 4)
    y = jax.jit(layer)(params, xs, state)
    y_bar = random_cotangent(y)
    hand = jax.jit(functools.partial(_vjp, layer))((params, xs, state), y_bar)
    auto = jax.jit(functools.partial(_vjp, layer.auto))((params, xs, state), y_bar)
    tangents = random_cotangent((params, xs, state), seed=1)  # random arrays of the inputs' shapes
    y_dot = lambda f: jax.jit(lambda t: jax.jvp(f, (params, xs, state), t)[1])(tangents)
    hand, auto = (hand, y_dot(layer)), (auto, y_dot(layer.auto))
    for leaf in jax.tree_util.tree_leaves((y, hand)):
        assert jnp.all(jnp.isfinite(leaf))
    for h, a in zip(jax.tree_util.tree_leaves(hand), jax.tree_util.tree_leaves(auto), strict=True):
        np.testing.assert_allclose(h, a, rtol=1e-4, atol=1e-4)


def _all_eqns(jaxpr):
    """Every equation, descending into sub-jaxprs (jit, scan bodies)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            sub = value if hasattr(value, "eqns") else getattr(value, "jaxpr", None)
            if hasattr(sub, "eqns"):
                yield from _all_eqns(sub)


def _refuse(*_, **__):
    raise AssertionError("the hand rule called JAX autodiff")


@by_layer
def test_backward_uses_no_autodiff(name, monkeypatch):
    """bwd is written by hand: it runs with jax's differentiation entry points broken, and its
    jaxpr holds one reverse scan (BPTT) and no custom-derivative call."""
    layer, _, sample = LAYERS[name]

    jax.clear_caches()  # bwd's jit must re-trace under the patch, not reuse an earlier trace
    for entry in ("vjp", "grad", "value_and_grad", "linearize", "linear_transpose", "jacrev"):
        monkeypatch.setattr(jax, entry, _refuse)
    y, res = layer.fwd(*sample(np.random.default_rng(0), jnp.float64, (4, 2, 3), "normal"))
    y_bar = random_cotangent(y)
    layer.bwd(res, y_bar)
    eqns = list(_all_eqns(jax.make_jaxpr(layer.bwd)(res, y_bar).jaxpr))
    scans = [e for e in eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and scans[0].params["reverse"]
    assert not any("custom" in e.primitive.name for e in eqns)


@by_layer
def test_tangent_rule_is_one_forward_scan_without_autodiff(name, monkeypatch):
    """jvp is written by hand: it runs with jax's forward-mode entry points broken, its jaxpr holds
    one forward scan (the state and its tangent side by side), and the registry's faulty jvp with
    no fault is the real rule, so the jvp mutants' kills are real."""
    layer, _, sample = LAYERS[name]
    primals = sample(np.random.default_rng(0), jnp.float64, (4, 2, 3), "normal")
    tangents = random_cotangent(primals, seed=1)
    jax.tree_util.tree_map(np.testing.assert_array_equal, FAULTY_JVP[name](None)(primals, tangents),
                           layer.jvp(primals, tangents))
    jax.clear_caches()  # jvp's jit must re-trace under the patch
    for entry in ("jvp", "linearize", "jacfwd", "vjp", "grad"):
        monkeypatch.setattr(jax, entry, _refuse)
    eqns = list(_all_eqns(jax.make_jaxpr(layer.jvp)(primals, tangents).jaxpr))
    scans = [e for e in eqns if e.primitive.name == "scan"]
    assert len(scans) == 1 and not scans[0].params["reverse"]
    assert not any("custom" in e.primitive.name for e in eqns)
