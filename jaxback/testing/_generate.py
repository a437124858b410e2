"""The checks generated for a LayerInfo: one list, run by ``run_checks`` and by pytest alike.

``generated_checks(info)`` returns, for one registry entry:

* ``float64``: hand VJP vs autodiff (rtol 1e-10) and central finite differences, at sample inputs;
* ``hard_values``: the layer's hard value kinds (wide, ties, extreme, ...) vs autodiff;
* ``dtype[float32|bfloat16|float16]``: low precision vs autodiff and a float64 reference;
* ``sample[jit|vmap|grad_of_grad|checkpoint|scan|zero_cotangent|deterministic|symbolic_zeros]``;
* ``edge[<name>]``, ``error[<name>]``, ``mutant[<name>]``: every edge case, error case, mutant;
* ``jvp``: the hand forward-mode rule (``check_jvp``: vs autodiff's JVP, linearize, finite
  differences), skipped for a layer without one (``layer.jvp``; a model: any layer in it);
* ``true_rule_survives``: the mutant harness with the layer's own ``bwd`` and ``jvp`` passes (kills are real);
* ``injected_error``: a 1e-4 relative error in any one cotangent leaf is caught in float64.

A check that needs sample inputs draws them through a *chooser* (``choose(label, options)``,
``seed(label)``): pytest runs them under hypothesis (``strategies.DrawChooser``), ``run_checks``
with one seeded example (:class:`SeededChooser`). ``draws`` says how many examples a property-based
runner should try: ``"many"`` (the profile's ``max_examples``), ``"few"`` (a quarter: every new
shape compiles) or ``"none"`` (the check has fixed inputs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from .._layer import split_keywords
from .._model import layers_without_jvp
from ._check_jvp import check_jvp
from ._check_vjp import check_vjp
from ._checks import SAMPLE_CHECKS, check_edge_case, check_error_case, injected_error_is_caught, mutant_is_killed
from ._registry import LayerInfo, Mutant

__all__ = ["GeneratedCheck", "LayerCall", "SeededChooser", "draw_call", "generated_checks", "require_x64", "LOW_DTYPES",
           "forward_mode_gap"]

LOW_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


@dataclasses.dataclass(frozen=True)
class GeneratedCheck:
    """One generated check of one layer: ``run(chooser)`` raises AssertionError on failure."""

    info: LayerInfo
    name: str
    run: Callable[..., None]
    draws: str = "none"
    skip: Optional[str] = None

    @property
    def id(self) -> str:
        return f"{self.info.name}-{self.name}"


class SeededChooser:
    """Draws from a seeded numpy generator and records what it drew (for reports)."""

    def __init__(self, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.drawn = []

    def choose(self, label, options):
        value = options[int(self.rng.integers(len(options)))]
        self.drawn.append((label, value))
        return value

    def seed(self, label):
        value = int(self.rng.integers(2**32))
        self.drawn.append((label, value))
        return value


class LayerCall(NamedTuple):
    """One drawn call of a layer: ``info.layer(*call.args, **call.hyper)``. It prints as the
    choices that rebuild it (``info.sample_args(default_rng(seed), dtype, shape, kind)``), so a
    falsifying example reads ``LayerCall(shape=(2, 5), hyper={}, dtype=float64, kind='normal', seed=0)``."""

    args: tuple
    hyper: Mapping[str, Any]
    shape: tuple
    dtype: Any
    kind: str
    seed: int

    def __repr__(self) -> str:
        return (f"LayerCall(shape={self.shape}, hyper={dict(self.hyper)}, dtype={jnp.dtype(self.dtype).name}, "
                f"kind={self.kind!r}, seed={self.seed})")


def draw_call(chooser, info, dtype=jnp.float64, kinds=("normal",), shape=None, hyper=None) -> LayerCall:
    """One call of ``info.layer`` at a drawn shape, setting, value kind and seed (the ones given
    are kept)."""
    shape = chooser.choose("shape", info.shapes) if shape is None else shape
    hyper = chooser.choose("hyper", info.hypers) if hyper is None else hyper
    kind = chooser.choose("kind", kinds)
    seed = chooser.seed("seed")
    return LayerCall(info.sample_args(np.random.default_rng(seed), dtype, shape, kind), hyper, shape, dtype, kind, seed)


def _unsupported(info, what):
    return f"{info.name} does not support {what}: {info.notes}"


def _samples(info, seed=0):
    """Every (shape, setting) at one seed: mutants are judged on all of them."""
    return [(info.args(seed, shape=s), h) for s in info.shapes for h in info.hypers]


def _float64(info, chooser):
    call = draw_call(chooser, info)
    check_vjp(info.layer, *call.args, fd=info.finite_differences, **call.hyper)


def _hard_values(info, chooser):
    call = draw_call(chooser, info, kinds=info.value_kinds)
    check_vjp(info.layer, *call.args, fd=False, **call.hyper)  # kinks and infinities: no difference quotient


def _low_precision(dtype):
    def run(info, chooser):
        call = draw_call(chooser, info, dtype, ("normal", "ties"))
        check_vjp(info.layer, *call.args, fd=False, **call.hyper)
    return run


def _sample(check):
    fn = SAMPLE_CHECKS[check][0]

    def run(info, chooser):
        call = draw_call(chooser, info)
        if check in ("vmap", "scan"):  # two more examples of the same shape and hyperparameters
            more = [draw_call(chooser, info, shape=call.shape, hyper=call.hyper).args for _ in range(2)]
            fn(info, call.args, call.hyper, more)
        else:
            fn(info, call.args, call.hyper)
    return run


def _mutant(mutant):
    def run(info, chooser):
        assert mutant_is_killed(info, mutant, _samples(info)), f"{info.name}: mutant {mutant.name!r} survived"
    return run


def _true_rule_survives(info, chooser):
    assert not mutant_is_killed(info, Mutant("none", info.layer.bwd), _samples(info)), \
        f"{info.name}: check_vjp rejects the layer's own bwd at one of its samples, so mutant kills prove nothing"
    if info.layer.jvp is not None:
        assert not mutant_is_killed(info, Mutant("none", jvp=info.layer.jvp), _samples(info)), \
            f"{info.name}: check_jvp rejects the layer's own jvp at one of its samples, so mutant kills prove nothing"


def _jvp(info, chooser):
    call = draw_call(chooser, info)
    check_jvp(info.layer, *call.args, fd=info.finite_differences, **call.hyper)
    hard = draw_call(chooser, info, kinds=info.value_kinds, shape=call.shape, hyper=call.hyper)
    check_jvp(info.layer, *hard.args, fd=False, **hard.hyper)  # kinks and infinities: autodiff's convention


def forward_mode_gap(layer) -> Optional[str]:
    """Why ``layer`` has no forward mode (``None``: it has one): no hand JVP, or, for a model,
    the paths of its layers without one."""
    if layer.composed:
        missing = layers_without_jvp(layer.node, layer.kind)
        return f"no hand JVP in {', '.join(missing)}" if missing else None
    return None if layer.jvp is not None else "no hand JVP (make_layer(..., jvp=...))"


def _injected_error(info, chooser):
    shape = max(info.shapes, key=lambda s: np.prod(s))  # non-empty, the largest sample
    for hyper in info.hypers:
        args = info.args(0, shape=shape)
        y, res = info.layer.fwd(*args, **hyper)
        leaves = jax.tree_util.tree_leaves(info.layer.bwd(res, y, **split_keywords(hyper)[0]))
        for leaf in range(len(leaves)):
            if not np.any(np.asarray(leaves[leaf], np.float64)):
                continue  # an exact-zero cotangent (select's unselected element): 0 * (1 + 1e-4) is no error
            assert injected_error_is_caught(info, args, hyper, leaf), \
                f"{info.name}: a 1e-4 relative error in cotangent leaf {leaf} went unnoticed at {hyper}"


def require_x64(what: str) -> None:
    """Raise ``RuntimeError`` unless x64 is on (see the module docstring)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what}: the generated checks compare in float64, and jax_enable_x64 is off (JAX would silently "
            f"run them in float32, where correct layers fail): enable jax_enable_x64 first, with "
            f"jax.config.update('jax_enable_x64', True) at start-up (or JAX_ENABLE_X64=1), before creating arrays.")


def _bound(info, fn):
    def run(chooser=None):
        require_x64(f"{info.name}")
        return fn(info, chooser)
    return run


def generated_checks(info: LayerInfo) -> list:
    """Every check generated for ``info`` (see the module docstring), unsupported ones marked ``skip``."""
    dtypes = {jnp.dtype(d) for d in info.dtypes}
    checks = [GeneratedCheck(info, "float64", _bound(info, _float64), "many"),
              GeneratedCheck(info, "hard_values", _bound(info, _hard_values), "many")]
    checks += [GeneratedCheck(info, f"dtype[{jnp.dtype(d).name}]", _bound(info, _low_precision(d)), "few",
                              None if jnp.dtype(d) in dtypes else _unsupported(info, jnp.dtype(d).name))
               for d in LOW_DTYPES]
    checks += [GeneratedCheck(info, f"sample[{name}]", _bound(info, _sample(name)), "few",
                              None if flag is None or flag in info.supports else _unsupported(info, flag))
               for name, (_, flag) in SAMPLE_CHECKS.items()]
    gap = forward_mode_gap(info.layer)
    checks.append(GeneratedCheck(info, "jvp", _bound(info, _jvp), "few", None if gap is None else f"{info.name}: {gap}"))
    checks += [GeneratedCheck(info, f"edge[{c.name}]", _bound(info, lambda i, _, c=c: check_edge_case(i, c)))
               for c in info.edge_cases]
    checks += [GeneratedCheck(info, f"error[{c.name}]", _bound(info, lambda i, _, c=c: check_error_case(i, c)))
               for c in info.error_cases]
    checks += [GeneratedCheck(info, f"mutant[{m.name}]", _bound(info, _mutant(m)),
                              None if m.bwd is not None or gap is None else f"{info.name}: {gap}") for m in info.mutants]
    checks += [GeneratedCheck(info, "true_rule_survives", _bound(info, _true_rule_survives)),
               GeneratedCheck(info, "injected_error", _bound(info, _injected_error))]
    return checks
