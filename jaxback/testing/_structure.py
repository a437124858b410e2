"""Cotangent structure: one cotangent per positional argument, with exactly its primal's pytree
structure, shape and dtype (JAX checks the shape of a custom rule's cotangents, not the dtype).

Paths name arguments as a user wrote them: ``args[0]['g']``, ``args[1].w``, ``output[0]``; a
model's params and state as ``model.paths`` does (``serial[3].parallel[1].conv2d.w``, see
``display_names``). ``None`` in a cotangent means zero (JAX's convention) and matches any primal
subtree.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["is_none", "labelled_leaves", "structure_problems", "fill_none", "float0_expected", "display_names",
           "renamed"]


def is_none(x) -> bool:
    return x is None


def labelled_leaves(tree, prefix: str = ""):
    """``[(path, leaf)]`` with ``None`` kept as a leaf, paths like ``args[0]['g']``."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_none)
    return [(prefix + jax.tree_util.keystr(path), leaf) for path, leaf in flat]


def float0_expected(primal) -> bool:
    """Integer and boolean primals take a float0 (or ``None``) cotangent."""
    return not jnp.issubdtype(jnp.result_type(primal), jnp.inexact)


def _leaf_problem(path, primal, cot):
    if cot is None:
        return None
    if jnp.issubdtype(jnp.result_type(cot), jnp.complexfloating) and \
            not jnp.issubdtype(jnp.result_type(primal), jnp.complexfloating) and not float0_expected(primal):
        return (f"{path}: cotangent is complex ({jnp.result_type(cot)}) but the primal is real "
                f"({jnp.result_type(primal)}{list(jnp.shape(primal))}): a real input takes a real cotangent, "
                f"the real part (JAX's convention; JAX itself accepts a complex one silently). Return "
                f"jnp.real(...) for it.")
    shape, dtype = jnp.shape(cot), jnp.result_type(cot)
    if float0_expected(primal):
        if dtype == jax.dtypes.float0 and shape == jnp.shape(primal):
            return None
        want = f"None or float0 of shape={jnp.shape(primal)}"
    elif shape == jnp.shape(primal) and dtype == jnp.result_type(primal):
        return None
    else:
        want = f"shape={jnp.shape(primal)} dtype={jnp.result_type(primal)}"
    return (f"{path}: cotangent has shape={shape} dtype={dtype} but the primal "
            f"({jnp.result_type(primal)}{list(jnp.shape(primal))}) needs {want}")


def structure_problems(args, cotangents, what: str = "bwd"):
    """Every way ``cotangents`` fails to mirror ``args`` (a list of one-line reports)."""
    if not isinstance(cotangents, tuple) or len(cotangents) != len(args):
        got = f"{type(cotangents).__name__} of length {len(cotangents)}" if isinstance(cotangents, (tuple, list)) \
            else type(cotangents).__name__
        return [f"{what} must return a tuple of {len(args)} cotangent(s), one per positional argument; got {got}"]
    problems = []
    for i, (arg, cot) in enumerate(zip(args, cotangents)):
        treedef = jax.tree_util.tree_structure(cot, is_leaf=is_none)
        try:
            primal_parts = treedef.flatten_up_to(arg)
        except (ValueError, TypeError):
            problems.append(f"{what}: cotangent of args[{i}] has structure {treedef}, which differs from the "
                            f"argument's {jax.tree_util.tree_structure(arg)}")
            continue
        for (path, c), primal in zip(labelled_leaves(cot, f"args[{i}]"), primal_parts):
            if c is not None and jax.tree_util.tree_structure(primal).num_leaves != 1:
                problems.append(f"{what}: {path}: cotangent is one array but the argument there is the "
                                f"pytree {jax.tree_util.tree_structure(primal)}")
                continue
            found = _leaf_problem(path, primal, c)
            if found:
                problems.append(f"{what}: {found}")
    return problems


def fill_none(cotangents, like):
    """``cotangents`` with each ``None`` replaced by ``like``'s subtree there (zeros for floats)."""
    treedef = jax.tree_util.tree_structure(cotangents, is_leaf=is_none)
    parts = treedef.flatten_up_to(like)
    zeros = lambda l: jnp.zeros_like(l) if jnp.issubdtype(jnp.result_type(l), jnp.inexact) else l
    leaves = jax.tree_util.tree_leaves(cotangents, is_leaf=is_none)
    return treedef.unflatten([jax.tree_util.tree_map(zeros, p) if c is None else c for c, p in zip(leaves, parts)])


def max_abs(tree) -> float:
    """``max |leaf|`` over the float leaves of ``tree`` (0 for none)."""
    return max((float(np.max(np.abs(np.asarray(l)))) for l in jax.tree_util.tree_leaves(tree)
                if jnp.size(l) and jnp.issubdtype(jnp.result_type(l), jnp.inexact)), default=0.0)


def display_names(args, roles=(), model_paths=None) -> dict:
    """``{"args[0][3][1][1].w": "serial[3].parallel[1].serial[1].conv2d.w", ...}``: the names a
    model gives its params and state leaves (``model_paths(tree)``, its ``node.paths``), for the
    arguments whose role (``Layer.roles``) is ``params`` or ``state``; state leaves get a
    ``(state)`` suffix. Empty for anything but a model."""
    if model_paths is None:
        return {}
    names = {}
    for i, (arg, role) in enumerate(zip(args, roles)):
        if role not in ("params", "state"):
            continue
        leaves = [p for p, l in labelled_leaves(arg, f"args[{i}]") if l is not None]
        named = [p for p, _ in model_paths(arg)]
        if len(named) == len(leaves):  # else the tree is not the model's: keep the plain paths
            names.update({p: n + (" (state)" if role == "state" else "") for p, n in zip(leaves, named)})
    return names


_PATH = re.compile(r"args(?:\[[^\]]*\]|\.\w+)+")


def renamed(text: str, names: dict) -> str:
    """``text`` with every argument path that ``names`` knows replaced by its display name."""
    return _PATH.sub(lambda m: names.get(m[0], m[0]), text) if names else text
