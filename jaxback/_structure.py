"""Layers that route data without arithmetic: forks, joins, picks and reshapes, each with its rule.

They are parameter-free Layers (``make_layer``), so their hand rules run in every mode. What a rule
must do follows from one fact of the chain rule: an input used in several places gets the *sum* of
the gradients of all its uses, and an output that is a copy or a piece of an input passes its
gradient back to exactly the entries it came from.

fan_out(x, num=2): a fork. x: (...); y = (x, ..., x), num copies.
  Backward  x is used num times, so its gradient sums the branches':
            x_bar = y_bar[0] + y_bar[1] + ... + y_bar[num - 1]

fan_in_sum(xs): a join by addition. xs = (x_1..x_n), each (...) of one shape; y = x_1 + ... + x_n.
  Backward  dy/dx_i = I for every i, so every branch gets the same gradient:
            x_bar_i = y_bar                       (copied to each branch)

fan_in_concat(xs, axis=-1): a join by concatenation. x_i: (..., c_i, ...) along ``axis``;
  y = concatenate(xs, axis): (..., c_1 + ... + c_n, ...).
  Backward  entry j of y along axis is an entry of exactly one x_i, so y_bar splits back:
            x_bar_i = y_bar[..., o_i : o_i + c_i, ...],   o_i = c_1 + ... + c_{i-1}

select(xs, index=0): one element of a tuple (lstm's ``hs`` from ``(hs, state)``); y = xs[index].
  Backward  x_bar_index = y_bar; every other element gets zeros of its shape.

identity(x): y = x, x_bar = y_bar (a branch that passes its input through, in ``parallel``).

reshape(x, shape=...): y = x.reshape(shape) (row-major);  x_bar = y_bar.reshape(x.shape).

Forward mode. Each of these maps is linear in its input (a copy, a sum, a concatenation, a pick, a
reshape), so perturbing the input along a tangent moves the output by the same map of the tangent,
exactly (no higher-order terms): the tangent of a copy is a copy of the tangent, and so on.

  Tangent   fan_out        y_dot = (x_dot, ..., x_dot)                num copies
            fan_in_sum     y_dot = x_dot_1 + ... + x_dot_n
            fan_in_concat  y_dot = concatenate(xs_dot, axis)          (..., c_1 + ... + c_n, ...)
            select         y_dot = xs_dot[index]
            identity       y_dot = x_dot
            reshape        y_dot = x_dot.reshape(shape)

Residuals: only static shapes and dtypes (``Like``, zero bytes; ``select`` keeps every element's, and
its sharding, to rebuild the zeros), and nothing for ``identity``. Each cotangent is cast to its primal's dtype.
NOTE (sharding): select's zeros keep each element's sharding too (``_sharding.ZeroCotangent``): under
a mesh with explicit axes ``custom_vjp`` wants the primal's type, sharding included.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._layer import Like, make_layer
from ._sharding import ZeroCotangent
from ._validate import describe

__all__ = ["fan_out", "fan_in_sum", "fan_in_concat", "select", "identity", "reshape"]


def _require_tuple(name, xs, at_least=1):
    if not isinstance(xs, (tuple, list)) or len(xs) < at_least:
        got = f"{type(xs).__name__} of {len(xs)}" if isinstance(xs, (tuple, list)) else describe(xs)
        raise TypeError(f"{name}: xs must be a tuple of at least {at_least} arrays (one per branch); got {got}.")


def _require_int(name, arg, value, low):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name}: {arg} must be a Python int >= {low}; got {arg}={value!r}.")


def _likes(xs):
    return tuple(Like.of(x) for x in xs)


# fan_out ------------------------------------------------------------------------------------------
def fan_out_auto(x, *, num=2):
    """``(x,) * num``: one input for ``num`` branches."""
    _require_int("fan_out", "num", num, 1)
    return (x,) * num


def fan_out_fwd(x, *, num=2):
    return fan_out_auto(x, num=num), Like.of(x)


def fan_out_bwd(res, y_bar, *, num=2):
    x_bar = y_bar[0]
    for branch_bar in y_bar[1:]:  # the chain rule at a fork: the uses' gradients add
        x_bar = x_bar + branch_bar
    return (x_bar.astype(res.dtype),)


def fan_out_jvp(primals, tangents, *, num=2):
    (x,), (x_dot,) = primals, tangents
    return fan_out_auto(x, num=num), (x_dot,) * num  # every copy moves with x


fan_out = make_layer(fan_out_auto, fan_out_fwd, fan_out_bwd, name="fan_out", jvp=fan_out_jvp)


# fan_in_sum ---------------------------------------------------------------------------------------
def fan_in_sum_auto(xs):
    """``x_1 + ... + x_n`` for a tuple of same-shaped arrays."""
    _require_tuple("fan_in_sum", xs)
    shapes = {jnp.shape(x) for x in xs}
    if len(shapes) != 1:
        raise ValueError(f"fan_in_sum: every branch must have the same shape (no broadcasting); got "
                         f"{', '.join(describe(x) for x in xs)}.")
    y = xs[0]
    for x in xs[1:]:
        y = y + x
    return y


def fan_in_sum_fwd(xs):
    return fan_in_sum_auto(xs), _likes(xs)


def fan_in_sum_bwd(res, y_bar):
    return (tuple(y_bar.astype(like.dtype) for like in res),)  # copied to every branch


def fan_in_sum_jvp(primals, tangents):
    (xs,), (xs_dot,) = primals, tangents
    y = fan_in_sum_auto(xs)
    return y, fan_in_sum_auto(xs_dot).astype(y.dtype)  # y_dot = x_dot_1 + ... + x_dot_n


fan_in_sum = make_layer(fan_in_sum_auto, fan_in_sum_fwd, fan_in_sum_bwd, name="fan_in_sum", jvp=fan_in_sum_jvp)


# fan_in_concat ------------------------------------------------------------------------------------
def _concat_axis(xs, axis):
    _require_tuple("fan_in_concat", xs)
    ndim = jnp.ndim(xs[0])
    if isinstance(axis, bool) or not isinstance(axis, int) or not -ndim <= axis < ndim or any(jnp.ndim(x) != ndim for x in xs):
        raise ValueError(f"fan_in_concat: axis={axis} must index every branch, all of one rank; got "
                         f"{', '.join(describe(x) for x in xs)}.")
    return axis % ndim


def fan_in_concat_auto(xs, *, axis=-1):
    """``concatenate(xs, axis)``."""
    return jnp.concatenate(xs, axis=_concat_axis(xs, axis))


def fan_in_concat_fwd(xs, *, axis=-1):
    return fan_in_concat_auto(xs, axis=axis), _likes(xs)


def fan_in_concat_bwd(res, y_bar, *, axis=-1):
    axis = axis % y_bar.ndim
    offsets = np.cumsum([0] + [like.shape[axis] for like in res])  # o_i = c_1 + ... + c_{i-1}
    take = lambda i: tuple(slice(offsets[i], offsets[i + 1]) if a == axis else slice(None) for a in range(y_bar.ndim))
    return (tuple(y_bar[take(i)].astype(like.dtype) for i, like in enumerate(res)),)


def fan_in_concat_jvp(primals, tangents, *, axis=-1):
    (xs,), (xs_dot,) = primals, tangents
    y = fan_in_concat_auto(xs, axis=axis)
    return y, jnp.concatenate(xs_dot, axis=_concat_axis(xs, axis)).astype(y.dtype)


fan_in_concat = make_layer(fan_in_concat_auto, fan_in_concat_fwd, fan_in_concat_bwd, name="fan_in_concat",
                           jvp=fan_in_concat_jvp)


# select -------------------------------------------------------------------------------------------
def select_auto(xs, *, index=0):
    """``xs[index]`` of a tuple (pytree elements allowed, e.g. lstm's state)."""
    _require_tuple("select", xs)
    _require_int("select", "index", index, 0)
    if index >= len(xs):
        raise ValueError(f"select: index must be < len(xs) = {len(xs)}; got index={index}.")
    return xs[index]


def select_fwd(xs, *, index=0):
    return select_auto(xs, index=index), jax.tree_util.tree_map(ZeroCotangent.of, tuple(xs))


def select_bwd(res, y_bar, *, index=0):
    picked = jax.tree_util.tree_map(lambda g, like: g.astype(like.dtype), y_bar, res[index])
    zeros = lambda tree: jax.tree_util.tree_map(lambda like: like.zeros(), tree,
                                                is_leaf=lambda l: isinstance(l, ZeroCotangent))
    return (tuple(picked if i == index else zeros(like) for i, like in enumerate(res)),)


def select_jvp(primals, tangents, *, index=0):
    (xs,), (xs_dot,) = primals, tangents
    return select_auto(xs, index=index), xs_dot[index]  # the other elements' tangents go nowhere


select = make_layer(select_auto, select_fwd, select_bwd, name="select", jvp=select_jvp)


# identity and reshape -----------------------------------------------------------------------------
def identity_auto(x):
    """``y = x``."""
    return x


def identity_fwd(x):
    return x, None


def identity_bwd(res, y_bar):
    return (y_bar,)


def identity_jvp(primals, tangents):
    (x,), (x_dot,) = primals, tangents
    return x, x_dot


identity = make_layer(identity_auto, identity_fwd, identity_bwd, name="identity", jvp=identity_jvp)


def reshape_auto(x, *, shape):
    """``x.reshape(shape)``, row-major; ``shape`` a tuple of ints (one may be -1)."""
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise TypeError(f"reshape: shape must be a tuple of Python ints; got shape={shape!r}.")
    known = math.prod(s for s in shape if s != -1)
    if shape.count(-1) > 1 or (known and jnp.size(x) % known) or (-1 not in shape and known != jnp.size(x)):
        raise ValueError(f"reshape: cannot reshape x {describe(x)} to shape={shape}.")
    return jnp.reshape(x, shape)


def reshape_fwd(x, *, shape):
    return reshape_auto(x, shape=shape), Like.of(x)


def reshape_bwd(res, y_bar, *, shape):
    return (y_bar.reshape(res.shape).astype(res.dtype),)


def reshape_jvp(primals, tangents, *, shape):
    (x,), (x_dot,) = primals, tangents
    y = reshape_auto(x, shape=shape)
    return y, x_dot.reshape(y.shape)


reshape = make_layer(reshape_auto, reshape_fwd, reshape_bwd, name="reshape", jvp=reshape_jvp)
