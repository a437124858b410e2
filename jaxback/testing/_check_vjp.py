"""check_vjp: verify a Layer's hand rule against autodiff and finite differences."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from .._layer import Layer, split_keywords
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
        if jax.tree_util.tree_structure(arg) != jax.tree_util.tree_structure(cot, is_leaf=lambda l: l is None):
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


def _finite_difference_problems(layer, args, hyper):
    """Central differences along a random direction (``check_grads``, reverse mode only)."""
    float_idx = [i for i, a in enumerate(args)
                 if all(_is_float(l) for l in jax.tree_util.tree_leaves(a))
                 and jax.tree_util.tree_leaves(a)
                 and all(jnp.result_type(l) in FD_DTYPES and jnp.size(l) > 0 for l in jax.tree_util.tree_leaves(a))]
    if not float_idx:
        return []

    def f(*float_args):
        full = list(args)
        for i, a in zip(float_idx, float_args):
            full[i] = a
        return layer.apply(*full, **hyper)

    try:
        float_args = tuple(args[i] for i in float_idx)
        tol = _fd_tolerance(float_args)
        check_grads(f, float_args, order=1, modes=["rev"], eps=_fd_step(float_args), atol=tol, rtol=tol)
    except AssertionError as e:
        return [f"finite differences disagree with the hand VJP: {str(e).strip()[:600]}"]
    return []


def check_vjp(layer: Layer, *args, fd: bool = True, seed: int = 0, **hyper) -> None:
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
      **hyper: the layer's keyword arguments (hyperparameters and array keywords such as masks).
    """
    name = f"check_vjp({layer.name})"
    y_auto = layer.auto(*args, **hyper)
    y_fwd, res = layer.fwd(*args, **hyper)
    y_ref = layer.auto(*_upcast(args), **hyper)
    problems = _value_problems("fwd output", y_fwd, y_auto, y_ref)
    problems += _value_problems("apply output", layer.apply(*args, **hyper), y_auto, y_ref)

    y_bar = random_cotangent(y_auto, seed)
    y_bar_scale = max((float(jnp.max(jnp.abs(l)).astype(jnp.float32)) for l in jax.tree_util.tree_leaves(y_bar)
                       if jnp.size(l)), default=0.0)
    problems += _structure_problems(args, layer.bwd(res, y_bar, **split_keywords(hyper)[0]))
    if not problems:  # a wrongly shaped rule would make jax.vjp raise its own error below
        _, vjp_hand = jax.vjp(functools.partial(layer.apply, **hyper), *args)
        _, vjp_auto = jax.vjp(functools.partial(layer.auto, **hyper), *args)
        _, vjp_ref = jax.vjp(functools.partial(layer.auto, **hyper), *_upcast(args))
        triples = zip(vjp_hand(y_bar), vjp_auto(y_bar), vjp_ref(_upcast(y_bar)))
        for i, (hand, auto, ref) in enumerate(triples):
            problems += _value_problems(f"cotangent of argument {i}", hand, auto, ref, y_bar_scale)
    if fd and not problems:
        problems += _finite_difference_problems(layer, args, hyper)
    if problems:
        raise AssertionError(f"{name} failed:\n  - " + "\n  - ".join(problems))

