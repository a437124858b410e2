"""Hypothesis strategies for layer inputs.

Every new input shape costs a jit compile (0.5-0.8 s), so shapes come from a small fixed set and the
randomness lives in the values: a seed and a *kind* of values.

Value kinds (``values(rng, shape, kind)``):

* ``"normal"``  standard normal: smooth points, where finite differences are meaningful;
* ``"wide"``    normal x 10: saturates sigmoid/tanh, large logits;
* ``"ties"``    integers in [-2, 2]: exact zeros (the kinks of relu & co.) and repeated values (ties
  in max and softmax);
* ``"extreme"`` normal with about a quarter of entries replaced by +-40, +-1e4 or 0;
* ``"inf"``     ``"extreme"`` plus +-inf entries (for activations, whose limits are documented).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

__all__ = ["BATCH_SHAPES", "VALUE_KINDS", "seeds", "values", "arrays", "cotangents"]

BATCH_SHAPES = ((1,), (4,), (2, 3))  # batch of 1, a batch, two batch dimensions
VALUE_KINDS = ("normal", "wide", "ties", "extreme", "inf")
_EXTREMES = np.array([40.0, -40.0, 1e4, -1e4, 0.0])


def seeds():
    """Seeds for ``numpy.random.default_rng``."""
    return st.integers(min_value=0, max_value=2**32 - 1)


def values(rng: np.random.Generator, shape, kind: str = "normal") -> np.ndarray:
    """A float64 numpy array of ``shape`` filled with values of ``kind`` (see module doc)."""
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "wide":
        return 10.0 * rng.standard_normal(shape)
    if kind == "ties":
        return rng.integers(-2, 3, size=shape).astype(np.float64)
    if kind in ("extreme", "inf"):
        out = rng.standard_normal(shape)
        specials = np.concatenate([_EXTREMES, [np.inf, -np.inf]]) if kind == "inf" else _EXTREMES
        replace = rng.random(shape) < 0.25
        return np.where(replace, rng.choice(specials, size=shape), out)
    raise ValueError(f"unknown value kind {kind!r}; expected one of {VALUE_KINDS}")


def arrays(shape, dtype=jnp.float64, kinds=("normal",)):
    """Strategy for JAX arrays of a fixed ``shape`` and ``dtype`` with values of the given kinds."""
    return st.tuples(seeds(), st.sampled_from(kinds)).map(
        lambda seed_kind: jnp.asarray(values(np.random.default_rng(seed_kind[0]), shape, seed_kind[1]), dtype)
    )


def cotangents(shape, dtype=jnp.float64):
    """Strategy for random standard-normal cotangents of ``shape``."""
    return arrays(shape, dtype, kinds=("normal",))
