"""The programs ``check_vjp`` runs for one subject at one setting of its static hyperparameters.

One cache entry per (subject, setting, jit); jit's own cache then compiles once per argument shape,
so every later example of a "shape family" runs without re-tracing. Eagerly, each call re-traced
the rule and dispatched it op by op (3-5 s per new attention shape, ~1 s jitted). With
``jit=False`` the same functions run op by op.

Arguments are pytrees; "float leaves" are the floating (and complex) leaves of ``args`` in
``tree_leaves`` order (``None`` entries are empty subtrees), given as a static tuple of leaf
indices. ``args`` here are the *traced* part only; what ``check_vjp`` holds static (``_static``:
nondiff_argnums, non-array leaves) is part of the cache key and merged back at each call.

Complex numbers follow JAX's convention: the pairing of a cotangent ``c`` with a tangent ``t`` is
``Re(sum(c * t))``, with no conjugation, so that ``<vjp(c), t> = <c, jvp(t)>`` for every real
direction of a complex input (``jax.vjp`` of ``z -> w * z`` is ``c -> w * c``; ``jax.grad`` of a
real ``f(x + iy)`` is ``df/dx - i df/dy``, the conjugate of the steepest-ascent direction).
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._static import Static, combine, has_static
from ._structure import fill_none
from ._subject import Subject

__all__ = ["Programs", "programs_for", "float_leaves", "reference_dtype", "upcast", "caller", "quotients",
           "inner", "pick", "replace_leaves"]


def reference_dtype(like=None):
    """float64 (complex128 for a complex ``like``), or float32/complex64 when x64 is off."""
    wide = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    if like is not None and jnp.issubdtype(jnp.result_type(like), jnp.complexfloating):
        return jnp.complex128 if wide == jnp.float64 else jnp.complex64
    return wide


def _is_float(x) -> bool:
    dtype = jnp.result_type(x)
    return jnp.issubdtype(dtype, jnp.inexact) and dtype != jax.dtypes.float0


def float_leaves(args, dtypes=None) -> tuple:
    """Indices (in ``tree_leaves(args)``) of the non-empty floating leaves, of ``dtypes`` if given."""
    return tuple(i for i, l in enumerate(jax.tree_util.tree_leaves(args))
                 if _is_float(l) and jnp.size(l) > 0 and (dtypes is None or np.dtype(jnp.result_type(l)) in dtypes))


def replace_leaves(tree, positions, values):
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    for i, v in zip(positions, values):
        leaves[i] = v
    return treedef.unflatten(leaves)


def pick(tree, positions):
    leaves = jax.tree_util.tree_leaves(tree)
    return tuple(leaves[i] for i in positions)


def _below_reference(l) -> bool:
    return _is_float(l) and np.dtype(jnp.result_type(l)).itemsize < np.dtype(reference_dtype(l)).itemsize


def upcast(tree):
    """Float leaves below the reference precision, cast up to it (complex ones to its complex)."""
    up = lambda l: jnp.asarray(l).astype(reference_dtype(l)) if _below_reference(l) else l
    return jax.tree_util.tree_map(up, tree)


def _all_reference(*trees) -> bool:
    """No float leaf below the reference precision: ``upcast`` would change nothing, so the float64
    reference *is* the reference (computing it again doubled the eager work and the traced program)."""
    return not any(_below_reference(l) for t in trees for l in jax.tree_util.tree_leaves(t))


def inner(xs, ys):
    """``Re(sum(x * y))`` over two pytrees of float leaves, in the reference precision (JAX's
    pairing for complex leaves: no conjugation, see the module docstring)."""
    def pair(x, y):
        acc = reference_dtype(jnp.result_type(x, y))
        return jnp.real(jnp.sum(jnp.asarray(x).astype(acc) * jnp.asarray(y).astype(acc)))
    return sum(pair(x, y) for x, y in zip(jax.tree_util.tree_leaves(xs), jax.tree_util.tree_leaves(ys))
               if _is_float(y))


def _abs_inner(xs, ys):
    """``sum(|x| |y|)`` over float leaves: a bound on how much ``inner`` can move."""
    return sum(jnp.sum(jnp.abs(jnp.asarray(x).astype(reference_dtype(x))) *
                       jnp.abs(jnp.asarray(y).astype(reference_dtype(y))))
               for x, y in zip(jax.tree_util.tree_leaves(xs), jax.tree_util.tree_leaves(ys)) if _is_float(y))


class Programs(NamedTuple):
    outputs: Callable       # (args, arrays) -> {"apply", "reference", "ref64"[, "fwd"]: outputs}
    evaluate: Callable      # (args, arrays, y_bar, positions, fd) -> (outputs, cotangents, projections)
    bwd_of_fwd: Callable    # (args, arrays, y_bar) -> bwd's cotangents (Layers; for jax.eval_shape)
    hand_vjp: Callable      # (args, arrays, y_bar) -> the VJP of apply (for jax.eval_shape)
    second_order: Callable  # (args, arrays, y_bar, positions, v) -> (hand, reference) grads of grads


def programs_for(subject: Subject, static_key: tuple, jit: bool = True, static_args: Static = None) -> Programs:
    """The (cached) programs; subjects or static arguments that cannot be hashed get fresh ones."""
    try:
        return _cached(subject, static_key, jit, static_args)
    except TypeError:  # an unhashable callable (e.g. a module holding arrays) or static leaf
        return _build(subject, static_key, jit, static_args)


@functools.lru_cache(maxsize=256)
def _cached(subject, static_key, jit, static_args):
    return _build(subject, static_key, jit, static_args)


def caller(static_key: tuple, static_args: Static = None) -> Callable:
    """``call(fn, args, arrays)``: ``fn`` on the traced ``args`` with the static ones merged back,
    the static hyperparameters and the array keywords."""
    static = {k: v for k, _, v in static_key}
    merge = (lambda args: combine(args, static_args)) if static_args is not None and has_static(static_args) \
        else (lambda args: args)

    def call(fn, args, arrays):
        return fn(*merge(args), **static, **arrays)
    return call


def quotients(f, leaves, tangent, cotangent, eps, centre):
    """``(<cotangent, difference quotient>, <|cotangent|, |second difference|>)`` of ``f`` at
    ``leaves`` along ``tangent``: central differences ``(f(a + eps t) - f(a - eps t)) / (2 eps)``
    (what ``jax.test_util.check_grads`` compares) and, second,
    ``sum |cotangent| |f(a + eps t) + f(a - eps t) - 2 f(a)| / (2 eps)``: what rounding and kinks
    did to the quotient (``_fd``). ``centre`` is ``f(leaves)``."""
    step = lambda sign: tuple(a + sign * eps * t for a, t in zip(leaves, tangent))
    quotient = lambda p, m, c=None: ((p - m) if c is None else (p + m - 2 * c)) * (0.5 / eps)
    plus, minus = f(step(1)), f(step(-1))
    floats = lambda fn, *trees: jax.tree_util.tree_map(lambda *ls: fn(*ls) if _is_float(ls[0]) else ls[0], *trees)
    return inner(floats(quotient, plus, minus), cotangent), _abs_inner(floats(quotient, plus, minus, centre), cotangent)


def _build(subject: Subject, static_key: tuple, jit: bool, static_args: Static = None) -> Programs:
    static = {k: v for k, _, v in static_key}
    call = caller(static_key, static_args)

    def pull(fn, args, arrays, y_bar):
        return jax.vjp(lambda *traced: call(fn, traced, arrays), *args)[1](y_bar)

    def outputs(args, arrays):
        out = {"apply": call(subject.apply, args, arrays), "reference": call(subject.reference, args, arrays)}
        out["ref64"] = out["reference"] if _all_reference(args) else call(subject.reference, upcast(args), arrays)
        if subject.fwd is not None:
            out["fwd"] = call(subject.fwd, args, arrays)[0]
        return out

    def bwd_of_fwd(args, arrays, y_bar):
        return subject.bwd(call(subject.fwd, args, arrays)[1], y_bar, **static)

    def hand_vjp(args, arrays, y_bar):
        return pull(subject.apply, args, arrays, y_bar)

    def cotangents(args, arrays, y_bar):
        """The hand VJP, the reference's, the reference's in float64 and (composed) the explicit path."""
        reference = pull(subject.reference, args, arrays, y_bar)
        cots = {"hand": hand_vjp(args, arrays, y_bar), "reference": reference,
                "ref64": reference if _all_reference(args, y_bar) else
                pull(subject.reference, upcast(args), arrays, upcast(y_bar))}
        if subject.composed:
            cots["explicit"] = fill_none(bwd_of_fwd(args, arrays, y_bar), reference)
        return cots

    def projections(args, arrays, positions, tangent, cotangent, eps):
        """``<cotangent, J tangent>`` two ways, the hand VJP and central differences, and the
        quotient's own error (``quotients``)."""
        f = lambda leaves: call(subject.apply, replace_leaves(args, positions, leaves), arrays)
        leaves = pick(args, positions)
        centre, vjp = jax.vjp(f, leaves)
        return (inner(vjp(cotangent)[0], tangent), *quotients(f, leaves, tangent, cotangent, eps, centre))

    def evaluate(args, arrays, y_bar, positions, fd):
        """Everything in one program (one compile per shape family); ``fd``: ``None`` or
        ``(fd_args, tangent, cotangent, eps)`` for the finite-difference projections, at ``fd_args``
        (``args`` themselves, or their float64 copy: ``_fd``)."""
        return (outputs(args, arrays), cotangents(args, arrays, y_bar),
                None if fd is None else projections(fd[0], arrays, positions, *fd[1:]))

    def second_order(args, arrays, y_bar, positions, v):
        def pairing(fn, leaves):
            cot = pull(fn, replace_leaves(args, positions, leaves), arrays, y_bar)
            return inner(pick(cot, positions), v)

        leaves = pick(args, positions)
        grad = lambda fn: jax.grad(functools.partial(pairing, fn))(leaves)
        return grad(subject.apply), grad(subject.reference)

    if not jit:
        return Programs(outputs, evaluate, bwd_of_fwd, hand_vjp, second_order)
    return Programs(jax.jit(outputs), jax.jit(evaluate, static_argnums=3), bwd_of_fwd, hand_vjp,
                    jax.jit(second_order, static_argnums=3))
