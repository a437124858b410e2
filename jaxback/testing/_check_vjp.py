"""check_vjp: verify a Layer's hand rule against autodiff and finite differences."""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._layer import Layer, _hyper_key, split_keywords
from ._tolerances import FD_DTYPES, mismatch, rtol_for

__all__ = ["check_vjp", "random_cotangent"]


def _is_float(x) -> bool:
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact)


def _leaves(tree):
    """``[(path string, leaf)]`` with ``None`` kept as a leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda l: l is None)
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def random_cotangent(y, seed: int = 0):
    """A standard-normal cotangent with ``y``'s structure, shapes and dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(y)
    keys = jax.random.split(jax.random.PRNGKey(seed), max(len(leaves), 1))
    return treedef.unflatten(
        [jax.random.normal(k, jnp.shape(l), jnp.result_type(l)) for k, l in zip(keys, leaves)]
    )


def _structure_problems(args, cotangents):
    """Cotangents must mirror the arguments exactly: structure, shape and dtype."""
    if not isinstance(cotangents, tuple) or len(cotangents) != len(args):
        return [f"bwd must return a tuple of {len(args)} cotangent(s), one per positional argument; "
                f"got {type(cotangents).__name__} of length {len(cotangents) if isinstance(cotangents, tuple) else '?'}"]
    problems = []
    for i, (arg, cot) in enumerate(zip(args, cotangents)):
        if cot is None:
            continue  # None means a zero cotangent: the comparison with autodiff judges it
        if jax.tree_util.tree_structure(arg, is_leaf=lambda l: l is None) != jax.tree_util.tree_structure(cot, is_leaf=lambda l: l is None):
            problems.append(f"argument {i}: cotangent structure {jax.tree_util.tree_structure(cot)} "
                            f"differs from the argument's {jax.tree_util.tree_structure(arg)}")
            continue
        for (path, a), (_, c) in zip(_leaves(arg), _leaves(cot)):
            if c is None:
                continue
            if jnp.shape(c) != jnp.shape(a) or jnp.result_type(c) != jnp.result_type(a):
                problems.append(
                    f"argument {i}{path}: cotangent has shape={jnp.shape(c)} dtype={jnp.result_type(c)} "
                    f"but the primal has shape={jnp.shape(a)} dtype={jnp.result_type(a)}")
    return problems


def _reference_dtype():
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def _upcast(tree):
    """Float leaves below the reference precision, cast up to it."""
    ref = np.dtype(_reference_dtype())
    return jax.tree_util.tree_map(
        lambda l: l.astype(ref) if _is_float(l) and np.dtype(l.dtype).itemsize < ref.itemsize else l, tree)


def _value_problems(what, hand_tree, auto_tree, ref_tree=None, scale_floor=0.0):
    problems = []
    refs = [r for _, r in _leaves(ref_tree)] if ref_tree is not None else None
    for k, ((path, h), (_, a)) in enumerate(zip(_leaves(hand_tree), _leaves(auto_tree))):
        if a is None or not _is_float(a) or jnp.result_type(a) == jax.dtypes.float0:
            continue
        h = jnp.zeros_like(a) if h is None else h
        ref = refs[k] if refs is not None and np.dtype(a.dtype) != np.dtype(refs[k].dtype) else None
        found = mismatch(h, a, rtol_for(jnp.result_type(a)), ref, scale_floor)
        if found:
            problems.append(f"{what}{path}: {found}")
    return problems


def _fd_step(float_args):
    """1e-6 in float64 (truncation error ~1e-12; a 100x smaller chance than JAX's default 1e-4 that
    a step straddles a kink such as relu's 0 or a near-tie in max), JAX's default otherwise."""
    leaves = jax.tree_util.tree_leaves(float_args)
    return 1e-6 if all(jnp.result_type(l) == jnp.float64 for l in leaves) else None


def _fd_tolerance(float_args):
    """JAX's own finite-difference tolerance for the *least* precise argument: a float32 weight
    beside float64 inputs makes the difference quotient a float32 one."""
    return max({np.dtype("float64"): 1e-5, np.dtype("float32"): 2e-3}[np.dtype(jnp.result_type(l))]
               for l in jax.tree_util.tree_leaves(float_args))


def with_values(args, positions, values) -> tuple:
    """``args`` with ``args[i]`` replaced by the matching value, for each i in ``positions``."""
    full = list(args)
    for i, v in zip(positions, values):
        full[i] = v
    return tuple(full)


class _Programs(NamedTuple):
    outputs: Callable     # (args, arrays) -> (auto, fwd, float64 reference, apply) outputs
    evaluate: Callable    # (args, arrays, y_bar, positions, fd) -> (outputs, cotangents, projections)
    bwd_of_fwd: Callable  # (args, arrays, y_bar) -> bwd's cotangents (for jax.eval_shape)


@functools.lru_cache(maxsize=256)
def _programs(layer: Layer, static_key: tuple, jit: bool = True) -> _Programs:
    """The programs check_vjp runs for ``layer`` at one setting of its static hyperparameters.

    One cache entry per (layer, setting); jit's own cache then compiles once per argument shape, so
    every later example of a "shape family" runs without re-tracing. Eagerly, each call re-traced
    the rule and dispatched it op by op (3-5 s per new attention shape, ~1 s jitted). With
    ``jit=False`` the same functions run op by op.
    """
    static = {k: v for k, _, v in static_key}

    def outputs(args, arrays):
        hyper = {**static, **arrays}
        return (layer.auto(*args, **hyper), layer.fwd(*args, **hyper)[0],
                layer.auto(*_upcast(args), **hyper), layer.apply(*args, **hyper))

    def cotangents(args, arrays, y_bar):
        """``(hand, autodiff, float64 reference)`` cotangents of every positional argument."""
        hyper = {**static, **arrays}
        pull = lambda fn, a, g: jax.vjp(functools.partial(fn, **hyper), *a)[1](g)
        return (pull(layer.apply, args, y_bar), pull(layer.auto, args, y_bar),
                pull(layer.auto, _upcast(args), _upcast(y_bar)))

    def bwd_of_fwd(args, arrays, y_bar):
        return layer.bwd(layer.fwd(*args, **static, **arrays)[1], y_bar, **static)

    def projections(args, arrays, positions, tangent, cotangent, eps):
        """``<cotangent, J tangent>`` two ways: the hand VJP, and central differences
        ``(f(a + eps t) - f(a - eps t)) / (2 eps)`` (what ``jax.test_util.check_grads`` compares)."""
        def f(float_args):
            return layer.apply(*with_values(args, positions, float_args), **static, **arrays)

        float_args = tuple(args[i] for i in positions)
        step = lambda sign: jax.tree_util.tree_map(lambda a, t: a + sign * eps * t, float_args, tangent)
        _, vjp = jax.vjp(f, float_args)
        difference = jax.tree_util.tree_map(lambda p, m: (p - m) * (0.5 / eps), f(step(1)), f(step(-1)))
        return _inner(vjp(cotangent)[0], tangent), _inner(difference, cotangent)

    def evaluate(args, arrays, y_bar, positions, fd):
        """Everything in one program (one compile per shape family); ``fd``: ``None`` or
        ``(tangent, cotangent, eps)`` for the finite-difference projections."""
        return (outputs(args, arrays), cotangents(args, arrays, y_bar),
                None if fd is None else projections(args, arrays, positions, *fd))

    if not jit:
        return _Programs(outputs, evaluate, bwd_of_fwd)
    return _Programs(jax.jit(outputs), jax.jit(evaluate, static_argnums=3), bwd_of_fwd)


def _inner(xs, ys):
    """Sum of elementwise products over two pytrees, accumulated in the reference precision."""
    acc = _reference_dtype()
    return sum(jnp.vdot(x.astype(acc), y.astype(acc))
               for x, y in zip(jax.tree_util.tree_leaves(xs), jax.tree_util.tree_leaves(ys)))


def _fd_positions(args):
    """Positions of the arguments finite differences can perturb: non-empty float32/64 pytrees."""
    return tuple(i for i, a in enumerate(args)
                 if jax.tree_util.tree_leaves(a)
                 and all(_is_float(l) and jnp.result_type(l) in FD_DTYPES and jnp.size(l) > 0
                         for l in jax.tree_util.tree_leaves(a)))


def _fd_inputs(args, positions, y_shape):
    """``(tangent, cotangent, eps)``: standard-normal directions from a fixed seed, as check_grads."""
    rng = np.random.RandomState(0)
    rand_like = lambda l: np.asarray(rng.randn(*l.shape), dtype=l.dtype)
    float_args = tuple(args[i] for i in positions)
    return (jax.tree_util.tree_map(rand_like, float_args), jax.tree_util.tree_map(rand_like, y_shape),
            _fd_step(float_args) or 1e-4)


def _finite_difference_problems(projections, float_args):
    hand, difference = (float(p) for p in projections)
    tol = _fd_tolerance(float_args)
    if abs(hand - difference) <= tol + tol * abs(difference):
        return []
    return [f"finite differences disagree with the hand VJP along a random direction t: <y_bar, J t> = "
            f"{hand:.10g} by the hand rule, {difference:.10g} by central differences (atol = rtol = {tol:g})"]


def check_vjp(layer: Layer, *args, fd: bool = True, seed: int = 0, jit: bool = True, **hyper) -> None:
    """Check ``layer``'s hand-derived VJP at ``args``; raise ``AssertionError`` with a report.

    What is checked, at the given inputs and hyperparameters:

    1. the primal output of ``fwd`` and of ``apply`` equals ``auto``'s;
    2. ``bwd(res, y_bar)``, for a random cotangent ``y_bar``, returns one cotangent per positional
       argument with exactly its primal's pytree structure, shape **and dtype** (JAX itself does
       not check the dtype);
    3. the VJP of ``apply`` (hand rule) equals the VJP of ``auto`` (autodiff) for every floating
       argument, within the dtype's tolerance; below float64, against autodiff in float64 with
       slack for autodiff's own error in that dtype (see ``jaxback.testing._tolerances``);
    4. with ``fd=True``, central finite differences agree (float32/float64 arguments only; turn it
       off at kinks, where a difference quotient straddles two slopes).

    Args:
      layer: a :class:`jaxback.Layer` (or one made with :func:`jaxback.make_layer`).
      *args: positional arguments, as for ``layer(*args)``.
      fd: also run the finite-difference witness.
      seed: seed of the random cotangent (names reserved here, so not passed to the layer).
      jit: run the comparisons as jitted programs (one compile per layer, setting and shapes; the
        way a training step runs the rule). ``jit=False`` runs them op by op, as eager code does;
        at ill-conditioned inputs the two can round differently (XLA fuses and reorders).
      **hyper: the layer's keyword arguments (hyperparameters and array keywords such as masks).
    """
    name = f"check_vjp({layer.name})"
    static, arrays = split_keywords(hyper)
    programs = _programs(layer, _hyper_key(layer.name, static), jit)
    y_shape = jax.eval_shape(programs.outputs, args, arrays)[0]
    y_bar = random_cotangent(y_shape, seed)
    y_bar_scale = max((float(np.max(np.abs(np.asarray(l, np.float32)))) for l in jax.tree_util.tree_leaves(y_bar)
                       if jnp.size(l)), default=0.0)
    problems = _structure_problems(args, jax.eval_shape(programs.bwd_of_fwd, args, arrays, y_bar))
    if problems:  # a wrongly shaped rule would make jax.vjp raise its own error
        outputs, projections = programs.outputs(args, arrays), None
    else:
        positions = _fd_positions(args) if fd else ()
        fd_inputs = _fd_inputs(args, positions, y_shape) if positions else None
        outputs, cotangents, projections = programs.evaluate(args, arrays, y_bar, positions, fd_inputs)
        for i, triple in enumerate(zip(*cotangents)):
            problems += _value_problems(f"cotangent of argument {i}", *triple, y_bar_scale)
    y_auto, y_fwd, y_ref, y_apply = outputs
    problems = (_value_problems("fwd output", y_fwd, y_auto, y_ref)
                + _value_problems("apply output", y_apply, y_auto, y_ref) + problems)
    if projections is not None and not problems:
        problems += _finite_difference_problems(projections, tuple(args[i] for i in positions))
    if problems:
        raise AssertionError(f"{name} failed:\n  - " + "\n  - ".join(problems))
