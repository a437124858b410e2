"""The checks generated for every registry entry. Each raises AssertionError with a report.

Sample checks take ``(info, args, hyper)`` at sample arguments; the others take ``info`` and use
its edge cases, error cases and mutants. ``SAMPLE_CHECKS`` maps a check to the support flag it
needs (``None``: every layer).
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np

from .._layer import make_layer, split_keywords
from ._check_jvp import check_jvp
from ._check_vjp import check_vjp, grad_of_grad_problems, random_cotangent, with_values
from ._tolerances import mismatch, rtol_for

__all__ = ["SAMPLE_CHECKS", "check_edge_case", "check_error_case", "mutant_is_killed", "injected_error_is_caught"]


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def _is_float_tree(tree):
    leaves = _leaves(tree)
    return bool(leaves) and all(jnp.issubdtype(l.dtype, jnp.floating) for l in leaves)


def float_positions(args):
    """Indices of the positional arguments that are (pytrees of) floating arrays."""
    return [i for i, a in enumerate(args) if _is_float_tree(a)]


def vjp_of(fn, hyper, args, y_bar):
    """Cotangents of ``fn(*args, **hyper)`` for ``y_bar`` (all positional arguments)."""
    return jax.vjp(functools.partial(fn, **hyper), *args)[1](y_bar)


def assert_trees_close(what, hand, auto, scale_floor=0.0):
    for h, a in zip(_leaves(hand), _leaves(auto)):
        if jnp.issubdtype(a.dtype, jnp.floating):
            found = mismatch(h, a, rtol_for(a.dtype), scale_floor=scale_floor)
            assert found is None, f"{what}: {found}"


def _stack(trees):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *trees)


# sample checks -------------------------------------------------------------------------------------
def check_jit(info, args, hyper):
    """jit of the hand VJP equals jit of autodiff's and the eager hand VJP."""
    y_bar = random_cotangent(info.layer.auto(*args, **hyper))
    run = lambda fn: jax.jit(functools.partial(vjp_of, fn, hyper))(args, y_bar)
    hand = run(info.layer.apply)
    assert_trees_close("jit: hand vs autodiff", hand, run(info.layer.auto))
    assert_trees_close("jit vs eager", hand, vjp_of(info.layer.apply, hyper, args, y_bar))


def check_vmap(info, args, hyper, more_args=()):
    """vmap of the VJP over a stack of examples equals a loop (per-example gradients)."""
    examples = (args,) + tuple(more_args)
    y_bars = [random_cotangent(info.layer.auto(*a, **hyper), seed=i) for i, a in enumerate(examples)]
    one = functools.partial(vjp_of, info.layer.apply, hyper)
    batched = jax.jit(jax.vmap(one))(_stack(examples), _stack(y_bars))
    looped = _stack([jax.jit(one)(a, g) for a, g in zip(examples, y_bars)])
    assert_trees_close("vmap vs loop", batched, looped)


def check_grad_of_grad(info, args, hyper):
    """Reverse over reverse: d/d(args) <vjp(args)(y_bar), v>, hand vs autodiff (jitted)."""
    problems = grad_of_grad_problems(info.layer, args, hyper)
    assert not problems, f"{info.name}: " + "; ".join(problems)


def check_checkpoint(info, args, hyper):
    """The hand rule under jax.checkpoint (rematerialisation) gives the same VJP."""
    y_bar = random_cotangent(info.layer.auto(*args, **hyper))
    remat = jax.checkpoint(functools.partial(info.layer.apply, **hyper))
    pull = lambda fn, hyper: jax.jit(functools.partial(vjp_of, fn, hyper))(args, y_bar)
    assert_trees_close("checkpoint", pull(remat, {}), pull(info.layer.apply, hyper))


def check_scan(info, args, hyper, more_args=()):
    """The layer as a lax.scan body: gradients through the scan equal a loop of VJPs."""
    examples = (args,) + tuple(more_args)
    y_bars = [random_cotangent(info.layer.auto(*a, **hyper), seed=i) for i, a in enumerate(examples)]
    pos = float_positions(args)

    def total(fn, float_stack):
        def body(acc, xs):
            example, y_bar = xs
            y = fn(*example, **hyper)
            return acc + sum(jnp.vdot(a, b) for a, b in zip(_leaves(y), _leaves(y_bar))), None
        stacked = list(_stack(examples))
        for i, s in zip(pos, float_stack):
            stacked[i] = s
        return jax.lax.scan(body, jnp.zeros((), jnp.float64 if jax.config.jax_enable_x64 else jnp.float32),
                            (tuple(stacked), _stack(y_bars)))[0]

    float_stack = tuple(_stack(examples)[i] for i in pos)
    through_scan = jax.jit(jax.grad(functools.partial(total, info.layer.apply)))(float_stack)
    one = jax.jit(functools.partial(vjp_of, info.layer.apply, hyper))
    looped = [_stack([one(a, g)[i] for a, g in zip(examples, y_bars)]) for i in pos]
    assert_trees_close("scan body", through_scan, tuple(looped))


def check_zero_cotangent(info, args, hyper):
    """A zero cotangent pulls back to exact zeros (a rule that adds a constant would not)."""
    y = info.layer.auto(*args, **hyper)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, y)
    for c in _leaves(jax.jit(functools.partial(vjp_of, info.layer.apply, hyper))(args, zeros)):
        if jnp.issubdtype(c.dtype, jnp.floating):
            assert not np.any(np.asarray(c, np.float64)), f"zero cotangent gave nonzero {c}"


def check_deterministic(info, args, hyper):
    """The backward run twice is bitwise identical."""
    y_bar = random_cotangent(info.layer.auto(*args, **hyper))
    _, res = info.layer.fwd(*args, **hyper)
    static = split_keywords(hyper)[0]
    first, second = info.layer.bwd(res, y_bar, **static), info.layer.bwd(res, y_bar, **static)
    for a, b in zip(_leaves(first), _leaves(second)):
        np.testing.assert_array_equal(np.asarray(a, np.float64), np.asarray(b, np.float64))


def check_symbolic_zeros(info, args, hyper):
    """Differentiating w.r.t. one argument at a time (the others frozen) matches autodiff."""
    y_bar = random_cotangent(info.layer.auto(*args, **hyper))
    for i in float_positions(args):
        def only_i(fn, a):
            return jax.jit(lambda a: jax.vjp(lambda a: fn(*with_values(args, [i], [a]), **hyper), a)[1](y_bar)[0])(a)
        assert_trees_close(f"only argument {i}", only_i(info.layer.apply, args[i]), only_i(info.layer.auto, args[i]))


SAMPLE_CHECKS = {
    "jit": (check_jit, "jit"),
    "vmap": (check_vmap, "vmap"),
    "grad_of_grad": (check_grad_of_grad, "grad_of_grad"),
    "checkpoint": (check_checkpoint, "checkpoint"),
    "scan": (check_scan, "scan"),
    "zero_cotangent": (check_zero_cotangent, None),
    "deterministic": (check_deterministic, None),
    "symbolic_zeros": (check_symbolic_zeros, "symbolic_zeros"),
}


# edge cases, error cases, mutants, sensitivity -----------------------------------------------------
def edge_order(info, case) -> int:
    """The derivative order an edge case is checked to: its ``order`` (2 for a special point where
    only grad of grad sees a wrong branch, e.g. a series at 0), if the layer is twice
    differentiable (``grad_of_grad`` in ``supports``); 1 by default. Measured: order 2 on every
    edge case of the registry costs ~300 s more per suite run, so it is asked for per case."""
    order = getattr(case, "order", 1)
    if order == 2 and "grad_of_grad" not in info.supports:
        raise ValueError(f"{info.name}: edge case {case.name!r} asks for order 2, but the layer does not "
                         f"support grad_of_grad")
    return order


def check_edge_case(info, case, dtype=jnp.float64):
    """The documented behaviour at a hard input, and agreement with autodiff there (to the case's
    ``edge_order``), both op by op (``jit=False``): the documented answers are eager ones; XLA may
    round fused code differently."""
    args = case.args(dtype)
    y, vjp = jax.vjp(functools.partial(info.layer.apply, **case.hyper), *args)
    cotangents = vjp(jax.tree_util.tree_map(jnp.ones_like, y))
    if case.check is not None:
        case.check(y, cotangents)
    if case.matches_autodiff:
        check_vjp(info.layer, *args, fd=False, jit=False, order=edge_order(info, case), **case.hyper)


def _assert_raises(error, pattern, call, what):
    """``call()`` must raise ``error`` with a message matching ``pattern`` (``re.search``)."""
    try:
        call()
    except error as err:
        if not re.search(pattern, str(err)):
            raise AssertionError(f"{what}: raised {type(err).__name__}({str(err)!r}), which does not match "
                                 f"{pattern!r}") from err
        return
    raise AssertionError(f"{what}: did not raise {error.__name__} (expected a message matching {pattern!r})")


def check_error_case(info, case):
    """Raises the documented error eagerly and at trace time under jit."""
    args = case.args()
    what = f"{info.name}, error case {case.name!r}"
    _assert_raises(case.error, case.match, lambda: info.layer(*args, **case.hyper), what)
    _assert_raises(case.error, case.match, lambda: jax.jit(functools.partial(info.layer.apply, **case.hyper))(*args),
                   f"{what} under jit")


def _mutated(info, label, bwd=None, jvp=None):
    """``info``'s layer with its ``bwd`` or its ``jvp`` replaced (the other rules its own)."""
    layer = info.layer
    roles = None if layer.composed else layer.roles  # a model's fwd/bwd are called as one layer's
    return make_layer(layer.auto, layer.fwd, bwd or layer.bwd, name=f"{info.name}[{label}]", init=layer.init,
                      takes_params=layer.takes_params, roles=roles, jvp=jvp or layer.jvp)


def mutant_is_killed(info, mutant, samples) -> bool:
    """True if the checks reject ``mutant`` (AssertionError) at one of the sample (args, hyper):
    ``check_vjp`` a wrong ``bwd``, ``check_jvp`` a wrong ``jvp``."""
    layer = _mutated(info, mutant.name, bwd=mutant.bwd, jvp=mutant.jvp)
    check = check_vjp if mutant.bwd is not None else check_jvp
    for args, hyper in samples:
        try:
            check(layer, *args, fd=False, jit=False, **hyper)  # one use per rule: no compile
        except AssertionError:
            return True
        except Exception:  # a mutant that crashes at this shape: try the next sample
            continue
    return False


def injected_error_is_caught(info, args, hyper, leaf_index, rel=1e-4) -> bool:
    """Scale one cotangent leaf of the true rule by (1 + rel): check_vjp must notice."""
    true_bwd = info.layer.bwd

    def bwd(res, y_bar, **static):
        cotangents = true_bwd(res, y_bar, **static)
        flat, tree = jax.tree_util.tree_flatten(cotangents)
        flat[leaf_index] = flat[leaf_index] * jnp.asarray(1 + rel, flat[leaf_index].dtype)
        return jax.tree_util.tree_unflatten(tree, flat)

    try:
        check_vjp(_mutated(info, f"+{rel:g} in leaf {leaf_index}", bwd=bwd), *args, fd=False, jit=False, **hyper)
    except AssertionError:
        return True
    return False
