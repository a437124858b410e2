"""The registry entry of ``remat``: rematerialisation checked like every combinator.

``check_vjp`` compares both hand paths of ``remat(inner)`` (the vjp mode's ``custom_vjp`` and the
explicit ``bwd`` of ``fwd``) with autodiff of its ``auto`` (``jax.checkpoint`` of ``inner.auto``)
and finite differences. The inner model has dropout, so the recompute must draw the forward's masks
(the key is part of what remat saves). Mutants are wrong recomputations: from a zero input, with
another key (other masks), with weights that moved (a stale copy), each of which must be killed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._activations import tanh
from .._combinators import serial
from .._dropout import dropout
from .._layer import bind
from .._linear import linear
from .._remat import remat
from ._entries_models import MODEL_DTYPES, MODEL_SHAPES, MODEL_SUPPORTS, _model_args
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant

INNER = serial(linear.sized(4), tanh, bind(dropout, rate=0.5), linear.sized(3))
REMAT = remat(INNER)
_KEY = jax.random.PRNGKey(7)


def _recomputed_from(change):
    """remat's rule with ``change(params, x, key) -> (params, x, key)`` applied to what it saved."""
    def bwd(res, y_bar, training=True):
        params, state, x, key, inputs = res
        params, x, key = change(params, x, key)
        return REMAT.bwd((params, state, x, key, inputs), y_bar, training=training)
    return bwd


def _zero_input(params, x, key):
    return params, jnp.zeros_like(x), key


def _other_key(params, x, key):
    return params, x, None if key is None else jax.random.fold_in(key, 1)


def _stale_weights(params, x, key):
    return jax.tree_util.tree_map(lambda w: 0.9 * w, params), x, key


def _params(dt):
    params, _ = REMAT.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))
    return jax.tree_util.tree_map(lambda a: a.astype(dt), params)


def _is_inner(y, x, dt):
    np.testing.assert_array_equal(y, INNER(_params(dt), x, training=False))


ENTRY = LayerInfo(
    REMAT, _model_args(REMAT), MODEL_SHAPES, ({"key": _KEY},), value_kinds=("wide",), supports=MODEL_SUPPORTS,
    dtypes=MODEL_DTYPES,
    error_cases=(ErrorCase("params of the inner model", lambda: ((None,) * 2, jnp.ones((4, 3))), ValueError,
                           r"remat.serial: params must be a tuple with one entry per layer \(4: linear, tanh, dropout"),),
    mutants=(Mutant("recomputes from a zero input", _recomputed_from(_zero_input)),
             Mutant("recomputes with another key (other dropout masks)", _recomputed_from(_other_key)),
             Mutant("recomputes with stale weights", _recomputed_from(_stale_weights))),
    edge_cases=(EdgeCase("inference, no key", lambda dt: (_params(dt), jnp.ones((2, 3), dt)),
                         "training=False: no dropout and no key to save; y is inner's output exactly",
                         lambda y, cots: _is_inner(y, jnp.ones((2, 3), y.dtype), y.dtype), {"training": False}),),
    notes="remat(serial(linear, tanh, dropout, linear)): the backward recomputes the forward from the "
          "saved input and key")

ENTRIES = (ENTRY,)
