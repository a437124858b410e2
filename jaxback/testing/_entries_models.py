"""Registry entries for the structural layers (forks, joins, picks, reshapes) and for models.

A model entry checks a combinator's hand rule on a small network: ``check_vjp`` compares the vjp
path (``apply``) *and* the explicit path (``bwd`` of ``fwd``) with autodiff of ``auto``. Mutants
are wrong combinator rules (a fork that keeps one branch, a residual that drops its skip term, a
concat split off by one, a chain that skips a layer's derivative): each must be killed.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .. import _structure as st
from .._activations import tanh
from .._batch_norm import batch_norm
from .._combinators import parallel, residual, serial
from .._conv import conv2d
from .._dropout import dropout
from .._layer import bind
from .._linear import linear
from .._model import Ctx, as_node
from .._norm import layer_norm
from .._pooling import flatten
from .._positions import PositionParams, position_embedding
from ._registry import FLAGS, EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

SHAPES = ((4, 3), (2, 5, 3))
MODEL_SHAPES = ((4, 3),)  # one shape family per model entry: each compiles a whole network
# Sharded data is checked for every layer; models are sharded end to end by tests/test_train.py
# (4 simulated devices = 1), so their entries skip the per-entry 4-device subprocess check.
MODEL_SUPPORTS = frozenset(FLAGS) - {"sharding"}
MODEL_DTYPES = (jnp.float64, jnp.float32)  # low precision is checked per layer; a network compiles per dtype


def _arrays(rng, dtype, shape, kind, n=1):
    return tuple(jnp.asarray(values(rng, shape, kind), dtype) for _ in range(n))


def assert_shape(a, shape):
    assert a.shape == shape, f"expected shape {shape}, got {a.shape}"


def _assert_zero(a):
    assert not jnp.any(a), f"expected exact zeros, got {a}"


# structural layers --------------------------------------------------------------------------------
def _tangent_mutant(layer, tangent):
    """A jvp of ``layer`` (one positional argument) whose tangent is ``tangent(x_dot, **hyper)``."""
    def jvp(primals, tangents, **hyper):
        return layer.auto(*primals, **hyper), tangent(*tangents, **hyper)
    return jvp


def _structural(layer, sample_args, shapes, mutants, errors, hypers=({},), edges=()):
    return LayerInfo(layer, sample_args, shapes, hypers, ("wide", "extreme", "inf"), edges, errors, mutants,
                     bench_shape=None)


FAN_OUT = _structural(
    st.fan_out, lambda rng, dt, shape, kind: _arrays(rng, dt, shape, kind), SHAPES,
    (Mutant("keeps one branch", lambda res, y_bar, num=2: (y_bar[0].astype(res.dtype),)),
     Mutant("averages the branches", lambda res, y_bar, num=2: ((sum(y_bar) / len(y_bar)).astype(res.dtype),)),
     Mutant("jvp: the tangent on the first copy only", jvp=_tangent_mutant(
         st.fan_out, lambda t, num=2: (t,) + (jnp.zeros_like(t),) * (num - 1))),
     Mutant("jvp: the tangent split among the copies", jvp=_tangent_mutant(st.fan_out, lambda t, num=2: (t / num,) * num))),
    (ErrorCase("num is 0", lambda: (jnp.ones(3),), ValueError, r"fan_out: num must be a Python int >= 1", {"num": 0}),),
    ({}, {"num": 3}),
    (EdgeCase("one branch", lambda dt: (jnp.ones(3, dt),), "num=1 is the identity: x_bar = y_bar[0]",
              lambda y, cots: None, {"num": 1}),))

FAN_IN_SUM = _structural(
    st.fan_in_sum, lambda rng, dt, shape, kind: (_arrays(rng, dt, shape, kind, 3),), SHAPES,
    (Mutant("first branch only", lambda res, y_bar: ((y_bar,) + tuple(jnp.zeros(l.shape, l.dtype) for l in res[1:]),)),
     Mutant("splits y_bar evenly", lambda res, y_bar: (tuple(y_bar / len(res) for _ in res),)),
     Mutant("jvp: the first branch's tangent only", jvp=_tangent_mutant(st.fan_in_sum, lambda ts: ts[0])),
     Mutant("jvp: the mean of the tangents", jvp=_tangent_mutant(st.fan_in_sum, lambda ts: sum(ts) / len(ts)))),
    (ErrorCase("shapes differ", lambda: ((jnp.ones(3), jnp.ones(4)),), ValueError,
               r"fan_in_sum: every branch must have the same shape"),
     ErrorCase("not a tuple", lambda: (jnp.ones(3),), TypeError, r"fan_in_sum: xs must be a tuple")),
    edges=(EdgeCase("one branch", lambda dt: ((jnp.ones(3, dt),),), "a single branch is the identity: x_bar = y_bar",
                    lambda y, cots: _assert_zero(cots[0][0] - 1)),))


def _concat_args(rng, dt, shape, kind):
    return ((*_arrays(rng, dt, shape, kind), jnp.asarray(values(rng, shape[:-1] + (2,), kind), dt)),)


def _split_off_by_one(res, y_bar, axis=-1):
    cut = res[0].shape[axis] - 1
    a, b = y_bar[..., :cut], y_bar[..., cut:]
    return ((jnp.pad(a, [(0, 0)] * (a.ndim - 1) + [(0, 1)]), b[..., 1:]),)


FAN_IN_CONCAT = _structural(
    st.fan_in_concat, _concat_args, SHAPES,
    (Mutant("split off by one", _split_off_by_one),
     Mutant("swapped branches", lambda res, y_bar, axis=-1: (
         (y_bar[..., -res[0].shape[-1]:], y_bar[..., :res[1].shape[-1]]) if res[0].shape == res[1].shape
         else (y_bar[..., res[1].shape[-1]:], y_bar[..., :res[1].shape[-1]]),)),
     Mutant("jvp: branches' tangents in reverse order", jvp=_tangent_mutant(
         st.fan_in_concat, lambda ts, axis=-1: jnp.concatenate(ts[::-1], axis))),
     Mutant("jvp: the last branch's tangent zeroed", jvp=_tangent_mutant(
         st.fan_in_concat, lambda ts, axis=-1: jnp.concatenate(ts[:-1] + (jnp.zeros_like(ts[-1]),), axis)))),
    (ErrorCase("axis out of range", lambda: ((jnp.ones(3), jnp.ones(3)),), ValueError,
               r"fan_in_concat: axis=2 must index every branch", {"axis": 2}),),
    edges=(EdgeCase("an empty branch", lambda dt: ((jnp.ones((2, 0), dt), jnp.ones((2, 3), dt)),),
                    "a branch of width 0 gets a (2, 0) gradient; the other gets all of y_bar",
                    lambda y, cots: (assert_shape(cots[0][0], (2, 0)), _assert_zero(cots[0][1] - 1))),))

SELECT = _structural(
    st.select, lambda rng, dt, shape, kind: (_arrays(rng, dt, shape, kind, 2),), SHAPES,
    (Mutant("gradient to the wrong element", lambda res, y_bar, index=0: (
        (jnp.zeros(res[0].shape, res[0].dtype), y_bar.astype(res[1].dtype)),)),
     Mutant("gradient to every element", lambda res, y_bar, index=0: ((y_bar, y_bar),)),
     Mutant("jvp: the tangent of the wrong element", jvp=_tangent_mutant(st.select, lambda ts, index=0: ts[1 - index])),
     Mutant("jvp: the sum of every element's tangent", jvp=_tangent_mutant(st.select, lambda ts, index=0: ts[0] + ts[1]))),
    (ErrorCase("index out of range", lambda: ((jnp.ones(3),),), ValueError, r"select: index must be < len\(xs\) = 1",
               {"index": 1}),),
    edges=(EdgeCase("the other element", lambda dt: ((jnp.ones(3, dt), jnp.ones(2, dt)),),
                    "the element not selected gets an exact zero gradient",
                    lambda y, cots: _assert_zero(cots[0][1])),))

IDENTITY = _structural(
    st.identity, lambda rng, dt, shape, kind: _arrays(rng, dt, shape, kind), SHAPES,
    (Mutant("zero gradient", lambda res, y_bar: (jnp.zeros_like(y_bar),)),
     Mutant("sign flip", lambda res, y_bar: (-y_bar,)),
     Mutant("jvp: zero tangent", jvp=_tangent_mutant(st.identity, jnp.zeros_like)),
     Mutant("jvp: sign flip", jvp=_tangent_mutant(st.identity, lambda t: -t))),
    (ErrorCase("misspelt keyword", lambda: (jnp.ones(3),), TypeError, r"identity: unknown keyword argument\(s\) 'axis'",
               {"axis": 0}),),
    edges=(EdgeCase("inf and nan pass through", lambda dt: (jnp.asarray([jnp.inf, -jnp.inf, jnp.nan], dt),),
                    "y = x exactly, and x_bar = y_bar", lambda y, cots: _assert_zero(cots[0] - 1)),))

RESHAPE = _structural(
    st.reshape, lambda rng, dt, shape, kind: _arrays(rng, dt, shape, kind), ((4, 3), (2, 2, 3)),
    (Mutant("transposed back", lambda res, y_bar, shape: (y_bar.T.reshape(res.shape),)),
     Mutant("reversed", lambda res, y_bar, shape: (y_bar.reshape(-1)[::-1].reshape(res.shape),)),
     Mutant("jvp: transposed before the reshape", jvp=_tangent_mutant(st.reshape, lambda t, shape: t.T.reshape(shape))),
     Mutant("jvp: reversed", jvp=_tangent_mutant(st.reshape, lambda t, shape: t.reshape(-1)[::-1].reshape(shape)))),
    (ErrorCase("sizes differ", lambda: (jnp.ones((4, 3)),), ValueError, r"reshape: cannot reshape x shape=\(4, 3\)",
               {"shape": (5, -1)}),),
    ({"shape": (-1,)}, {"shape": (3, -1)}),
    (EdgeCase("empty array", lambda dt: (jnp.ones((0, 3), dt),), "(0, 3) -> (0,) and back: an empty gradient of x's shape",
              lambda y, cots: assert_shape(cots[0], (0, 3)), {"shape": (-1,)}),))


# position_embedding (a layer the transformer experiments need; its entry sits with theirs) --------
def _position_args(rng, dtype, shape, kind):
    n, t, d = shape
    return (PositionParams(jnp.asarray(rng.standard_normal((t + 2, d)), dtype)),
            jnp.asarray(values(rng, shape, kind), dtype))


def _position_jvp_mutant(tangent):
    """A position_embedding jvp whose ``y_dot = tangent(x_dot, table_dot)``."""
    def jvp(primals, tangents):
        (params, x), (params_dot, x_dot) = primals, tangents
        return position_embedding.auto(params, x), tangent(x_dot, params_dot.table)
    return jvp


POSITIONS = LayerInfo(
    position_embedding, _position_args, ((2, 3, 4), (1, 5, 2)), value_kinds=("wide", "extreme"),
    error_cases=(ErrorCase("sequence longer than the table", lambda: (PositionParams(jnp.ones((2, 4))), jnp.ones((1, 3, 4))),
                           ValueError, r"position_embedding: x \(N, T, D\) needs a table \(L, D\) with L >= T"),),
    mutants=(Mutant("mean over the batch", lambda res, y_bar: (
                 PositionParams(jnp.pad(y_bar.mean(0), ((0, res[0].shape[0] - y_bar.shape[1]), (0, 0)))), y_bar)),
             Mutant("unused rows get gradient", lambda res, y_bar: (
                 PositionParams(jnp.pad(y_bar.sum(0), ((0, res[0].shape[0] - y_bar.shape[1]), (0, 0)), constant_values=1.0)),
                 y_bar)),
             Mutant("jvp: the table's tangent dropped", jvp=_position_jvp_mutant(lambda x_dot, table_dot: x_dot)),
             Mutant("jvp: the table's last T rows", jvp=_position_jvp_mutant(
                 lambda x_dot, table_dot: x_dot + table_dot[table_dot.shape[0] - x_dot.shape[1]:]))),
    edge_cases=(EdgeCase("unused rows", lambda dt: (PositionParams(jnp.ones((5, 2), dt)), jnp.ones((3, 2, 2), dt)),
                         "rows T..L-1 of the table get exact zeros", lambda y, cots: _assert_zero(cots[0].table[2:])),))


# models -------------------------------------------------------------------------------------------
def _model_args(model, in_shape_of=lambda shape: shape, with_state=False):
    """Sample args ``(params, x[, state])`` from ``model.init`` at a seed, in the asked dtype."""
    def sample(rng, dtype, shape, kind):
        x = jnp.asarray(values(rng, in_shape_of(shape), kind), dtype)
        params, state = model.init(jax.random.PRNGKey(int(rng.integers(2**31))), x)
        params = jax.tree_util.tree_map(lambda a: (a + 0.1 * jnp.asarray(rng.standard_normal(a.shape), a.dtype)), params)
        return (params, x, state) if with_state else (params, x)
    return sample


def _leaf_bwd(layer, res, y_bar, path="model"):
    return as_node(layer).bwd(res, y_bar, Ctx(path, None, (), True))


MLP = serial(linear.sized(4), tanh, linear.sized(3))


def _mlp_without_tanh_rule(res, y_bar, training=True):
    """serial's walk back, but tanh's derivative forgotten (its gradient passed straight through)."""
    p2, g = _leaf_bwd(MLP_LAYERS[2], res[2], y_bar)
    p0, x_bar = _leaf_bwd(MLP_LAYERS[0], res[0], g)
    return (p0, None, p2), x_bar


def _mlp_halves_between_layers(res, y_bar, training=True):
    """serial's walk back with the cotangent halved on its way into the first layer."""
    p2, g = _leaf_bwd(MLP_LAYERS[2], res[2], y_bar)
    _, g1 = _leaf_bwd(MLP_LAYERS[1], res[1], g)
    p0, x_bar = _leaf_bwd(MLP_LAYERS[0], res[0], g1 * 0.5)
    return (p0, None, p2), x_bar


MLP_LAYERS = (linear.sized(4), tanh, linear.sized(3))
SERIAL = LayerInfo(
    MLP, _model_args(MLP), MODEL_SHAPES, value_kinds=("wide",), supports=MODEL_SUPPORTS, dtypes=MODEL_DTYPES,
    error_cases=(ErrorCase("params of the wrong length", lambda: ((None, None), jnp.ones((4, 3))), ValueError,
                           r"serial: params must be a tuple with one entry per layer \(3: linear, tanh, linear\)"),
                 ErrorCase("params for a parameter-free layer", lambda: (
                     (linear.init(jax.random.PRNGKey(0), 3, 4), linear.init(jax.random.PRNGKey(0), 4, 4), None),
                     jnp.ones((4, 3))), ValueError, r"serial\[1\].tanh: tanh has no parameters")),
    mutants=(Mutant("forgets tanh's derivative", _mlp_without_tanh_rule),
             Mutant("halves a cotangent between layers", _mlp_halves_between_layers)),
    edge_cases=(EdgeCase("empty batch", lambda dt: (
        jax.tree_util.tree_map(lambda a: a.astype(dt), MLP.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))[0]),
        jnp.zeros((0, 3), dt)), "y has shape (0, 3); every weight gradient is an exact zero",
        lambda y, cots: [_assert_zero(l) for l in jax.tree_util.tree_leaves(cots[0])]),),
    notes="a chain of linear, tanh, linear (params tuple with a None entry)")

BLOCK_INNER = serial(layer_norm, linear.sized(6), tanh, linear.sized(3))
BLOCK = residual(BLOCK_INNER)


def _residual_without_skip(res, y_bar, training=True):
    return BLOCK_INNER.bwd(res, y_bar, training=training)


def _residual_skip_twice(res, y_bar, training=True):
    params_bar, inner_x_bar = BLOCK_INNER.bwd(res, y_bar, training=training)
    return params_bar, 2 * y_bar + inner_x_bar


RESIDUAL = LayerInfo(
    BLOCK, _model_args(BLOCK), MODEL_SHAPES, value_kinds=("wide",), supports=MODEL_SUPPORTS, dtypes=MODEL_DTYPES,
    error_cases=(ErrorCase("params of the inner model", lambda: ((None,) * 3, jnp.ones((4, 3))), ValueError,
                           r"residual.serial: params must be a tuple with one entry per layer \(4: layer_norm"),),
    mutants=(Mutant("drops the skip term", _residual_without_skip),
             Mutant("counts the skip twice", _residual_skip_twice)),
    edge_cases=(EdgeCase("zero inner weights", lambda dt: (
        jax.tree_util.tree_map(lambda a: jnp.zeros_like(a, dt), BLOCK.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))[0]),
        jnp.ones((2, 3), dt)), "inner(x) = 0, so y = x and x_bar = y_bar exactly",
        lambda y, cots: _assert_zero(cots[1] - 1)),),
    notes="a pre-LN MLP block: residual(serial(layer_norm, linear, tanh, linear))")

BRANCHES = serial(st.fan_out, parallel(linear.sized(2), serial(tanh, linear.sized(3))), st.fan_in_concat)


def _parallel_keeps_first(res, y_bar, training=True):
    """The fork's rule x_bar = sum of the branches' gradients, with only the first branch kept."""
    _, par_res, cat_res = res
    g = _leaf_bwd(st.fan_in_concat, cat_res, y_bar)[1]
    p_a, xa_bar = _leaf_bwd(PARALLEL_BRANCHES[0], par_res[0], g[0])
    p_b, _ = _leaf_bwd(PARALLEL_BRANCHES[1], par_res[1], g[1])
    return (None, (p_a, p_b), None), xa_bar


PARALLEL_BRANCHES = (linear.sized(2), serial(tanh, linear.sized(3)))
PARALLEL = LayerInfo(
    BRANCHES, _model_args(BRANCHES), MODEL_SHAPES, value_kinds=("wide",), supports=MODEL_SUPPORTS, dtypes=MODEL_DTYPES,
    error_cases=(ErrorCase("params of one branch", lambda: ((None, (None, None), None), jnp.ones((4, 3))), ValueError,
                           r"serial\[1\].parallel\[0\].linear: linear has parameters, got None"),),
    mutants=(Mutant("fork keeps the first branch's gradient", _parallel_keeps_first),
             Mutant("branch gradients swapped in the join", lambda res, y_bar, training=True: BRANCHES.bwd(
                 res, y_bar[..., ::-1], training=training))),
    edge_cases=(EdgeCase("zero weights", lambda dt: (
        jax.tree_util.tree_map(lambda a: jnp.zeros_like(a, dt), BRANCHES.init(jax.random.PRNGKey(0), jnp.ones((1, 3)))[0]),
        jnp.ones((2, 3), dt)), "every branch outputs 0, so x_bar is an exact zero",
        lambda y, cots: _assert_zero(cots[1])),),
    notes="fan_out -> parallel(linear, serial(tanh, linear)) -> fan_in_concat")

CNN = serial(conv2d.sized(3, 3), tanh, batch_norm, flatten, bind(dropout, rate=0.5), linear.sized(2))
_KEY = jax.random.PRNGKey(7)


def _scaled_input_bar(res, out_bar, training=True):
    params_bar, x_bar, state_bar = CNN.bwd(res, out_bar, training=training)
    return params_bar, 2 * x_bar, state_bar


STATEFUL = LayerInfo(
    CNN, _model_args(CNN, with_state=True), ((2, 4, 4, 1),), ({"key": _KEY}, {"key": _KEY, "training": False}),
    value_kinds=("wide",), finite_differences=False, supports=MODEL_SUPPORTS, dtypes=MODEL_DTYPES,
    error_cases=(ErrorCase("no key while training", lambda: (*_model_args(CNN, with_state=True)(
        np.random.default_rng(0), jnp.float32, (2, 4, 4, 1), "normal"),), ValueError,
        r"serial\[4\].dropout: needs a PRNG key while training"),),
    mutants=(Mutant("batch norm's inference rule while training", lambda res, out_bar, training=True: CNN.bwd(
                 res, out_bar, training=not training)),
             Mutant("input gradient doubled", _scaled_input_bar)),
    edge_cases=(EdgeCase("inference", lambda dt: _model_args(CNN, with_state=True)(
        np.random.default_rng(1), dt, (2, 4, 4, 1), "normal"),
        "training=False: running statistics, no dropout; new_state is the state passed in",
        lambda y, cots: None, {"training": False}),),
    notes="conv2d, tanh, batch_norm, flatten, dropout, linear (a bias right before batch norm would have an exactly-zero gradient, all rounding): state and a key; finite differences see "
          "new_state's dependence on x, which is not differentiated (batch_norm's NOTE)")

ENTRIES = (POSITIONS, FAN_OUT, FAN_IN_SUM, FAN_IN_CONCAT, SELECT, IDENTITY, RESHAPE, SERIAL, RESIDUAL, PARALLEL, STATEFUL)
