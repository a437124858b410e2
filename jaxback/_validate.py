"""Trace-time input checks shared by every layer.

Each check raises a ``TypeError`` (wrong dtype) or ``ValueError`` (wrong shape/rank/value) whose
message names the layer, the argument, what was expected and what came, so the user never meets a
raw XLA error. They only look at static metadata (shape, dtype), so they cost nothing under ``jit``.
"""

from __future__ import annotations

from numbers import Real

import jax.numpy as jnp

__all__ = [
    "require_float", "require_integer", "require_rank", "require_same_shape", "require_bool", "require_real",
    "describe",
]


def describe(x) -> str:
    """``shape=(4, 3) dtype=float32`` for error messages."""
    return f"shape={tuple(jnp.shape(x))} dtype={jnp.result_type(x)}"


def require_float(layer: str, arg: str, x) -> None:
    """``x`` must be an inexact (floating) array: integer inputs have no gradient to take."""
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(
            f"{layer}: {arg} must be a floating-point array; got {describe(x)}. "
            f"Cast it first, e.g. {arg}.astype(jnp.float32)."
        )


def require_integer(layer: str, arg: str, x) -> None:
    """``x`` must hold integers (class labels, ids)."""
    if not jnp.issubdtype(jnp.result_type(x), jnp.integer):
        raise TypeError(
            f"{layer}: {arg} must be an integer array (class indices); got {describe(x)}."
        )


def require_rank(layer: str, arg: str, x, rank: int, *, at_least: bool = False, hint: str = "") -> None:
    """``x.ndim`` must equal ``rank`` (or be at least ``rank``)."""
    ndim = jnp.ndim(x)
    if (ndim < rank) if at_least else (ndim != rank):
        wanted = f"at least {rank}" if at_least else f"exactly {rank}"
        raise ValueError(
            f"{layer}: {arg} must have {wanted} dimension(s); got {describe(x)}.{hint and ' ' + hint}"
        )


def require_same_shape(layer: str, a_name: str, a, b_name: str, b) -> None:
    """Losses refuse silent broadcasting: (N, 1) against (N,) is a bug, not a feature."""
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{layer}: {a_name} and {b_name} must have the same shape (no broadcasting); "
            f"got {a_name} {describe(a)} and {b_name} {describe(b)}."
        )


def require_bool(layer: str, arg: str, value) -> None:
    """A flag (``training``, ``approximate``) must be a Python bool: a traced or integer flag is a bug."""
    if not isinstance(value, bool):
        raise TypeError(f"{layer}: {arg} must be True or False; got {arg}={value!r}.")


def require_real(layer: str, arg: str, value, ok=None, expected: str = "", hint: str = "") -> None:
    """A hyperparameter must be a Python real number, not a bool (static under jit), satisfying ``ok``."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{layer}: {arg} must be a Python real number (static under jit){hint}; "
                        f"got {value!r} of type {type(value).__name__}.")
    if ok is not None and not ok(value):
        raise ValueError(f"{layer}: {arg} must be {expected}; got {arg}={value!r}.")
