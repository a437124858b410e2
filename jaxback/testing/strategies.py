"""Hypothesis strategies for layer inputs, for jaxback's generated tests and for your own ``@given``.

Every new input shape costs a jit compile (0.5-0.8 s), so shapes come from a small fixed set and the
randomness lives in the values: a seed and a *kind* of values.

Value kinds (``values(rng, shape, kind)``, plain numpy: no hypothesis needed):

* ``"normal"``  standard normal: smooth points, where finite differences are meaningful;
* ``"wide"``    normal x 10: saturates sigmoid/tanh, large logits;
* ``"ties"``    integers in [-2, 2]: exact zeros (the kinks of relu & co.) and repeated values (ties
  in max and softmax);
* ``"extreme"`` normal with about a quarter of entries replaced by +-40, +-1e4 or 0;
* ``"inf"``     ``"extreme"`` plus +-inf entries (for activations, whose limits are documented).

Strategies (need hypothesis: ``pip install 'jaxback[test]'``; without it they raise ImportError):

* ``shapes(batch=(1, 8), trailing=(3,))``: ``(n, *trailing)``, shrinking to the smallest batch, or
  one of ``choices``;
* ``params(layer, *init_args)``: parameter records from ``layer.init`` at a drawn key;
* ``layer_calls(info)``: whole calls (``LayerCall``: args, hyper, shape, dtype, kind, seed) of a
  LayerInfo's layer;
* ``seeds()``, ``arrays(shape, dtype, kinds)``, ``cotangents(shape, dtype)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._generate import LayerCall, draw_call

__all__ = ["BATCH_SHAPES", "VALUE_KINDS", "values", "require_hypothesis", "seeds", "arrays", "cotangents",
           "shapes", "params", "layer_calls", "LayerCall", "DrawChooser"]

BATCH_SHAPES = ((1,), (4,), (2, 3))  # batch of 1, a batch, two batch dimensions
VALUE_KINDS = ("normal", "wide", "ties", "extreme", "inf")
_EXTREMES = np.array([40.0, -40.0, 1e4, -1e4, 0.0])


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


def require_hypothesis():
    """The ``hypothesis`` module, or an ImportError that says which extra installs it."""
    try:
        import hypothesis
        import hypothesis.strategies  # noqa: F401
    except ImportError as err:
        raise ImportError("jaxback.testing.strategies needs hypothesis, which comes with the test extra: "
                          "pip install 'jaxback[test]'") from err
    return hypothesis


def _st():
    return require_hypothesis().strategies


def seeds():
    """Seeds for ``numpy.random.default_rng`` (shrink to 0)."""
    return _st().integers(min_value=0, max_value=2**32 - 1)


def arrays(shape, dtype=jnp.float64, kinds=("normal",)):
    """Strategy for JAX arrays of a fixed ``shape`` and ``dtype`` with values of the given kinds."""
    st = _st()
    return st.tuples(seeds(), st.sampled_from(kinds)).map(
        lambda seed_kind: jnp.asarray(values(np.random.default_rng(seed_kind[0]), shape, seed_kind[1]), dtype)
    )


def cotangents(shape, dtype=jnp.float64):
    """Strategy for random standard-normal cotangents of ``shape``."""
    return arrays(shape, dtype, kinds=("normal",))


def shapes(*, batch=(1, 8), trailing=(3,), choices=None):
    """Input shapes ``(n, *trailing)`` with ``batch[0] <= n <= batch[1]``; failing examples shrink
    to the smallest ``n``. With ``choices``, one of those shapes (shrinking to the first): a small
    fixed set compiles once per shape."""
    st = _st()
    if choices is not None:
        return st.sampled_from(tuple(choices))
    return st.integers(batch[0], batch[1]).map(lambda n: (n, *trailing))


def params(layer, *init_args, **init_kwargs):
    """Parameter records ``layer.init(key, *init_args, **init_kwargs)`` at a drawn key; an init
    argument that is itself a strategy (a feature size, say) is drawn too."""
    st = _st()
    if layer.init is None:
        raise TypeError(f"strategies.params({layer.name}): the layer has no init (no parameters)")
    is_strategy = lambda a: isinstance(a, st.SearchStrategy)

    @st.composite
    def draw_params(draw):
        drawn = [draw(a) if is_strategy(a) else a for a in init_args]
        kwargs = {k: draw(v) if is_strategy(v) else v for k, v in init_kwargs.items()}
        return layer.init(jax.random.PRNGKey(draw(seeds())), *drawn, **kwargs)

    return draw_params()


class DrawChooser:
    """A chooser (see ``jaxback.testing._generate``) that draws through hypothesis:
    ``draw(strategy, label)`` is ``st.data()``'s ``data.draw`` or a composite's ``draw``. Failing
    examples shrink to the first shape, setting and kind, and the smallest seed."""

    def __init__(self, draw, labelled: bool = True):
        self.draw = draw if labelled else (lambda strategy, label: draw(strategy))

    def choose(self, label, options):
        return self.draw(_st().sampled_from(tuple(options)), label)

    def seed(self, label):
        return self.draw(seeds(), label)


def layer_calls(info, dtype=jnp.float64, kinds=("normal",), shapes=None):
    """Whole calls of ``info.layer``: a shape from ``info.shapes`` (or the strategy ``shapes``), a
    setting from ``info.hypers``, a value kind and a seed, built by ``info.sample_args``."""
    st = _st()

    @st.composite
    def draw_layer_call(draw):
        shape = None if shapes is None else draw(shapes)
        return draw_call(DrawChooser(draw, labelled=False), info, dtype, kinds, shape=shape)

    return draw_layer_call()
