"""The derivatives that the docstrings state are proven, not just read.

For every elementwise layer and every loss, the statement in the module docstring (parsed by
``jaxback.testing._derivations``) is checked twice:

* symbolically: sympy differentiates the stated forward and ``simplify(diff - stated) == 0`` for
  every stated form of the derivative;
* numerically: the same text evaluated with JAX on a float64 grid equals the hand ``bwd`` (and the
  stated forward equals the layer's forward), so a docstring that drifts from the code fails.

A loss also states its forward-mode tangent ``loss_dot`` of the inputs' tangents ``<arg>_dot``:
sympy proves it equal to the directional derivative sum_u d loss/du * u_dot, and JAX evaluates it
against the hand ``jvp``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxback as jb
from jaxback import _activations, _losses
from jaxback.testing import _derivations as d

sp = pytest.importorskip("sympy")

ELEMENTWISE = d.elementwise_table(_activations)
LOSSES = {"softmax_cross_entropy": ("logits", "labels"), "mse": ("pred", "target"),
          "binary_cross_entropy_with_logits": ("logits", "targets")}
GRID = np.concatenate([np.linspace(-8.0, 8.0, 161), [0.0, -1e-3, 1e-3, 30.0, -30.0]])
HYPER_VALUES = {"negative_slope": 0.2}  # symbols of hyperparameters, and their numeric value


def _entry_id(e):
    return e.name + "".join(f"({k}={v})" for k, v in e.hyper.items())


def test_every_elementwise_layer_states_its_derivative():
    stated = {e.name for e in ELEMENTWISE}
    assert stated == set(_activations.__all__)
    assert any(e.name == "gelu" and e.hyper == {"approximate": True} for e in ELEMENTWISE)


def _symbolic(entry):
    x = sp.Symbol("x", real=True)
    ns = {**d.sympy_namespace(), "x": x}
    ns.update({k: sp.Symbol(k, positive=True) for k in HYPER_VALUES})
    ns = d.define(ns, entry.where)
    y = d.evaluate(entry.forward, ns)
    return x, y, [d.evaluate(form, {**ns, "y": y}) for form in entry.derivatives]


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=_entry_id)
def test_stated_derivative_is_the_derivative(entry):
    x, y, forms = _symbolic(entry)
    for text, form in zip(entry.derivatives, forms):
        assert sp.simplify(sp.diff(y, x) - form) == 0, f"{entry.name}: f' = {text} is not dy/dx of {entry.forward}"


def _hyper(entry):
    layer = getattr(jb, entry.name)
    names = {k for k, _ in entry.where if k in HYPER_VALUES} | {
        rhs for _, rhs in entry.where if rhs in HYPER_VALUES}
    return layer, {**entry.hyper, **{k: HYPER_VALUES[k] for k in names}}


@pytest.mark.parametrize("entry", ELEMENTWISE, ids=_entry_id)
def test_stated_derivative_matches_hand_bwd(entry):
    layer, hyper = _hyper(entry)
    x = jnp.asarray(GRID, jnp.float64)
    y_bar = jax.random.normal(jax.random.PRNGKey(0), x.shape, jnp.float64)
    ns = d.define({**d.jax_namespace(), "x": x, **{k: hyper[k] for k in HYPER_VALUES if k in hyper}},
                  entry.where)
    y_stated = d.evaluate(entry.forward, ns)
    y, res = layer.fwd(x, **hyper)
    np.testing.assert_allclose(y_stated, y, rtol=1e-12, atol=1e-14, err_msg=f"{entry.name}: forward")
    (x_bar,) = layer.bwd(res, y_bar, **hyper)
    for text in entry.derivatives:
        stated = y_bar * d.evaluate(text, {**ns, "y": y})
        np.testing.assert_allclose(stated, x_bar, rtol=1e-10, atol=1e-14, err_msg=f"{entry.name}: f' = {text}")


def _symbols(prefix, shape):
    return np.array(sp.symbols(f"{prefix}0:{np.prod(shape)}", real=True), dtype=object).reshape(shape)


def _loss_namespace(symbolic, name, shape):
    """Inputs of the loss ``name`` at ``shape``, and the tangents ``<arg>_dot`` of its floating
    inputs: sympy symbols (object arrays) or float64 arrays."""
    rng = np.random.default_rng(0)
    first, second = LOSSES[name]
    if symbolic:
        a, b, a_dot, b_dot = (_symbols(p, shape) for p in "abcd")
        ns = d.sympy_namespace()
    else:
        a, b, a_dot, b_dot = (jnp.asarray(v) for v in (rng.normal(size=shape) * 3, rng.uniform(size=shape),
                                                       rng.normal(size=shape), rng.normal(size=shape)))
        ns = d.jax_namespace()
    if name == "softmax_cross_entropy":
        n, c = shape
        b = np.array([(3 * i + 1) % c for i in range(n)])  # labels: integers, no tangent
        b, b_dot = (b if symbolic else jnp.asarray(b)), None
        ns.update(C=c, n=n)
    else:
        ns.update(n=int(np.prod(shape)))
    return {**ns, first: a, second: b, f"{first}_dot": a_dot, f"{second}_dot": b_dot}


def test_every_loss_states_forward_and_cotangents():
    for name, args in LOSSES.items():
        names = [lhs for lhs, _ in d.assignments(_losses, name)]
        assert "loss" in names and "loss_dot" in names and all(f"{a}_bar" in names for a in args), (name, names)
    assert set(LOSSES) == set(_losses.__all__)


@pytest.mark.parametrize("shape", [(2, 3), (3, 2)])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_stated_loss_gradient_is_the_gradient(name, shape):
    ns = _loss_namespace(True, name, shape)
    ns = d.run_assignments(d.assignments(_losses, name), {**ns, "loss_bar": 1})
    for arg in LOSSES[name]:
        if ns[f"{arg}_bar"] is None:  # integer labels: no gradient, nothing to differentiate
            continue
        inputs, stated = ns[arg], np.broadcast_to(ns[f"{arg}_bar"], ns[arg].shape)
        for u, s in zip(inputs.ravel(), stated.ravel()):
            assert sp.simplify(sp.diff(ns["loss"], u) - s) == 0, f"{name}: {arg}_bar at {u}"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_stated_loss_gradient_matches_hand_bwd(name):
    shape = (5, 4)
    ns = _loss_namespace(False, name, shape)
    layer, (first, second) = getattr(jb, name), LOSSES[name]
    loss, res = layer.fwd(ns[first], ns[second])
    loss_bar = jnp.asarray(0.7, jnp.float64)
    ns = d.run_assignments(d.assignments(_losses, name), {**ns, "loss_bar": loss_bar})
    np.testing.assert_allclose(ns["loss"], loss, rtol=1e-12, err_msg=f"{name}: forward")
    for arg, hand in zip((first, second), layer.bwd(res, loss_bar)):
        if ns[f"{arg}_bar"] is None:
            assert hand is None
            continue
        np.testing.assert_allclose(ns[f"{arg}_bar"], hand, rtol=1e-10, atol=1e-15, err_msg=f"{name}: {arg}_bar")


@pytest.mark.parametrize("shape", [(2, 3), (3, 2)])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_stated_loss_tangent_is_the_directional_derivative(name, shape):
    ns = _loss_namespace(True, name, shape)
    ns = d.run_assignments(d.assignments(_losses, name), {**ns, "loss_bar": 1})
    directional = sum(sp.diff(ns["loss"], u) * u_dot for arg in LOSSES[name] if ns[f"{arg}_dot"] is not None
                      for u, u_dot in zip(ns[arg].ravel(), ns[f"{arg}_dot"].ravel()))
    assert sp.simplify(ns["loss_dot"] - directional) == 0, f"{name}: loss_dot is not the directional derivative"


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_stated_loss_tangent_matches_hand_jvp(name):
    ns = _loss_namespace(False, name, (5, 4))
    layer, args = getattr(jb, name), LOSSES[name]
    loss, loss_dot = layer.jvp(tuple(ns[a] for a in args), tuple(ns[f"{a}_dot"] for a in args))
    ns = d.run_assignments(d.assignments(_losses, name), {**ns, "loss_bar": 1.0})
    np.testing.assert_allclose(ns["loss"], loss, rtol=1e-12, err_msg=f"{name}: forward")
    np.testing.assert_allclose(ns["loss_dot"], loss_dot, rtol=1e-10, err_msg=f"{name}: loss_dot")
