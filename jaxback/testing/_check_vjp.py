"""check_vjp: verify a hand-written VJP (a jaxback Layer's, or any custom_vjp's) against autodiff of
a reference forward and against finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._layer import _hyper_key, split_keywords
from ._fd import fd_plan, fd_problems
from ._programs import Programs, float_leaves, programs_for
from ._static import split_static
from ._structure import display_names, labelled_leaves, max_abs, renamed, structure_problems
from ._subject import subject_of
from ._tolerances import mismatch, rtol_for

__all__ = ["check_vjp", "grad_of_grad_problems", "random_cotangent", "with_values"]


def random_cotangent(y, seed: int = 0):
    """A standard-normal cotangent with ``y``'s structure, shapes and dtypes (float0 zeros for
    integer or boolean outputs, which take no cotangent)."""
    leaves, treedef = jax.tree_util.tree_flatten(y)
    keys = jax.random.split(jax.random.PRNGKey(seed), max(len(leaves), 1))
    draw = lambda k, l: (jax.random.normal(k, jnp.shape(l), jnp.result_type(l))
                         if jnp.issubdtype(jnp.result_type(l), jnp.inexact)
                         else np.zeros(jnp.shape(l), jax.dtypes.float0))
    return treedef.unflatten([draw(k, l) for k, l in zip(keys, leaves)])


def with_values(args, positions, values) -> tuple:
    """``args`` with ``args[i]`` replaced by the matching value, for each i in ``positions``."""
    full = list(args)
    for i, v in zip(positions, values):
        full[i] = v
    return tuple(full)


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact) and jnp.result_type(x) != jax.dtypes.float0


def _value_problems(what, hand_tree, auto_tree, ref_tree=None, scale_floor=0.0):
    """One report per float leaf of ``hand_tree`` that differs from ``auto_tree`` beyond the
    dtype's tolerance (judged against ``ref_tree``, float64 autodiff, below float64)."""
    hand, auto = labelled_leaves(hand_tree, what), labelled_leaves(auto_tree, what)
    if [p for p, _ in hand] != [p for p, _ in auto]:
        return [f"{what}: structure {jax.tree_util.tree_structure(hand_tree)} differs from the "
                f"reference's {jax.tree_util.tree_structure(auto_tree)}"]
    refs = [r for _, r in labelled_leaves(ref_tree)] if ref_tree is not None else [None] * len(auto)
    problems = []
    for (path, h), (_, a), r in zip(hand, auto, refs):
        if a is None or not _is_float(a):
            continue
        h = jnp.zeros_like(a) if h is None else h
        r = r if r is not None and np.dtype(jnp.result_type(a)) != np.dtype(jnp.result_type(r)) else None
        found = mismatch(h, a, rtol_for(jnp.result_type(a)), r, scale_floor)
        if found:
            problems.append(f"{path}: {found}")
    return problems


def _describe(name, static, arrays, args, seed, held, checker="check_vjp"):
    settings = [f"{k}={v!r}" for k, v in sorted(static.items())]
    settings += [f"{k}=<{jnp.result_type(v)}{list(jnp.shape(v))}>" for k, v in sorted(arrays.items())]
    leaves = [f"{p} {jnp.result_type(l)}{list(jnp.shape(l))}" for p, l in labelled_leaves(args, "args") if l is not None]
    inputs = ", ".join(leaves[:8] + ([f"... ({len(leaves) - 8} more)"] if len(leaves) > 8 else []))
    kept = f"; static: {', '.join(held[:4] + (['...'] if len(held) > 4 else []))}" if held else ""
    return f"{checker}({', '.join([name] + settings)}) failed (seed={seed}; inputs: {inputs}{kept}):"


def _structure(programs: Programs, subject, args, arrays, y_bar):
    """Structure problems of the explicit ``bwd`` (Layers) and of the VJP of ``apply`` (plain
    callables and composed Layers, whose apply chains other rules)."""
    problems = []
    if subject.bwd is not None:
        problems = structure_problems(args, jax.eval_shape(programs.bwd_of_fwd, args, arrays, y_bar), "bwd")
    if problems or (subject.bwd is not None and not subject.composed):
        return problems  # a Layer's apply is custom_vjp(fwd, bwd): its VJP *is* bwd, just checked
    try:
        cotangents = jax.eval_shape(programs.hand_vjp, args, arrays, y_bar)
    except Exception as err:  # noqa: BLE001  (reported, and chained for the traceback)
        raise AssertionError(f"check_vjp({subject.name}): the VJP of f failed to trace: "
                             f"{type(err).__name__}: {err}") from err
    return structure_problems(args, cotangents, "VJP")


def check_vjp(f, *args, reference=None, fd: bool = True, seed: int = 0, jit: bool = True, order: int = 1,
              **hyper) -> None:
    """Check the hand-written VJP of ``f`` at ``args``; raise ``AssertionError`` with a report.

    What is checked, at the given inputs and hyperparameters, for a random cotangent ``y_bar``:

    1. the primal output of ``f`` (and of a Layer's ``fwd``) equals the reference's;
    2. every cotangent has exactly its primal's pytree structure, shape **and dtype** (JAX itself
       does not check the dtype); integer and boolean arguments take ``None``/float0, and a real
       argument a real cotangent (JAX passes a complex one through silently);
    3. the VJP of ``f`` equals the VJP of ``reference`` (autodiff) for every floating or complex
       leaf, within the dtype's tolerance (a complex one: its component's, on the modulus of the
       difference); below float64, against autodiff in float64 with slack for autodiff's own error
       in that dtype (see ``jaxback.testing._tolerances``). For a composed Layer (a model),
       ``bwd(fwd(...)[1], y_bar)`` is compared too: it is a separate path from ``apply``;
    4. with ``fd=True``, central finite differences agree along a random direction (real for real
       leaves, complex for complex ones; never along ``state`` arguments, whose ``new_state``
       output gets a zero cotangent), on a float64 copy of float32 inputs when x64 is on, with
       the quotient's own error measured from the second difference (``jaxback.testing._fd``);
    5. with ``order=2``, reverse over reverse: the gradient of ``<vjp(args)(y_bar), v>`` with
       respect to the float leaves equals the reference's. Use it when the rule will be
       differentiated again (Hessians, meta-learning, gradient penalties) or when ``bwd``
       computes its answer from something the first order cannot see: a branch at a special
       point (a series at 0), a stop_gradient'ed or non-differentiable solve (implicit
       differentiation through a root finder).

    Complex numbers follow JAX's convention: the cotangent of ``z`` pairs with a tangent ``t`` as
    ``Re(sum(z_bar * t))`` (no conjugation), so ``jax.grad`` of a real function of ``z`` is
    ``df/dx - i df/dy``; a real input's cotangent is the real part.

    Args:
      f: a :class:`jaxback.Layer`, or any callable with a custom VJP: a ``jax.custom_vjp``
        function (its ``nondiff_argnums`` are read from it and held static: call
        ``check_vjp(f, x, 3, ...)`` as ``f(x, 3)`` is called), an ``equinox.filter_custom_vjp``
        (both tested), code that calls them.
      *args: positional arguments, as for ``f(*args)``: arrays or pytrees of them (dicts,
        NamedTuples, nested tuples, ``None`` entries, equinox modules), integer/boolean arrays
        included. Leaves that are not array-like (an MLP's ``activation=jnp.tanh``) are held
        static, as ``eqx.filter_grad`` does; Python numbers are traced.
      reference: the same forward with no custom rule; defaults to ``f.auto`` for a Layer and is
        required otherwise (``TypeError``).
      fd: also run the finite-difference witness.
      seed: seed of the random cotangent.
      jit: run the comparisons as jitted programs (one compile per subject, setting and shapes; the
        way a training step runs the rule). ``jit=False`` runs them op by op, as eager code does;
        at ill-conditioned inputs the two can round differently (XLA fuses and reorders).
      order: 1, or 2 to also check grad of grad.
      **hyper: keyword arguments of ``f``: static hyperparameters (hashable Python values) and
        array keywords (masks, PRNG keys), which are not differentiated.
    """
    if order not in (1, 2):
        raise ValueError(f"check_vjp: order must be 1 or 2; got {order!r}")
    subject = subject_of(f, reference)
    static, arrays = split_keywords(hyper)
    args, held = split_static(subject.apply, args)
    programs = programs_for(subject, _hyper_key(subject.name, static), jit, held)
    y_bar = random_cotangent(jax.eval_shape(programs.outputs, args, arrays)["reference"], seed)
    problems = _structure(programs, subject, args, arrays, y_bar)
    plan = None
    if problems:
        outputs, projections = programs.outputs(args, arrays), None
    else:
        plan = fd_plan(programs, args, arrays, subject.state_positions) if fd else None
        fd_inputs = None if plan is None else (plan.fd_args,) + plan.inputs
        outputs, cots, projections = programs.evaluate(args, arrays, y_bar, () if plan is None else plan.positions,
                                                       fd_inputs)
        floor = max_abs(y_bar)
        problems += _value_problems("cotangent of args", cots["hand"], cots["reference"], cots["ref64"], floor)
        if "explicit" in cots:
            problems += _value_problems("explicit bwd: cotangent of args", cots["explicit"], cots["reference"],
                                        cots["ref64"], floor)
        if order == 2 and not problems:
            problems += _second_order_problems(programs, args, arrays, y_bar, seed)
    for path in ("apply", "fwd"):
        if path in outputs:
            problems = _value_problems(f"{path} output", outputs[path], outputs["reference"],
                                       outputs["ref64"]) + problems
    if projections is not None and not problems:
        problems += fd_problems(projections, plan)
    if problems:
        header = _describe(subject.name, static, arrays, args, seed, held.describe())
        names = display_names(args, subject.roles, subject.model_paths)
        raise AssertionError(renamed(header + "\n  - " + "\n  - ".join(problems), names))


def _second_order_problems(programs, args, arrays, y_bar, seed):
    """grad of ``<vjp(args)(y_bar), v>``, hand vs reference. The pairing is bilinear in
    ``(y_bar, v)``: errors are measured against ``max|y_bar| max|v|`` at least, so an exact 0 (hand)
    vs a rounding-level 1e-17 (autodiff, under jit) is not a mismatch."""
    positions = float_leaves(args)
    if not positions:
        return []
    leaves = jax.tree_util.tree_leaves(args)
    v = random_cotangent(tuple(leaves[i] for i in positions), seed + 1)
    hand, ref = programs.second_order(args, arrays, y_bar, positions, v)
    paths = [p for p, l in labelled_leaves(args, "args") if l is not None]
    problems = []
    for i, h, r in zip(positions, hand, ref):
        found = mismatch(h, r, rtol_for(jnp.result_type(r)), scale_floor=max_abs(y_bar) * max_abs(v))
        if found:
            problems.append(f"grad of grad, {paths[i]}: {found}")
    return problems


def grad_of_grad_problems(f, args, hyper, *, reference=None, seed: int = 1, jit: bool = True) -> list:
    """The order-2 part of ``check_vjp`` alone (reports; empty if the hand rule's grad of grad
    matches the reference's)."""
    subject = subject_of(f, reference)
    static, arrays = split_keywords(hyper)
    args, held = split_static(subject.apply, args)
    programs = programs_for(subject, _hyper_key(subject.name, static), jit, held)
    y_bar = random_cotangent(jax.eval_shape(programs.outputs, args, arrays)["reference"], seed)
    return _second_order_problems(programs, args, arrays, y_bar, seed)
