"""Sliding-window geometry shared by conv2d and the pooling layers: window/stride pairs, paddings."""

from __future__ import annotations

from jax import lax

__all__ = ["is_int", "pair", "explicit_padding", "leftover"]


def is_int(v) -> bool:
    """A Python int that is not a bool (``True`` is an int in Python)."""
    return isinstance(v, int) and not isinstance(v, bool)


def pair(name: str, arg: str, value) -> tuple[int, int]:
    """``value`` as ``(rows, cols)`` positive ints: an int means the same for both."""
    both = (value, value) if is_int(value) else value
    if not (isinstance(both, tuple) and len(both) == 2 and all(is_int(v) and v >= 1 for v in both)):
        raise ValueError(f"{name}: {arg} must be a positive int or a pair of positive ints; got {arg}={value!r}.")
    return both


def explicit_padding(name, padding, in_hw, window_hw, stride) -> tuple:
    """``((top, bottom), (left, right))`` from "SAME" | "VALID" | int | explicit pairs (all >= 0)."""
    if isinstance(padding, str) and padding in ("SAME", "VALID"):
        return tuple(lax.padtype_to_pads(in_hw, window_hw, stride, padding))
    if is_int(padding) and padding >= 0:
        return ((padding, padding), (padding, padding))
    if (isinstance(padding, tuple) and len(padding) == 2
            and all(isinstance(p, tuple) and len(p) == 2 and all(is_int(v) and v >= 0 for v in p) for p in padding)):
        return padding
    raise ValueError(
        f'{name}: padding must be "SAME", "VALID", a non-negative int or ((top, bottom), (left, right)) '
        f"of non-negative ints; got padding={padding!r}."
    )


def leftover(size: int, pads: tuple, span: int, stride: int) -> int:
    """Rows past the last window: ``(size + lo + hi - span) % stride``."""
    return (size + pads[0] + pads[1] - span) % stride
