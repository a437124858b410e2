"""Models: one calling convention for networks of layers, with state, randomness and branches.

A *model* is a :class:`Model`, a Layer built by a combinator (``serial``, ``residual``,
``parallel``: ``jaxback._combinators``) from layers and other models. Every model is called alike:

    params, state = model.init(key, x)                 # sizes inferred from an example input
    y = model(params, x, key=key, training=True)       # a model without stateful layers
    y, new_state = model(params, x, state, key=key, training=True)   # with state (batch norm)

* ``params``: one entry per child, ``None`` for parameter-free children (the quick start's
  ``(linear params, None, linear params)`` tuple for ``serial(linear, tanh, linear)``).
* ``state``: what is carried but never differentiated (batch norm's running statistics), in the
  same tree shape as ``params``; returned updated, never mutated. ``None`` for a model whose layers
  carry none, which then takes and returns no state.
* ``key``: one PRNG key per call. A node gives its child ``i`` the key ``fold_in(key, i)`` (and so
  on down the tree), so every dropout layer draws its own mask; pass a new key every step
  (``jax.random.fold_in(key, step)``) for new masks. Needed only while training with dropout.
* ``training``: a Python bool, passed to every layer that takes one (batch norm, dropout).
* ``x``: an array or a tuple of them (``parallel``'s branches; lstm's ``(xs, state)``).
* per-call array keywords (``model(params, ids, mask=mask)``): arrays that change from call to call
  (a padding mask per batch) reach every layer whose forward takes a keyword of that name
  (``attention``'s ``mask``), in every mode (``backprop(..., mask=mask)`` too). They are not
  differentiated. A name that no layer of the model takes is an error, and so is a non-array value:
  hyperparameters are fixed with ``jb.bind``.

The Layer contract holds: ``fwd(params, x[, state], key=, training=) -> (out, res)`` and
``bwd(res, out_bar, training=) -> (params_bar, x_bar[, None])`` are the explicit chain (``out`` is
``y`` or ``(y, new_state)``; state gets no cotangent, and the one of ``new_state`` is ignored, as
batch norm's). ``apply`` chains the children's ``apply`` (JAX chains our hand rules: the "vjp"
mode) and ``auto`` their ``auto``. Since ``apply`` is not ``custom_vjp(fwd, bwd)`` here,
``composed`` is True and the checkers compare both paths with autodiff.

How a layer enters a model: its ``roles`` (``Layer.roles``) say what each positional argument is
(``params``, ``x``, ``state``, ``key``), so one adapter (``_layer_node``) calls every layer the
same way. Its ``infer(key, x, *sizes)`` gives its parameters for an input, with the sizes the input
does not give set once by ``layer.sized(...)``: ``jb.linear.sized(10)``, ``jb.conv2d.sized(16, 3)``.
Inside, every child is a :class:`Node`: ``init``, ``run`` (apply or auto), ``fwd``, ``bwd`` over
``(params, state, x, ctx)``, where :class:`Ctx` carries the path, the key, the training flag and
the optional tape on which ``backprop(..., record=True)`` writes each layer's input and gradients.

Errors name the model path, ``serial[2].batch_norm``: a layer's own error is prefixed with it.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp

from ._layer import Layer, keyword_names, saved_only, split_keywords

__all__ = ["Model", "Node", "Ctx", "as_node", "make_model", "require_state", "root_ctx", "tree_paths", "spec_of"]


class Ctx(NamedTuple):
    """Per-call context, passed down the tree: path, key, training flag, optional tape, and the
    per-call array keywords (``inputs``) that layers taking them receive."""

    path: str
    key: Any
    key_path: tuple
    training: bool
    tape: Optional[dict] = None
    inputs: Mapping = MappingProxyType({})

    def child(self, segment: str, index: Optional[int]) -> "Ctx":
        """The context of a child: ``segment`` extends the path, ``index`` folds into the key
        (``None``: the child draws the parent's keys, as through ``remat``)."""
        return self._replace(path=self.path + segment, key_path=self.key_path + (() if index is None else (index,)))

    def child_key(self):
        """``fold_in`` along the path from the root key: one key per layer, fixed by its place."""
        if self.key is None:
            raise ValueError(f"{self.path}: needs a PRNG key while training; pass key=... to the model "
                             f"(it is split per layer; use a new one each step) or training=False.")
        key = self.key
        for i in self.key_path:
            key = jax.random.fold_in(key, i)
        return key


class Node(NamedTuple):
    """How a combinator sees a child (a layer or a model); see the module docstring.

    ``init(key, x, path) -> (params, state, y)`` with ``x``, ``y`` ``ShapeDtypeStruct`` trees;
    ``run(method, params, state, x, ctx) -> (y, new_state)``; ``fwd(params, state, x, ctx) ->
    (y, new_state, res)``; ``bwd(res, y_bar, ctx) -> (params_bar, x_bar)``;
    ``paths(tree, prefix) -> [(path, leaf)]`` for a params or state tree. ``children``: the
    ``(path segment, Node)`` pairs below a combinator (for ``help(model)``); ``keywords``: the
    per-call array keywords a layer's own forward takes (a combinator's are its children's);
    ``layer``: a leaf's own Layer.
    """

    kind: str
    has_state: bool
    init: Callable
    run: Callable
    fwd: Callable
    bwd: Callable
    paths: Callable
    children: tuple = ()
    keywords: frozenset = frozenset()
    layer: Optional[Layer] = None  # a leaf's Layer (None for a combinator)


def accepted_keywords(node: Node) -> frozenset:
    """Every keyword that some layer under ``node`` takes."""
    return node.keywords.union(*(accepted_keywords(n) for _, n in node.children))


def layer_paths(node: Node, prefix: str) -> list:
    """The path of every layer under ``node``, in forward order (``serial[1].tanh``)."""
    if not node.children:
        return [prefix]
    return [p for segment, n in node.children for p in layer_paths(n, prefix + segment)]


def layers_without_jvp(node: Node, prefix: str) -> list:
    """The path of every layer under ``node`` that has no hand JVP: forward mode (``jax.jvp``)
    through the model fails there."""
    if not node.children:
        return [prefix] if node.layer is not None and node.layer.jvp is None else []
    return [p for segment, n in node.children for p in layers_without_jvp(n, prefix + segment)]


@dataclasses.dataclass(frozen=True, kw_only=True, repr=False)
class Model(Layer):
    """A Layer made of layers (see the module docstring); ``node`` is its tree."""

    node: Node

    @property
    def composed(self) -> bool:
        return True

    @property
    def has_state(self) -> bool:
        return self.node.has_state

    def paths(self, tree) -> dict:
        """``{path: leaf}`` for a params (or state) tree, e.g. ``serial[2].batch_norm.scale``."""
        return dict(self.node.paths(tree, self.node.kind))

    def summary(self, params=None) -> str:
        """The model's layers, one path a line; with ``params``, each parameter's shape and count
        and the total (``print(model.summary(params))``)."""
        lines = [f"{self.name}: a jaxback Model of {len(layer_paths(self.node, self.kind))} layers"]
        if params is None:
            return "\n".join(lines + [f"  {p}" for p in layer_paths(self.node, self.kind)])
        leaves = self.paths(params)
        lines += [f"  {p:50s} {str(tuple(jnp.shape(a))):>16s} {int(jnp.size(a)):>10,d}" for p, a in leaves.items()]
        return "\n".join(lines + [f"  {'total':50s} {'':>16s} {sum(int(jnp.size(a)) for a in leaves.values()):>10,d}"])


def spec_of(x):
    """``ShapeDtypeStruct`` tree of an example input (arrays or structs)."""
    return jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), x)


def _segment(key) -> str:
    if isinstance(key, jax.tree_util.GetAttrKey):
        return f".{key.name}"
    if isinstance(key, jax.tree_util.SequenceKey):
        return f"[{key.idx}]"
    if isinstance(key, jax.tree_util.DictKey):
        return f"[{key.key!r}]"
    return str(key)


def tree_paths(tree, prefix: str) -> list:
    """``[(prefix + ".field" or "[i]", leaf)]`` for a layer's own params or state record."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return [(prefix + "".join(_segment(k) for k in path), leaf) for path, leaf in flat]


def _prefixed(ctx: Ctx, fn, *args, **kwargs):
    """Run a layer's function; its own TypeError/ValueError gets the model path in front."""
    try:
        return fn(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise type(e)(_at(ctx.path, str(e))) from None


def _at(path: str, message: str) -> str:
    """``message`` under the model path; the layer's own name at its front is said by the path."""
    if message.startswith(path):
        return message
    kind = path.rsplit(".", 1)[-1]
    return f"{path}: {message[len(kind) + 1:].lstrip() if message.startswith(kind + ':') else message}"


def _layer_node(layer: Layer) -> Node:
    """The adapter that calls any Layer by its ``roles`` (see the module docstring)."""
    kind, roles = layer.kind, layer.roles
    n_x, has_state = roles.count("x"), "state" in roles
    names = _keywords_of(layer)
    takes_training = "training" in names

    def check_inputs(x, path):
        if n_x > 1 and not (isinstance(x, tuple) and len(x) == n_x):
            raise ValueError(f"{path}: {kind} takes a tuple of {n_x} inputs "
                             f"({', '.join(a for a in _arg_names(layer) if a)}); got {_describe(x)}.")

    def args_for(params, state, x, ctx):
        if layer.takes_params and params is None:
            raise ValueError(f"{ctx.path}: {kind} has parameters, got None. Build them with model.init(key, x) "
                             f"or {kind}.init(...).")
        if not layer.takes_params and params is not None:
            raise ValueError(f"{ctx.path}: {kind} has no parameters, so its entry must be None; "
                             f"got {type(params).__name__}.")
        if has_state and state is None:
            raise ValueError(f"{ctx.path}: {kind} carries state; pass the model's state (from model.init).")
        check_inputs(x, ctx.path)
        xs = iter(x if n_x > 1 else (x,))
        by_role = {"params": lambda: params, "x": lambda: next(xs), "state": lambda: state,
                   "key": lambda: ctx.child_key() if ctx.training else jax.random.PRNGKey(0)}
        return [by_role[r]() for r in roles]

    def hyper(ctx):
        return {"training": ctx.training} if takes_training else {}

    def inputs(ctx):  # the per-call arrays this layer's forward takes; bwd gets none (fwd saves them)
        return {k: v for k, v in ctx.inputs.items() if k in names}

    def split_out(out):
        return out if has_state else (out, None)

    def init(key, x, path):
        check_inputs(x, path)
        if layer.infer is None:
            if layer.takes_params or has_state:
                raise TypeError(f"{path}: the parameters of {kind} cannot be inferred from its input (it has no "
                                f"`infer`); build them with {kind}.init(...) and pass params yourself.")
            params = state = None
        else:
            try:
                params, state = layer.infer(key, x, *layer.sizes)
            except TypeError as e:
                raise TypeError(f"{path}: model.init needs the sizes of {kind}; use {kind}.sized(...) ({e}).") from None
        ctx = Ctx(path, jax.random.PRNGKey(0), (), True)
        y = jax.eval_shape(lambda p, s, x: run("auto", p, s, x, ctx)[0], params, state, x)
        return params, state, y

    def run(method, params, state, x, ctx):
        out = _prefixed(ctx, getattr(layer, method), *args_for(params, state, x, ctx), **hyper(ctx), **inputs(ctx))
        return split_out(out)

    def fwd(params, state, x, ctx):
        out, res = _prefixed(ctx, layer.fwd, *args_for(params, state, x, ctx), **hyper(ctx), **inputs(ctx))
        y, new_state = split_out(out)
        if ctx.tape is not None:
            ctx.tape[ctx.path] = {"x": x}
        return y, new_state, (res, new_state)

    def bwd(res, y_bar, ctx):
        layer_res, new_state = res
        out_bar = (y_bar, jax.tree_util.tree_map(jnp.zeros_like, new_state)) if has_state else y_bar
        cotangents = layer.bwd(saved_only(layer_res), out_bar, **hyper(ctx))
        x_bars = tuple(c for r, c in zip(roles, cotangents) if r == "x")
        params_bar = cotangents[0] if layer.takes_params else None
        x_bar = x_bars if n_x > 1 else x_bars[0]
        if ctx.tape is not None:
            ctx.tape[ctx.path].update(x_bar=x_bar, params_bar=params_bar)
        return params_bar, x_bar

    return Node(kind, has_state, init, run, fwd, bwd, tree_paths, keywords=names - {"training"}, layer=layer)


def _keywords_of(layer: Layer) -> frozenset:
    """The keywords a layer's forward takes beyond its positional arguments, less those ``bind``
    fixed; a ``**kwargs`` forward is given none of a model's per-call keywords."""
    bound = layer.auto.keywords if isinstance(layer.auto, functools.partial) else {}
    return (keyword_names(layer.auto, len(layer.roles)) or frozenset()) - set(bound)


def _arg_names(layer):
    try:
        return list(inspect.signature(layer.auto).parameters)[int(layer.takes_params):len(layer.roles)]  # not hyperparameters
    except (TypeError, ValueError):
        return []


def _describe(x) -> str:
    if isinstance(x, (tuple, list)):
        return f"{type(x).__name__} of {len(x)}: (" + ", ".join(_describe(a) for a in x) + ")"
    return f"shape={tuple(jnp.shape(x))} dtype={jnp.result_type(x)}" if hasattr(x, "shape") else type(x).__name__


def as_node(child) -> Node:
    """The Node of a child: a model's own tree, or the adapter around a layer."""
    if isinstance(child, Model):
        return child.node
    if isinstance(child, Layer):
        return _layer_node(child)
    raise TypeError(f"a model's children must be jaxback Layers or models; got {child!r}.")


def require_state(node: Node, state, who: str) -> None:
    """A stateful model needs its state; a stateless one takes none."""
    if node.has_state and state is None:
        raise ValueError(f"{who}: {node.kind} carries state (batch norm statistics); pass state=... (from model.init).")
    if not node.has_state and state is not None:
        raise ValueError(f"{who}: {node.kind} carries no state; drop state=... (it has no stateful layer).")


def root_ctx(node: Node, key, training, tape=None, inputs=None) -> Ctx:
    """The context of one call of a model, its per-call array keywords checked against its layers."""
    if not isinstance(training, bool):
        raise TypeError(f"{node.kind}: training must be True or False; got {training!r}.")
    inputs = dict(inputs or {})
    static, arrays = split_keywords(inputs)
    if static:
        raise TypeError(f"{node.kind}: per-call keywords must be arrays (a mask per batch); got "
                        f"{', '.join(f'{k}={v!r}' for k, v in static.items())}. Fix hyperparameters with "
                        f"jb.bind(layer, ...) when you build the model.")
    unknown = sorted(set(arrays) - accepted_keywords(node) - {"training"})
    if unknown:
        takes = sorted(accepted_keywords(node) - {"training"})
        raise TypeError(f"{node.kind}: no layer of this model takes the keyword(s) {', '.join(map(repr, unknown))}; "
                        f"its layers take {', '.join(takes) or 'none'}.")
    return Ctx(node.kind, key, (), training, tape, MappingProxyType(arrays))


def make_model(node: Node, children: tuple = ()) -> Model:
    """The public Model around a node: the calling convention of the module docstring.
    ``children``: the kinds its display name lists (``serial(linear, tanh, linear)``)."""

    def check_state(state):
        if node.has_state and state is None:
            raise ValueError(f"{node.kind}: this model carries state (batch norm statistics); call it as "
                             f"model(params, x, state, ...) with the state from model.init.")
        if not node.has_state and state is not None:
            raise ValueError(f"{node.kind}: this model carries no state; call it as model(params, x, ...).")

    def calling(method):
        def call(params, x, state=None, *, key=None, training=True, **inputs):
            check_state(state)
            y, new_state = node.run(method, params, state, x, root_ctx(node, key, training, inputs=inputs))
            return (y, new_state) if node.has_state else y
        return call

    def fwd(params, x, state=None, *, key=None, training=True, **inputs):
        check_state(state)
        y, new_state, res = node.fwd(params, state, x, root_ctx(node, key, training, inputs=inputs))
        return ((y, new_state) if node.has_state else y), res

    def bwd(res, out_bar, *, training=True):
        y_bar = out_bar[0] if node.has_state else out_bar  # new_state's cotangent is ignored
        params_bar, x_bar = node.bwd(res, y_bar, root_ctx(node, None, training))
        return (params_bar, x_bar, None) if node.has_state else (params_bar, x_bar)

    def init(key, x):
        """``(params, state)`` for an example input ``x`` (arrays or ``ShapeDtypeStruct``s)."""
        params, state, _ = node.init(key, spec_of(x), node.kind)
        return params, state

    roles = ("params", "x", "state") if node.has_state else ("params", "x")
    model = Model(apply=calling("apply"), auto=calling("auto"), fwd=fwd, bwd=bwd, init=init, kind=node.kind,
                  details=tuple(children), roles=roles, node=node)
    object.__setattr__(model, "__doc__", _model_doc(model))
    return model


def _model_doc(model: Model) -> str:
    """What ``help(model)`` shows: its layers, how to call it, the keywords it takes per call."""
    takes = sorted(accepted_keywords(model.node) - {"training"})
    per_call = f" Per-call array keywords its layers take: {', '.join(takes)}." if takes else ""
    return (f"{model.summary()}\n\nCall: model(params, x{', state' if model.has_state else ''}, key=..., "
            f"training=...); (params, state) = model.init(key, example_x); model.summary(params) counts "
            f"the parameters per layer.{per_call} The calling convention: help(jaxback._model).")
