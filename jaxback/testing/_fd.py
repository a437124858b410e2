"""The third witness of ``check_vjp``: central finite differences along one random direction.

``<y_bar, J t>`` is computed by the hand VJP (``<vjp(y_bar), t>``) and by central differences
``(f(a + eps t) - f(a - eps t)) / (2 eps)`` (``jax.test_util.check_grads``' test). What is
perturbed, and in which precision:

* the float32/float64 (and complex64/complex128) leaves of the traced arguments, in real
  directions for real leaves and complex ones for complex leaves, except ``state`` arguments
  (``Layer.roles``: batch norm's running statistics, a model's state), which are not
  differentiated; their output, ``new_state`` (output 1 of such a layer), gets a zero cotangent;
* below float64, when x64 is on and ``f`` runs in float64 (its outputs come out float64), on a
  float64 **copy** of the inputs with eps 1e-6 and float64's tolerance: a float32 difference
  quotient of a deep model carries rounding of ``eps_f32 |f| / eps`` ~ 1e-3 relative, which
  is JAX's own float32 tolerance, so correct float32 models failed. The hand rule in float32 is
  compared with autodiff by the other witness; this one checks its maths in float64.
* otherwise in the leaves' own dtypes (eps 1e-4 below float64), where the result is only
  indicative, and the report says so.

The difference quotient's own error, rounding and kinks alike, is allowed for as measured, not
guessed: ``sum |y_bar| |f(a + eps t) + f(a - eps t) - 2 f(a)| / (2 eps)``, the second difference
at the same points. For a kink crossed within the step (relu's 0) it equals the error the kink
puts into the quotient; for rounding noise it is of the same size (and for a smooth ``f``,
``eps |f''| / 2``, far below the tolerance in float64).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._programs import float_leaves, upcast
from ._tolerances import FD_DTYPES, component_dtype, fd_tolerance

__all__ = ["FdPlan", "fd_plan", "fd_problems"]


@dataclasses.dataclass(frozen=True)
class FdPlan:
    """Where and how the differences run: ``fd_args`` (the traced args or their float64 copy),
    the leaf ``positions`` perturbed, ``inputs = (tangent, cotangent, eps)``, and ``precision``
    in words for the report (``None``: in the inputs' dtypes, all float64)."""

    fd_args: tuple
    positions: tuple
    inputs: tuple
    precision: str = None


def _state_leaves(args, state_positions) -> set:
    """Leaf indices (in ``tree_leaves(args)``) inside the ``state`` arguments."""
    counts = [len(jax.tree_util.tree_leaves(a)) for a in args]
    starts = np.cumsum([0] + counts)
    return {j for i in state_positions if i < len(args) for j in range(starts[i], starts[i + 1])}


def _random_like(rng, leaf):
    shape, dtype = jnp.shape(leaf), jnp.result_type(leaf)
    if jnp.issubdtype(dtype, jnp.complexfloating):  # a complex direction: both parts move
        return np.asarray(rng.randn(*shape) + 1j * rng.randn(*shape), dtype=dtype)
    return np.asarray(rng.randn(*shape), dtype=dtype)


def _cotangent(rng, y_shape, stateful):
    """Standard normal on every float output leaf, zero on ``new_state`` (output 1 of a stateful
    layer: not differentiated, bwd ignores its cotangent), float0 on integer outputs."""
    draw = lambda l: _random_like(rng, l) if jnp.issubdtype(l.dtype, jnp.inexact) else \
        np.zeros(l.shape, jax.dtypes.float0)
    cot = jax.tree_util.tree_map(draw, y_shape)
    if stateful and isinstance(cot, tuple) and len(cot) == 2:
        cot = (cot[0], jax.tree_util.tree_map(np.zeros_like, cot[1]))
    return cot


def _float64_copy(outputs, args, arrays):
    """``upcast(args)`` if ``f`` runs on it with every float output in float64, else ``None``."""
    copy = upcast(args)
    try:
        shapes = jax.eval_shape(outputs, copy, arrays)["apply"]
    except Exception:  # noqa: BLE001  (a rule that refuses float64 inputs: differences stay in-dtype)
        return None
    narrow = [l for l in jax.tree_util.tree_leaves(shapes)
              if jnp.issubdtype(l.dtype, jnp.inexact) and component_dtype(l.dtype) != np.dtype("float64")]
    return None if narrow else copy


def fd_plan(programs, args, arrays, state_positions=()):
    """The :class:`FdPlan` for ``args`` (``None``: no leaf to perturb)."""
    skip = _state_leaves(args, state_positions)
    positions = tuple(i for i in float_leaves(args, FD_DTYPES) if i not in skip)
    if not positions:
        return None
    leaves = jax.tree_util.tree_leaves(args)
    below = sorted({str(jnp.result_type(leaves[i])) for i in positions
                    if component_dtype(jnp.result_type(leaves[i])) != np.dtype("float64")})
    fd_args, precision = args, None
    if below:
        copy = _float64_copy(programs.outputs, args, arrays) if jax.config.jax_enable_x64 else None
        fd_args = args if copy is None else copy
        precision = (f"on a float64 copy of the {'/'.join(below)} inputs" if copy is not None else
                     f"in {'/'.join(below)} ({'f does not run in float64' if jax.config.jax_enable_x64 else 'x64 is off'}"
                     f"), where they are only indicative: enable jax_enable_x64 (check_vjp then runs them on a "
                     f"float64 copy) or pass fd=False")
    rng = np.random.RandomState(0)  # fixed directions, as check_grads
    fd_leaves = jax.tree_util.tree_leaves(fd_args)
    tangent = tuple(_random_like(rng, fd_leaves[i]) for i in positions)
    y_shape = jax.eval_shape(programs.outputs, fd_args, arrays)["apply"]
    cotangent = _cotangent(rng, y_shape, bool(state_positions))
    # eps 1e-6 in float64 (truncation ~1e-12, and a 100x smaller chance than JAX's 1e-4 that a step
    # straddles a kink such as relu's 0), 1e-4 below
    float64 = all(component_dtype(jnp.result_type(fd_leaves[i])) == np.dtype("float64") for i in positions)
    return FdPlan(fd_args, positions, (tangent, cotangent, 1e-6 if float64 else 1e-4), precision)


def fd_problems(projections, plan: FdPlan, rule: str = "VJP") -> list:
    """The report line if the hand rule (``"VJP"`` or ``"JVP"``) and the difference quotient
    disagree beyond JAX's tolerance plus the quotient's measured error (see the module docstring)."""
    hand, difference, slack = (float(p) for p in projections)
    fd_leaves = jax.tree_util.tree_leaves(plan.fd_args)
    tol = fd_tolerance(jnp.result_type(fd_leaves[i]) for i in plan.positions)
    if abs(hand - difference) <= tol + tol * abs(difference) + slack:
        return []
    where = f", {plan.precision}" if plan.precision else ""
    return [f"finite differences disagree with the hand {rule} along a random direction t: <y_bar, J t> = "
            f"{hand:.10g} by the hand rule, {difference:.10g} by central differences (atol = rtol = {tol:g}, "
            f"plus {slack:.3g} for the quotient's own error, from the second difference; eps = {plan.inputs[2]:g}"
            f"{where}). The other witness agreed: the hand {rule} matches autodiff of the reference, so the "
            f"reference's derivative may be wrong too, or f has a kink within eps of these inputs "
            f"(try other inputs, or fd=False)"]
