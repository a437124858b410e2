"""check_jvp: verify a hand-written JVP (a jaxback Layer's forward-mode rule, or any callable with a
custom JVP) against autodiff of a reference forward and against finite differences.

The sibling of ``check_vjp``, with the same arguments and the same report. For a random tangent
``t`` (standard normal on every floating leaf, float0 on integer ones, zero on ``state`` arguments):

1. the primal output of ``jax.jvp(f)`` equals the reference's;
2. the tangent output ``y_dot`` has exactly ``y``'s structure, shapes **and dtypes** (JAX does not
   check a primitive's tangent dtypes);
3. ``y_dot`` equals ``jax.jvp(reference)``'s within the dtype's tolerance (below float64, judged
   against the reference in float64, as ``check_vjp``), and so does ``jax.linearize(f)``'s tangent
   map (a path of its own: the primals are saved, the tangent rule runs later);
4. with ``fd=True``, central finite differences agree along a random direction: ``<c, y_dot>``
   against ``<c, (f(a + eps t) - f(a - eps t)) / (2 eps)>`` for a random ``c`` (``_fd``).

For a layer with state (``(y, new_state)``, ``Layer.roles``), the state input gets a zero tangent and
only ``y``'s tangent is compared: the state is not differentiated, as in the VJP.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .._layer import Layer, _hyper_key, split_keywords
from ._check_vjp import _describe, _value_problems
from ._fd import _state_leaves, fd_plan, fd_problems
from ._programs import _all_reference, caller, inner, pick, quotients, replace_leaves, upcast
from ._static import split_static
from ._structure import display_names, labelled_leaves, max_abs, renamed
from ._subject import subject_of

__all__ = ["check_jvp", "random_tangent"]


def random_tangent(args, seed: int = 0, zero_leaves=frozenset()):
    """A standard-normal tangent with ``args``' structure, shapes and dtypes: float0 zeros on
    integer, boolean and key leaves (they take no tangent), zeros on the leaf indices ``zero_leaves``."""
    leaves, treedef = jax.tree_util.tree_flatten(args)
    keys = jax.random.split(jax.random.PRNGKey(seed), max(len(leaves), 1))

    def draw(i, k, leaf):
        shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            return np.zeros(shape, jax.dtypes.float0)
        return jnp.zeros(shape, dtype) if i in zero_leaves else jax.random.normal(k, shape, dtype)
    return treedef.unflatten([draw(i, k, l) for i, (k, l) in enumerate(zip(keys, leaves))])


def _jvp_programs(subject, static_key, jit, static_args):
    try:
        return _cached(subject, static_key, jit, static_args)
    except TypeError:  # an unhashable subject or static leaf: fresh programs
        return _build(subject, static_key, jit, static_args)


@functools.lru_cache(maxsize=256)
def _cached(subject, static_key, jit, static_args):
    return _build(subject, static_key, jit, static_args)


def _build(subject, static_key, jit, static_args):
    """``(push, evaluate)``: the JVP of one function, and every comparison in one program."""
    call = caller(static_key, static_args)
    stateful = bool(subject.state_positions)
    first = (lambda tree: tree[0]) if stateful else (lambda tree: tree)

    def push(fn, args, arrays, tangents):
        y, y_dot = jax.jvp(lambda *traced: call(fn, traced, arrays), tuple(args), tuple(tangents))
        return first(y), first(y_dot)

    def linearized(args, arrays, tangents):
        _, tangent_map = jax.linearize(lambda *traced: call(subject.apply, traced, arrays), *args)
        return first(tangent_map(*tangents))

    def projections(args, arrays, positions, tangent, cotangent, eps):
        f = lambda leaves: call(subject.apply, replace_leaves(args, positions, leaves), arrays)
        leaves = pick(args, positions)
        centre, y_dot = jax.jvp(f, (leaves,), (tangent,))
        return (inner(cotangent, y_dot), *quotients(f, leaves, tangent, cotangent, eps, centre))

    def evaluate(args, arrays, tangents, positions, fd):
        hand, reference = push(subject.apply, args, arrays, tangents), push(subject.reference, args, arrays, tangents)
        ref64 = reference if _all_reference(args, tangents) else \
            push(subject.reference, upcast(args), arrays, upcast(tangents))
        return {"hand": hand, "reference": reference, "ref64": ref64,
                "linearize": linearized(args, arrays, tangents),
                "fd": None if fd is None else projections(fd[0], arrays, positions, *fd[1:])}

    if not jit:
        return push, evaluate
    return push, jax.jit(evaluate, static_argnums=3)


def _tangent_structure(y, y_dot) -> list:
    """``y_dot`` must mirror ``y``: same structure, and per leaf the same shape and dtype."""
    if jax.tree_util.tree_structure(y) != jax.tree_util.tree_structure(y_dot):
        return [f"JVP: tangent output has structure {jax.tree_util.tree_structure(y_dot)}, the output "
                f"{jax.tree_util.tree_structure(y)}"]
    problems = []
    for (path, leaf), (_, leaf_dot) in zip(labelled_leaves(y, "y"), labelled_leaves(y_dot, "y")):
        want = jnp.result_type(leaf) if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact) else jax.dtypes.float0
        if jnp.shape(leaf_dot) != jnp.shape(leaf) or jnp.result_type(leaf_dot) != want:
            problems.append(f"JVP: {path}_dot is {jnp.result_type(leaf_dot)}{list(jnp.shape(leaf_dot))}; "
                            f"expected {want}{list(jnp.shape(leaf))}, the output's own (cast with .astype)")
    return problems


def _run(fn, subject, *args):
    """``fn(*args)``; a failure of JAX's forward mode inside (a custom_vjp without a JVP, a model
    with such a layer) is reported as the check's failure, naming ``f``."""
    try:
        return fn(*args)
    except Exception as err:  # noqa: BLE001  (reported, and chained for the traceback)
        raise AssertionError(f"check_jvp({subject.name}): jax.jvp of f failed: {type(err).__name__}: {err}. A "
                             f"jaxback layer has forward mode only with a hand JVP (make_layer(..., jvp=...)); a "
                             f"model, only when every layer in it has one.") from err


def check_jvp(f, *args, reference=None, fd: bool = True, seed: int = 0, jit: bool = True, **hyper) -> None:
    """Check the hand-written JVP of ``f`` at ``args``; raise ``AssertionError`` with a report.

    What is checked is in the module docstring. Arguments are those of :func:`check_vjp`:

    Args:
      f: a :class:`jaxback.Layer` with a hand JVP (``make_layer(..., jvp=...)``), a model of such
        layers, or any callable with a custom JVP (``jax.custom_jvp``, or code that calls one).
      *args: positional arguments, as for ``f(*args)`` (pytrees; integer leaves take no tangent).
      reference: the same forward with no custom rule; defaults to ``f.auto`` for a Layer.
      fd: also run the finite-difference witness.
      seed: seed of the random tangent.
      jit: run the comparisons as one jitted program (``False``: op by op).
      **hyper: static hyperparameters and array keywords of ``f`` (not differentiated).
    """
    subject = subject_of(f, reference)
    if isinstance(f, Layer) and not f.composed and f.jvp is None:
        raise TypeError(f"check_jvp({f.name}): the layer has no hand JVP, so no forward mode to check: build it "
                        f"with make_layer(..., jvp=...) (see jaxback._hand_rule for the rule's signature).")
    static, arrays = split_keywords(hyper)
    args, held = split_static(subject.apply, args)
    push, evaluate = _jvp_programs(subject, _hyper_key(subject.name, static), jit, held)
    tangents = random_tangent(args, seed, _state_leaves(args, subject.state_positions))
    y, y_dot = _run(jax.eval_shape, subject, functools.partial(push, subject.apply), args, arrays, tangents)
    problems = _tangent_structure(y, y_dot)
    plan = fd_plan(_Outputs(subject, static_key=_hyper_key(subject.name, static), held=held), args, arrays,
                   subject.state_positions) if fd and not problems else None
    if not problems:
        fd_inputs = None if plan is None else (plan.fd_args,) + plan.inputs
        out = _run(evaluate, subject, args, arrays, tangents, () if plan is None else plan.positions, fd_inputs)
        (y_hand, dot_hand), (y_ref, dot_ref), (y_64, dot_64) = out["hand"], out["reference"], out["ref64"]
        floor = max_abs(tangents)
        problems += _value_problems("jvp primal output", y_hand, y_ref, y_64)
        problems += _value_problems("tangent output", dot_hand, dot_ref, dot_64, floor)
        problems += _value_problems("linearize: tangent output", out["linearize"], dot_ref, dot_64, floor)
        if plan is not None and not problems:
            problems += fd_problems(out["fd"], plan, rule="JVP")
    if problems:
        header = _describe(subject.name, static, arrays, args, seed, held.describe(), checker="check_jvp")
        names = display_names(args, subject.roles, subject.model_paths)
        raise AssertionError(renamed(header + "\n  - " + "\n  - ".join(problems), names))


class _Outputs:
    """What ``fd_plan`` needs of the programs: ``outputs(args, arrays)["apply"]`` (for shapes)."""

    def __init__(self, subject, static_key, held):
        call = caller(static_key, held)
        self.outputs = lambda args, arrays: {"apply": call(subject.apply, args, arrays)}
