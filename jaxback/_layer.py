"""The Layer record: one forward, two ways to differentiate it.

A Layer bundles the same forward maths twice:

* ``apply``: ``jax.custom_vjp(auto)`` with the hand-derived rule ``defvjp(fwd, bwd)``;
* ``auto``: the plain forward, which JAX autodiff differentiates by itself.

so that hand and automatic gradients can be compared on the same code.

Keyword arguments come in two kinds (``split_keywords``):

* hyperparameters (``axis``, ``negative_slope``, ``eps``...): hashable Python values, static under
  ``jit``, baked into one ``custom_vjp`` per distinct setting (``_rule_for``). ``fwd`` *and* ``bwd``
  receive them as keywords, because residuals may only hold arrays;
* array keywords (an attention ``mask``): traced, so they are routed to the ``custom_vjp`` as extra
  positional arguments with a ``None`` (zero) cotangent. ``auto`` and ``fwd`` receive them;
  ``bwd`` does not (``fwd`` saves what it needs of them in ``res``). They are not differentiated.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._hand_rule import HandRules, hand_rule

__all__ = ["Layer", "make_layer", "bind", "split_keywords", "dtype_token", "Like", "ROLES", "infer_from_features",
           "saved_only"]

# What each positional argument of a layer is, for the model combinators (``_model``):
ROLES = ("params", "x", "state", "key")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Layer:
    """An immutable record, built by keyword: ``apply``, ``auto``, ``fwd``, ``bwd``, ``init``, ``kind``...

    Attributes:
      apply: forward with the hand-derived VJP registered by ``jax.custom_vjp``; ``layer(...)``
        calls it.
      auto: the same forward without a custom rule: JAX autodiff differentiates it.
      fwd: ``fwd(*args, **hyper) -> (y, res)``, the first half of the hand rule.
      bwd: ``bwd(res, y_bar, **hyper) -> cotangents``, a tuple with one entry per positional
        argument of ``apply`` (``None`` for integer inputs such as labels). It receives the static
        hyperparameters only, not array keywords (see the module docstring).
      jvp: ``jvp(primals, tangents, **hyper) -> (y, y_dot)``, the hand-derived forward-mode rule
        (``None``: the layer has none, and ``jax.jvp`` of it raises as for any ``custom_vjp``; a
        model's is ``None`` too, and forward mode runs through its layers' own JVPs).
        ``primals`` is the tuple of positional arguments, ``tangents`` the same structure, with
        ``None`` for integer and key inputs; array keywords come as keywords (see ``_hand_rule``).
      init: ``init(key, ...) -> params`` for layers with parameters, else ``None``.
      kind: the short name of what the layer computes (``leaky_relu``, ``serial``): model paths
        (``serial[1].leaky_relu``) and error messages use it.
      details: what the display name adds to the kind: a bound layer's settings
        (``("negative_slope=0.1",)``), a model's children (``("linear", "tanh", "linear")``).
      roles: what each positional argument is, for models (``serial`` & co.): ``"params"``, ``"x"``
        (the data input; several ``"x"`` mean the model feeds a tuple, as lstm's ``(xs, state)``),
        ``"state"`` (non-differentiated state: the layer returns ``(y, new_state)``, as batch_norm)
        or ``"key"`` (a PRNG key the model splits per layer and per call, as dropout's).
      infer: ``infer(key, x, *sizes) -> (params, state)``: the layer's parameters (and state)
        for an input ``x`` (a ``jax.ShapeDtypeStruct``, or a tuple of them), so a model needs
        only the sizes that the input does not give (``None``: nothing to infer beyond ``init``).
      sizes: the sizes ``infer`` takes beyond the input, set with :meth:`sized`.

    Derived: ``name`` (the display name, ``leaky_relu(negative_slope=0.1)``), ``takes_params``
    (the first role is ``"params"``) and ``composed`` (False here; True for a :class:`jaxback.Model`,
    whose ``apply`` chains the children's hand rules and whose ``fwd``/``bwd`` are the explicit chain,
    two paths that checks compare).
    """

    apply: Callable[..., Any]
    auto: Callable[..., Any]
    fwd: Callable[..., Any]
    bwd: Callable[..., Any]
    jvp: Optional[Callable[..., Any]] = None
    init: Optional[Callable[..., Any]] = None
    kind: str
    details: tuple = ()
    roles: tuple = ("x",)
    infer: Optional[Callable[..., Any]] = None
    sizes: tuple = ()

    @property
    def name(self) -> str:
        """The display name: the kind, with the settings or children that ``details`` holds."""
        return f"{self.kind}({', '.join(self.details)})" if self.details else self.kind

    @property
    def takes_params(self) -> bool:
        """Whether the first positional argument is a parameter pytree."""
        return self.roles[0] == "params"

    @property
    def composed(self) -> bool:
        """Whether ``fwd``/``bwd`` are a path separate from ``apply`` (models only)."""
        return False

    def __call__(self, *args, **hyper):
        return self.apply(*args, **hyper)

    def __repr__(self) -> str:
        sizes = f" sized{self.sizes}" if self.sizes else ""
        return f"<jaxback Layer {self.name}{sizes}>"

    def sized(self, *sizes) -> "Layer":
        """This layer with the sizes a model cannot infer from its input, e.g.
        ``jb.linear.sized(10)`` (10 outputs; the input size comes from the data) or
        ``jb.conv2d.sized(16, 3)`` (16 channels, 3x3 kernel). See ``jaxback._model``."""
        if self.infer is None:
            raise TypeError(f"{self.name}: sized() needs a layer whose parameters a model can infer "
                            f"(it has no `infer`); got sizes {sizes!r}.")
        try:
            inspect.signature(self.infer).bind(None, None, *sizes)
        except TypeError as e:
            raise TypeError(f"{self.name}.sized{sizes!r}: {e}; the sizes are those of "
                            f"{self.name}.infer{inspect.signature(self.infer)} after (key, x).") from None
        return replace(self, sizes=sizes)


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Like:
    """The static shape and dtype of a primal: a residual with no array leaves (zero bytes), for
    rules that need only those (a reshape, a split, a zero cotangent)."""

    shape: tuple
    dtype: np.dtype

    @classmethod
    def of(cls, x) -> "Like":
        return cls(tuple(jax.numpy.shape(x)), jax.numpy.result_type(x))


def replace(layer: Layer, **changes) -> Layer:
    """``dataclasses.replace`` that keeps the layer's own ``__signature__`` and ``__doc__``."""
    new = dataclasses.replace(layer, **changes)
    for attribute in ("__signature__", "__doc__"):
        if attribute in vars(layer):
            object.__setattr__(new, attribute, vars(layer)[attribute])
    return new


def dtype_token(a) -> jax.Array:
    """A zero-size array of ``a``'s dtype, for residuals: ``bwd`` needs only the dtype of an input
    (a bias) to cast its cotangent, and residuals may only hold arrays. It holds 0 bytes."""
    return jax.numpy.zeros((0,), jax.numpy.result_type(a))


def infer_from_features(init):
    """An ``infer`` for layers whose only size is the input's last axis (norms, attention):
    ``(init(key, x.shape[-1], x.dtype), None)``."""
    def infer(key, x):
        return init(key, x.shape[-1], x.dtype), None

    infer.__doc__ = f"For a model: ``{init.__name__}(key, x.shape[-1], x.dtype)``; no state."
    return infer


def split_keywords(keywords: dict) -> tuple[dict, dict]:
    """``(hyperparameters, array keywords)``: arrays (and tracers) are traced, the rest static."""
    arrays = {k: v for k, v in keywords.items() if isinstance(v, (jax.Array, np.ndarray))}
    return {k: v for k, v in keywords.items() if k not in arrays}, arrays


def _hyper_key(name: str, hyper: dict) -> tuple:
    """A hashable key for a hyperparameter setting; refuses traced or unhashable values.

    The key holds each value's type too: ``0.0 == False`` and ``1 == True`` in Python, and one
    cached rule must not serve both (the second would skip its own validation).
    """
    key = tuple(sorted((k, type(v).__qualname__, v) for k, v in hyper.items()))
    try:
        hash(key)
    except TypeError:
        raise TypeError(
            f"{name}: hyperparameters must be hashable Python values (they are static under jit); "
            f"got {hyper!r}."
        ) from None
    return key


def keyword_names(fn, positional: int = 0) -> Optional[frozenset]:
    """The keyword arguments ``fn`` accepts beyond its first ``positional`` arguments (the arrays):
    its hyperparameters. ``None``: any, it takes ``**kwargs``."""
    parameters = list(inspect.signature(fn).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters[positional:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))


def check_keywords(name: str, allowed: Optional[frozenset], keywords) -> None:
    """A misspelt hyperparameter is a clear TypeError naming the layer, not a raw one from inside."""
    unknown = sorted(set(keywords) - allowed) if allowed is not None else []
    if unknown:
        raise TypeError(f"{name}: unknown keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"{name} accepts {', '.join(sorted(allowed)) or 'none'}.")


def saved_only(res):
    """``res`` with its traced floating-point arrays passed through ``lax.optimization_barrier``, so
    that ``bwd`` computes from what ``fwd`` saved.

    Without it, XLA's common-subexpression elimination in a jitted step may merge what ``bwd``
    recomputes (gelu's ``erf``, attention's scores) with the forward's own intermediates and keep
    those alive until the backward: memory the rule was written not to spend (a 2-block transformer
    LM step, batch 32, T=64, D=64: 40 MiB of compiled temp without the barrier, 28 with it).
    Integer residuals (PRNG keys, indices) and non-arrays pass unchanged: what is regenerated from
    a key is cheaper shared (pinning dropout's key doubled its jitted VJP's temp, 2 -> 4 MiB).
    So do concrete arrays: run op by op (no ``jit``), nothing is merged, and a barrier would only
    be one more op to dispatch.
    """
    leaves, tree = jax.tree_util.tree_flatten(res)
    where = [i for i, leaf in enumerate(leaves)
             if isinstance(leaf, jax.core.Tracer) and jnp.issubdtype(leaf.dtype, jnp.inexact)]
    pinned = jax.lax.optimization_barrier([leaves[i] for i in where])
    for i, leaf in zip(where, pinned):
        leaves[i] = leaf
    return jax.tree_util.tree_unflatten(tree, leaves)


def make_layer(auto, fwd, bwd, *, name: str, init=None, takes_params=None, roles=None, infer=None,
               jvp=None) -> Layer:
    """Build a :class:`Layer` from its forward and hand-derived rules.

    Args:
      auto: ``auto(*args, **hyper) -> y``, the forward maths with no custom rule.
      fwd: ``fwd(*args, **hyper) -> (y, res)``; ``y`` must equal ``auto(*args, **hyper)``.
      bwd: ``bwd(res, y_bar, **hyper) -> tuple`` of cotangents, one per positional argument,
        each with exactly its primal's shape and dtype (``None`` for integer arguments).
      name: short name used in errors and reports.
      init: ``init(key, ...) -> params`` for layers with parameters.
      takes_params: whether the first positional argument is a parameter pytree; defaults to
        ``roles[0] == "params"`` where ``roles`` is given, else ``init is not None``.
      roles, infer: for models, see :class:`Layer`; ``roles`` defaults to ``("params", "x")``
        or ``("x",)``.
      jvp: ``jvp(primals, tangents, **hyper) -> (y, y_dot)``, the hand forward-mode rule (see
        :class:`Layer`). Without it the layer is a plain ``custom_vjp``: reverse mode only.

    Returns:
      A Layer whose ``apply`` is ``auto`` with the hand rules: ``jax.custom_vjp(auto)`` with
      ``defvjp(fwd, bwd)``, or, given ``jvp``, one primitive carrying both (``_hand_rule``).
    """

    @functools.lru_cache(maxsize=None)
    def _rule_for(hyper_key: tuple, array_names: tuple):
        hyper, n_arrays = {k: v for k, _, v in hyper_key}, len(array_names)

        def split(all_args):  # array keywords ride at the end of the positional arguments
            cut = len(all_args) - n_arrays
            return all_args[:cut], dict(zip(array_names, all_args[cut:]))

        def rule_auto(*all_args):
            args, arrays = split(all_args)
            return auto(*args, **hyper, **arrays)

        def rule_fwd(*all_args):
            args, arrays = split(all_args)
            return fwd(*args, **hyper, **arrays)

        def rule_bwd(res, y_bar):
            return tuple(bwd(saved_only(res), y_bar, **hyper)) + (None,) * n_arrays

        if jvp is not None:
            def rule_jvp(all_primals, all_tangents):
                primals, arrays = split(all_primals)
                return jvp(primals, all_tangents[:len(primals)], **hyper, **arrays)

            return hand_rule(HandRules(rule_auto, rule_fwd, rule_bwd, rule_jvp))
        rule = jax.custom_vjp(rule_auto)
        rule.defvjp(rule_fwd, rule_bwd)
        return rule

    if takes_params is None:
        takes_params = roles[0] == "params" if roles else init is not None
    if roles is None:
        roles = ("params", "x") if takes_params else ("x",)
    if not set(roles) <= set(ROLES) or (roles[0] == "params") != takes_params or "x" not in roles:
        raise ValueError(f"make_layer({name}): roles must name each positional argument from {ROLES}, "
                         f"with 'params' first exactly when takes_params, and at least one 'x'; got {roles!r}.")
    allowed = keyword_names(auto, len(roles))

    @functools.wraps(auto)
    def apply(*args, **keywords):
        check_keywords(name, allowed, keywords)
        hyper, arrays = split_keywords(keywords)
        names = tuple(sorted(arrays))
        return _rule_for(_hyper_key(name, hyper), names)(*args, *(arrays[n] for n in names))

    layer = Layer(apply=apply, auto=auto, fwd=fwd, bwd=bwd, jvp=jvp, init=init, kind=name, roles=tuple(roles), infer=infer)
    # help(layer) and inspect.signature(layer) show the layer's own forward, not Layer's.
    signature = _signature_or_none(auto)
    if signature is not None:
        object.__setattr__(layer, "__signature__", signature)
    object.__setattr__(layer, "__doc__", _layer_doc(name, auto, init, signature, jvp is not None))
    return layer


def _signature_or_none(fn):
    """``inspect.signature(fn)``, or None for callables without one."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def _own_doc(fn) -> str:
    """``fn``'s docstring; for a ``functools.partial``, the wrapped function's (not partial's)."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.getdoc(fn) or ""


def _plain(signature) -> str:
    """``(x: jax.Array, axis: int = -1)``: string annotations (``from __future__ import
    annotations``) shown without their quotes."""
    if signature is None:
        return "(...)"
    return re.sub(r"(: |-> )'([^']*)'", r"\1\2", str(signature))


def _layer_doc(name: str, auto, init, signature, has_jvp: bool = False) -> str:
    """The docstring of a built Layer: signature, the module's summary, the forward's docstring."""
    module = inspect.getmodule(auto.func if isinstance(auto, functools.partial) else auto)
    summary = (inspect.getdoc(module) or "").split("\n", 1)[0] if module is not None else ""
    parts = [f"{name}{_plain(signature)}", summary, _own_doc(auto)]
    if init is not None:
        parts.append(f"Parameters: ``{name}.init{_plain(_signature_or_none(init))}``.")
    where = f" The derivation: ``help({module.__name__})``." if module is not None else ""
    parts.append(
        f"A jaxback Layer: calling it runs the hand-derived VJP; ``.auto`` is the same forward for\n"
        f"JAX autodiff; ``.fwd``/``.bwd`` are the two halves of the rule"
        f"{'; ``.jvp`` is the hand forward-mode rule (jax.jvp, jacfwd and linearize use it)' if has_jvp else ''}."
        f"{where}"
    )
    return "\n\n".join(p for p in parts if p)


def bind(layer: Layer, **keywords) -> Layer:
    """Fix some of ``layer``'s keyword arguments, e.g. ``bind(jb.leaky_relu, negative_slope=0.1)``.

    The result is a Layer like any other (so it can go into ``serial``) of the same ``kind``; its
    display ``name`` records the bound settings (``leaky_relu(negative_slope=0.1)``). Bound array keywords (a fixed mask) are constants of the new layer.
    """
    if layer.composed:
        raise TypeError(f"bind({layer.name}): a model takes key= and training= per call; bind its layers instead.")
    check_keywords(f"bind({layer.name})", keyword_names(layer.auto, len(layer.roles)), keywords)
    hyper, arrays = split_keywords(keywords)
    _hyper_key(layer.kind, hyper)  # fail early on unhashable values
    settings = tuple([f"{k}={v!r}" for k, v in sorted(hyper.items())] + sorted(arrays))
    bound = make_layer(
        functools.partial(layer.auto, **keywords),
        functools.partial(layer.fwd, **keywords),
        functools.partial(layer.bwd, **hyper),
        jvp=None if layer.jvp is None else functools.partial(layer.jvp, **keywords),
        name=layer.kind,
        init=layer.init,
        roles=layer.roles,
        infer=layer.infer,
    )
    return replace(bound, details=layer.details + settings, sizes=layer.sizes)
