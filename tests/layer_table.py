"""LAYERS_UNDER_TEST: one row per exported layer; the contract tests run every check on every row.

A row says how to build the layer's arguments from a numpy Generator, a dtype, a shape from the
row's small fixed set (each shape compiles once) and a value kind (``strategies.values``), plus the
hyperparameter settings to try and which edge value kinds the layer must survive.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp
import numpy as np

import jaxback as jb
from jaxback.testing.strategies import values

ELEMENTWISE_SHAPES = ((1,), (4, 5), (2, 3, 4))
ACTIVATION_KINDS = ("wide", "ties", "extreme", "inf")
FINITE_KINDS = ("wide", "ties", "extreme")


@dataclasses.dataclass(frozen=True)
class Case:
    layer: jb.Layer
    make_args: Callable  # (rng, dtype, shape, kind) -> tuple of positional args
    shapes: tuple
    hypers: tuple = ({},)
    edge_kinds: tuple = FINITE_KINDS

    @property
    def id(self) -> str:
        return self.layer.name


def _x(rng, dtype, shape, kind):
    return (jnp.asarray(values(rng, shape, kind), dtype),)


def _linear_args(rng, dtype, shape, kind):
    n, m = shape[-1], 3
    params = jb.LinearParams(
        w=jnp.asarray(rng.standard_normal((n, m)), dtype), b=jnp.asarray(rng.standard_normal(m), dtype)
    )
    return params, jnp.asarray(values(rng, shape, kind), dtype)


def _sce_args(rng, dtype, shape, kind):
    n, c = shape
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.integers(0, c, n), jnp.int32)


def _pair_args(rng, dtype, shape, kind):
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.standard_normal(shape), dtype)


def _bce_args(rng, dtype, shape, kind):
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.random(shape), dtype)


def _activation(layer, hypers=({},)):
    return Case(layer, _x, ELEMENTWISE_SHAPES, hypers, ACTIVATION_KINDS)


LAYERS_UNDER_TEST = (
    Case(jb.linear, _linear_args, ((1, 1), (4, 5), (2, 3, 5), (0, 5))),
    _activation(jb.relu),
    _activation(jb.leaky_relu, ({}, {"negative_slope": 0.2})),
    _activation(jb.sigmoid),
    _activation(jb.tanh),
    _activation(jb.gelu, ({"approximate": False}, {"approximate": True})),
    _activation(jb.softplus),
    _activation(jb.silu),
    Case(jb.softmax, _x, ELEMENTWISE_SHAPES, ({"axis": -1}, {"axis": 0})),
    Case(jb.log_softmax, _x, ELEMENTWISE_SHAPES, ({"axis": -1}, {"axis": 0})),
    Case(jb.softmax_cross_entropy, _sce_args, ((1, 1), (6, 4), (0, 4))),
    Case(jb.mse, _pair_args, ((1,), (4, 3), (0, 3))),
    Case(jb.binary_cross_entropy_with_logits, _bce_args, ((1,), (4, 3), (0, 3))),
)
