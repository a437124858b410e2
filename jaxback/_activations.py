"""Elementwise activations: relu, leaky_relu, sigmoid, tanh, gelu, softplus, silu.

Shapes first: ``x`` has any shape, ``y = f(x)`` has the same shape, and ``y[i]`` depends on ``x[i]``
alone. So the chain rule has a single term per entry and the Jacobian is diagonal:

  Forward   x: (...)           y = f(x)                        y: (...)
  Backward  y_bar = dL/dy: (...)
            x_bar = y_bar * f'(x)                              (...), elementwise

Only ``f'`` differs between layers. Where ``f'`` is a function of the output we save ``y`` instead of
``x`` (same size, and it spares recomputing ``f``):

  relu        y = x if x > 0 else 0           f' = 0 if y <= 0 else 1
  leaky_relu  y = x if x >= 0 else s*x        f' = 1 if x >= 0 else s        (s = negative_slope)
  sigmoid     y = 1 / (1 + exp(-x))           f' = y * (1 - y)
  tanh        y = tanh(x)                     f' = 1 - y**2 = (1 - y) * (1 + y)
  softplus    y = log(1 + exp(x))             f' = sigmoid(x) = 1 - exp(-y) = -expm1(-y)
  silu        y = x * sigmoid(x)              f' = s + x * s * (1 - s),  s = sigmoid(x)
  gelu        y = x * Phi(x)                  f' = Phi(x) + x * phi(x)
              Phi(x) = erfc(-x / sqrt 2) / 2 is the standard normal CDF, phi(x) = exp(-x**2/2)/sqrt(2 pi)
  gelu (approximate=True)
              y = x/2 * (1 + t),  t = tanh(u),  u = c * (x + a x**3),  c = sqrt(2/pi), a = 0.044715
              f' = (1 + t)/2 + x/2 * (1 - t**2) * c * (1 + 3 a x**2)

Why softplus' rule uses y: exp(y) = 1 + exp(x), so exp(-y) = 1/(1 + exp(x)) = 1 - sigmoid(x).

NOTE (kinks): relu'(0) = 0 and leaky_relu'(0) = 1, the convention of ``jax.nn``; ``auto`` is written
with the same ``where`` so autodiff picks the same subgradient.
NOTE (stability): sigmoid uses ``lax.logistic`` and softplus ``max(x, 0) + log1p(exp(-|x|))``
(never exp of a positive number), so
saturated inputs give exact 0/1 slopes, never inf/inf. gelu and silu at +-inf would compute
``inf * 0 = nan`` (as ``jax.nn.gelu`` does); we return their limits instead: y = relu(x) and
f' = 1 at +inf, 0 at -inf. ``auto`` uses the same guard (a "double where", so autodiff does not
see the nan branch either). NaN inputs give NaN outputs.
"""

from __future__ import annotations

import inspect
import math
from numbers import Real

import jax.numpy as jnp
from jax import lax

from ._layer import make_layer
from ._validate import require_float

__all__ = ["relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softplus", "silu"]


def _elementwise(name, forward, derivative, *, saves, check_hyper=None):
    """A Layer for ``y = forward(x)`` with rule ``x_bar = y_bar * derivative(res)``.

    ``saves`` is ``"y"`` or ``"x"``: the residual that ``derivative`` takes.
    """

    def auto(x, **hyper):
        require_float(name, "x", x)
        if check_hyper:
            check_hyper(**hyper)
        return forward(x, **hyper)

    def fwd(x, **hyper):
        y = auto(x, **hyper)
        return y, (y if saves == "y" else x)

    def bwd(res, y_bar, **hyper):
        return ((y_bar * derivative(res, **hyper)).astype(res.dtype),)

    auto.__name__ = auto.__qualname__ = name
    auto.__doc__ = forward.__doc__
    # the signature says which hyperparameters exist, so a misspelt one is refused by name
    hyper_params = list(inspect.signature(check_hyper).parameters.values()) if check_hyper else []
    auto.__signature__ = inspect.Signature(
        [inspect.Parameter("x", inspect.Parameter.POSITIONAL_ONLY)]
        + [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in hyper_params])
    return make_layer(auto, fwd, bwd, name=name)


def _relu_limit_at_inf(f):
    """Evaluate ``f`` away from +-inf and use relu's limit there (see NOTE on stability)."""

    def guarded(x, **hyper):
        at_inf = jnp.isinf(x)
        x_safe = jnp.where(at_inf, jnp.zeros_like(x), x)  # keeps nan out of both branches
        return jnp.where(at_inf, jnp.where(x > 0, x, jnp.zeros_like(x)), f(x_safe, **hyper))

    guarded.__doc__ = f.__doc__
    return guarded


def _slope_at_inf(df):
    """``df`` away from +-inf; the slope of relu (1 at +inf, 0 at -inf) there."""

    def guarded(x, **hyper):
        at_inf = jnp.isinf(x)
        x_safe = jnp.where(at_inf, jnp.zeros_like(x), x)
        return jnp.where(at_inf, (x > 0).astype(x.dtype), df(x_safe, **hyper))

    return guarded


# relu ---------------------------------------------------------------------------------------------
def _relu(x):
    """``relu(x) = max(x, 0)``. NOTE: relu'(0) = 0 (jax.nn's convention)."""
    return jnp.where(x <= 0, jnp.zeros_like(x), x)


relu = _elementwise("relu", _relu, lambda y: jnp.where(y <= 0, 0.0, 1.0), saves="y")


# leaky_relu ---------------------------------------------------------------------------------------
def _leaky_relu(x, negative_slope=0.01):
    """``leaky_relu(x) = x if x >= 0 else negative_slope * x``. NOTE: slope at 0 is 1 (jax.nn)."""
    return jnp.where(x >= 0, x, negative_slope * x)


def _check_slope(negative_slope=0.01):
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, Real):
        raise TypeError(
            f"leaky_relu: negative_slope must be a Python real number (static under jit); "
            f"got {negative_slope!r} of type {type(negative_slope).__name__}."
        )


leaky_relu = _elementwise(
    "leaky_relu",
    _leaky_relu,
    lambda x, negative_slope=0.01: jnp.where(x >= 0, 1.0, negative_slope),
    saves="x",
    check_hyper=_check_slope,
)


# sigmoid, tanh ------------------------------------------------------------------------------------
def _sigmoid(x):
    """``sigmoid(x) = 1 / (1 + exp(-x))``, computed without overflow (``lax.logistic``)."""
    return lax.logistic(x)


sigmoid = _elementwise("sigmoid", _sigmoid, lambda y: y * (1 - y), saves="y")


def _tanh(x):
    """``tanh(x)``."""
    return jnp.tanh(x)


# NOTE: (1 - y) * (1 + y), not 1 - y * y: for saturated y ~ 1, 1 - y is exact and y * y would
# round away the tiny slope (same form as JAX's own tanh rule).
tanh = _elementwise("tanh", _tanh, lambda y: (1 - y) * (1 + y), saves="y")


# softplus -----------------------------------------------------------------------------------------
def _softplus(x):
    """``softplus(x) = log(1 + exp(x))``, as ``max(x, 0) + log1p(exp(-|x|))`` (no overflow).

    NOTE: both kinks (max and |x|) are written with the same ``x >= 0`` branch, so autodiff of this
    smooth function gets sigmoid(0) = 1/2 at 0; ``jnp.maximum`` and ``jnp.abs`` would give 0 there.
    """
    nonneg = x >= 0
    return jnp.where(nonneg, x, jnp.zeros_like(x)) + jnp.log1p(jnp.exp(jnp.where(nonneg, -x, x)))


softplus = _elementwise("softplus", _softplus, lambda y: -jnp.expm1(-y), saves="y")


# silu ---------------------------------------------------------------------------------------------
@_relu_limit_at_inf
def _silu(x):
    """``silu(x) = x * sigmoid(x)`` (a.k.a. swish); relu's limits at +-inf."""
    return x * lax.logistic(x)


@_slope_at_inf
def _silu_slope(x):
    s = lax.logistic(x)
    return s + x * s * (1 - s)


silu = _elementwise("silu", _silu, _silu_slope, saves="x")


# gelu ---------------------------------------------------------------------------------------------
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_TANH_CUBIC = 0.044715


def _normal_cdf(x):
    return 0.5 * lax.erfc(-x / math.sqrt(2))  # erfc: no cancellation for very negative x


def _normal_pdf(x):
    return jnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _check_approximate(approximate=False):
    if not isinstance(approximate, bool):
        raise TypeError(f"gelu: approximate must be True or False; got {approximate!r}.")


@_relu_limit_at_inf
def _gelu(x, approximate=False):
    """``gelu(x) = x * Phi(x)``; with ``approximate=True`` the tanh form
    ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3)))``. relu's limits at +-inf."""
    if approximate:
        t = jnp.tanh(_SQRT_2_OVER_PI * (x + _TANH_CUBIC * x**3))
        return 0.5 * x * (1 + t)
    return x * _normal_cdf(x)


@_slope_at_inf
def _gelu_slope(x, approximate=False):
    if approximate:
        t = jnp.tanh(_SQRT_2_OVER_PI * (x + _TANH_CUBIC * x**3))
        du_dx = _SQRT_2_OVER_PI * (1 + 3 * _TANH_CUBIC * x * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du_dx
    return _normal_cdf(x) + x * _normal_pdf(x)


gelu = _elementwise("gelu", _gelu, _gelu_slope, saves="x", check_hyper=_check_approximate)
