"""Weight initialisation shared by the layers with weights."""

from __future__ import annotations

import math

import jax

__all__ = ["lecun_normal"]


def lecun_normal(key, shape: tuple, fan_in: int, dtype) -> jax.Array:
    """LeCun's scheme from *Efficient BackProp* (1998): ``N(0, 1/fan_in)`` entries of ``shape``.

    Unit-variance inputs then give unit-variance pre-activations, which keeps tanh/sigmoid out of
    saturation at the start of training. ``fan_in`` is the number of inputs summed into one output
    (``max(fan_in, 1)``: an empty layer gets unit variance).
    """
    return jax.random.normal(key, shape, dtype) / math.sqrt(max(fan_in, 1))
