"""serial, residual, parallel: models from layers, each with its backward rule derived by hand.

Each combinator returns a :class:`jaxback.Model` (the calling convention is in ``jaxback._model``).
Its ``fwd`` keeps one residual per child and its ``bwd`` is the rule below, written out; ``apply``
chains the children's ``apply`` (JAX chains our hand rules) and ``auto`` their ``auto``.

serial(f_1, ..., f_n): the chain rule. Shapes: x_0 = x, x_i = f_i(params[i], x_{i-1}), y = x_n.

  Forward   x_i = f_i(params[i], x_{i-1})           i = 1..n, storing each child's residuals
  Backward  x_bar_n = y_bar
            params_bar[i], x_bar_{i-1} = f_i.bwd(res_i, x_bar_i)     i = n..1
            x_bar = x_bar_0
  (dL/dx_{i-1} = dL/dx_i . dx_i/dx_{i-1}: each child turns the gradient of its output into the
  gradient of its input and of its own weights, from the weights before any update.)

residual(inner): a skip connection. Shapes: x and inner(x) the same, y the same.

  Forward   y = x + inner(params, x)
  Backward  x reaches y twice, directly (dy/dx = I) and through inner, so the two terms add:
            params_bar, inner_x_bar = inner.bwd(res, y_bar)
            x_bar = y_bar + inner_x_bar

parallel(f_1, ..., f_n): independent branches. Shapes: x = (x_1..x_n), y = (y_1..y_n).

  Forward   y_i = f_i(params[i], x_i)
  Backward  y_i depends on x_i alone (a block-diagonal Jacobian), so each branch is its own rule:
            params_bar[i], x_bar_i = f_i.bwd(res_i, y_bar_i)
            x_bar = (x_bar_1..x_bar_n)

Forks and joins (``fan_out``, ``fan_in_sum``, ``fan_in_concat``) are parameter-free layers with
their own rules, in ``jaxback._structure``. Params and state of serial and parallel: a tuple with
one entry per child (``None`` where a child has none); of residual: the inner model's own.
"""

from __future__ import annotations

import jax

from ._model import Ctx, Model, Node, as_node, make_model

__all__ = ["serial", "residual", "parallel"]


def _check_entries(ctx: Ctx, what: str, nodes, tree, allow_none: bool = False):
    """A params/state tree of serial or parallel: a tuple with one entry per child."""
    if allow_none and tree is None:
        return (None,) * len(nodes)
    if not isinstance(tree, (tuple, list)) or len(tree) != len(nodes):
        got = f"{type(tree).__name__} of length {len(tree)}" if isinstance(tree, (tuple, list)) else type(tree).__name__
        raise ValueError(f"{ctx.path}: {what} must be a tuple with one entry per layer ({len(nodes)}: "
                         f"{', '.join(n.kind for n in nodes)}), None for layers without {what}; got {got}.")
    return tuple(tree)


def _pack_state(nodes, states):
    return tuple(states) if any(n.has_state for n in nodes) else None


def _children_paths(nodes, segment):
    def paths(tree, prefix):
        entries = tree if isinstance(tree, (tuple, list)) else (None,) * len(nodes)
        return [pair for i, (n, t) in enumerate(zip(nodes, entries)) if t is not None
                for pair in n.paths(t, f"{prefix}{segment(i, n)}")]
    return paths


def _children(nodes, segment):
    return tuple((segment(i, n), n) for i, n in enumerate(nodes))


def _validated(layers, combinator):
    if not layers:
        raise TypeError(f"{combinator}: needs at least one layer.")
    return [as_node(l) for l in layers]


def serial(*layers) -> Model:
    """Compose ``layers`` left to right: ``serial(f, g)(params, x) = g(params[1], f(params[0], x))``.

    Bind hyperparameters with :func:`jaxback.bind` (``serial(linear, bind(leaky_relu,
    negative_slope=0.1), linear)``) and sizes with ``Layer.sized`` for ``model.init``.
    """
    nodes = _validated(layers, "serial")
    segment = lambda i, n: f"[{i}].{n.kind}"
    has_state = any(n.has_state for n in nodes)

    def init(key, x, path):
        params, states = [], []
        for i, n in enumerate(nodes):
            p, s, x = n.init(jax.random.fold_in(key, i), x, path + segment(i, n))
            params.append(p)
            states.append(s)
        return tuple(params), _pack_state(nodes, states), x

    def run(method, params, state, x, ctx):
        params = _check_entries(ctx, "params", nodes, params)
        states, new_states = _check_entries(ctx, "state", nodes, state, allow_none=not has_state), []
        for i, (n, p, s) in enumerate(zip(nodes, params, states)):
            x, s = n.run(method, p, s, x, ctx.child(segment(i, n), i))
            new_states.append(s)
        return x, _pack_state(nodes, new_states)

    def fwd(params, state, x, ctx):
        params = _check_entries(ctx, "params", nodes, params)
        states, new_states, residuals = _check_entries(ctx, "state", nodes, state, allow_none=not has_state), [], []
        for i, (n, p, s) in enumerate(zip(nodes, params, states)):
            x, s, res = n.fwd(p, s, x, ctx.child(segment(i, n), i))
            new_states.append(s)
            residuals.append(res)
        return x, _pack_state(nodes, new_states), tuple(residuals)

    def bwd(residuals, y_bar, ctx):
        params_bar = [None] * len(nodes)
        for i in reversed(range(len(nodes))):
            params_bar[i], y_bar = nodes[i].bwd(residuals[i], y_bar, ctx.child(segment(i, nodes[i]), i))
        return tuple(params_bar), y_bar

    node = Node("serial", has_state, init, run, fwd, bwd, _children_paths(nodes, segment),
                children=_children(nodes, segment))
    return make_model(node, tuple(n.kind for n in nodes))


def residual(inner) -> Model:
    """``y = x + inner(params, x)``: a skip connection around ``inner`` (a layer or a model)."""
    (node_in,) = _validated([inner], "residual")
    segment = "." + node_in.kind

    def init(key, x, path):
        params, state, y = node_in.init(jax.random.fold_in(key, 0), x, path + segment)
        if (y.shape, y.dtype) != (x.shape, x.dtype):
            raise ValueError(f"{path}: the inner {node_in.kind} must keep its input's shape and dtype, so that "
                             f"x + inner(x) adds like with like; got x {x.shape} {x.dtype} -> {y.shape} {y.dtype}.")
        return params, state, y

    def run(method, params, state, x, ctx):
        y, state = node_in.run(method, params, state, x, ctx.child(segment, 0))
        return x + y, state

    def fwd(params, state, x, ctx):
        y, state, res = node_in.fwd(params, state, x, ctx.child(segment, 0))
        return x + y, state, res

    def bwd(res, y_bar, ctx):
        params_bar, inner_x_bar = node_in.bwd(res, y_bar, ctx.child(segment, 0))
        return params_bar, y_bar + inner_x_bar

    paths = lambda tree, prefix: node_in.paths(tree, prefix + segment)
    node = Node("residual", node_in.has_state, init, run, fwd, bwd, paths, children=((segment, node_in),))
    return make_model(node, (node_in.kind,))


def parallel(*layers) -> Model:
    """Apply ``layers[i]`` to ``x[i]``: a tuple in, a tuple out (stax's ``parallel``)."""
    nodes = _validated(layers, "parallel")
    segment = lambda i, n: f"[{i}].{n.kind}"
    has_state = any(n.has_state for n in nodes)

    def check_x(ctx, x):
        if not isinstance(x, tuple) or len(x) != len(nodes):
            got = f"tuple of {len(x)}" if isinstance(x, tuple) else type(x).__name__
            raise ValueError(f"{ctx.path}: x must be a tuple with one input per branch ({len(nodes)}); got {got}. "
                             f"Use fan_out(num={len(nodes)}) before parallel to copy one input.")
        return x

    def init(key, x, path):
        outs = [n.init(jax.random.fold_in(key, i), xi, path + segment(i, n))
                for i, (n, xi) in enumerate(zip(nodes, check_x(Ctx(path, None, (), True), x)))]
        params, states, ys = zip(*outs)
        return tuple(params), _pack_state(nodes, states), tuple(ys)

    def branches(ctx, params, state, x):
        params = _check_entries(ctx, "params", nodes, params)
        states = _check_entries(ctx, "state", nodes, state, allow_none=not has_state)
        return [(n, p, s, xi, ctx.child(segment(i, n), i))
                for i, (n, p, s, xi) in enumerate(zip(nodes, params, states, check_x(ctx, x)))]

    def run(method, params, state, x, ctx):
        ys, new_states = zip(*(n.run(method, p, s, xi, c) for n, p, s, xi, c in branches(ctx, params, state, x)))
        return tuple(ys), _pack_state(nodes, new_states)

    def fwd(params, state, x, ctx):
        ys, new_states, residuals = zip(*(n.fwd(p, s, xi, c) for n, p, s, xi, c in branches(ctx, params, state, x)))
        return tuple(ys), _pack_state(nodes, new_states), tuple(residuals)

    def bwd(residuals, y_bar, ctx):
        bars = [n.bwd(r, g, ctx.child(segment(i, n), i)) for i, (n, r, g) in enumerate(zip(nodes, residuals, y_bar))]
        params_bar, x_bar = zip(*bars)
        return tuple(params_bar), tuple(x_bar)

    node = Node("parallel", has_state, init, run, fwd, bwd, _children_paths(nodes, segment),
                children=_children(nodes, segment))
    return make_model(node, tuple(n.kind for n in nodes))
