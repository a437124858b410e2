"""Elementwise activations: relu, leaky_relu, sigmoid, tanh, gelu, softplus, silu.

Shapes first: ``x`` has any shape, ``y = f(x)`` has the same shape, and ``y[i]`` depends on ``x[i]``
alone. So the chain rule has a single term per entry and the Jacobian is diagonal:

  Forward   x: (...)           y = f(x)                        y: (...)
  Backward  y_bar = dL/dy: (...)
            x_bar = y_bar * f'(x)                              (...), elementwise
  Tangent   x_dot: (...)  (forward mode: x moves along x_dot)
            y_dot = f'(x) * x_dot                              (...), elementwise

Only ``f'`` differs between layers. Where ``f'`` is a function of the output we save ``y`` instead of
``x`` (same size, and it spares recomputing ``f``). One entry per layer, written as Python so that
``tests/test_derivations_sympy.py`` can read it: sympy differentiates ``y`` and proves every form
after ``f' =`` equal to it, and each form, evaluated with JAX, must match the hand ``bwd``:

  relu        y = x if x > 0 else 0           f' = 0 if y <= 0 else 1
  leaky_relu  y = x if x >= 0 else s * x      f' = 1 if x >= 0 else s
              where s = negative_slope
  sigmoid     y = 1 / (1 + exp(-x))           f' = y * (1 - y)
  tanh        y = tanh(x)                     f' = 1 - y**2 = (1 - y) * (1 + y)
  softplus    y = log(1 + exp(x))             f' = sigmoid(x) = 1 - exp(-y) = -expm1(-y)
  silu        y = x * s                       f' = s + x * s * (1 - s)
              where s = sigmoid(x)
  gelu        y = x * Phi(x)                  f' = Phi(x) + x * phi(x)
              where Phi(x) = (1 + erf(x / sqrt(2))) / 2, phi(x) = exp(-x**2 / 2) / sqrt(2 * pi)
  gelu (approximate=True)
              y = x / 2 * (1 + t)             f' = (1 + t) / 2 + x / 2 * (1 - t**2) * du
              where c = sqrt(2 / pi), a = 0.044715, u = c * (x + a * x**3), t = tanh(u),
                    du = c * (1 + 3 * a * x**2)

Phi is the standard normal CDF and phi its density. Why softplus' rule uses y: exp(y) = 1 + exp(x),
so exp(-y) = 1/(1 + exp(x)) = 1 - sigmoid(x).

NOTE (kinks): relu'(0) = 0 and leaky_relu'(0) = 1, the convention of ``jax.nn``; ``auto`` is written
with the same ``where`` so autodiff picks the same subgradient.
NOTE (stability): sigmoid uses ``lax.logistic`` and softplus ``max(x, 0) + log1p(exp(-|x|))``
(never exp of a positive number), so
saturated inputs give exact 0/1 slopes, never inf/inf. gelu and silu at +-inf would compute
``inf * 0 = nan`` (as ``jax.nn.gelu`` does); we return their limits instead: y = relu(x) and
f' = 1 at +inf, 0 at -inf. ``auto`` uses the same guard (a "double where", so autodiff does not
see the nan branch either). gelu's guard zeroes x only where |x| > 40, where every term it drops
underflows to exactly 0 even in float64, so finite inputs get the unguarded formula's value.
NaN inputs give NaN outputs.
NOTE (gelu's Phi): Phi(x) = (1 + erf(x / sqrt(2))) / 2, the form of PyTorch's gelu. The equal
erfc(-x / sqrt(2)) / 2 (jax.nn.gelu's) keeps Phi's relative accuracy in the far negative tail, where
1 + erf cancels. The absolute error stays small: over x in [-10, 3] gelu's is at most 8e-7 in
float32 (at x = -5.2, where gelu itself is -4.3e-7; erfc's form: 2e-7, at x = 3) and 4.4e-16 in
float64 (either form), against scipy in float64. We take erf because XLA CPU splits erfc's expansion into
four full-size loops wherever its input feeds a matmul: linear-gelu-linear's training step took
1.7-1.8x as long with erfc as with erf, and relu in gelu's place 0.94-0.98x (`python benchmarks/kernels.py`).
"""

from __future__ import annotations

import functools
import inspect
import math

import jax.numpy as jnp
from jax import lax

from ._functions import softplus as _softplus
from ._layer import make_layer
from ._validate import require_bool, require_float, require_real

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

    def jvp(primals, tangents, **hyper):
        (x,), (x_dot,) = primals, tangents
        y, res = fwd(x, **hyper)
        return y, (derivative(res, **hyper) * x_dot).astype(y.dtype)

    auto.__name__ = auto.__qualname__ = name
    auto.__doc__ = forward.__doc__
    auto.__signature__ = inspect.signature(forward)  # (x, negative_slope=0.01), not (x, **hyper)
    return make_layer(auto, fwd, bwd, name=name, jvp=jvp)


def _relu_limit_at_inf(f):
    """Evaluate ``f`` away from +-inf and use relu's limit there (see NOTE on stability)."""

    @functools.wraps(f)  # the docstring and signature of f
    def guarded(x, **hyper):
        at_inf = jnp.isinf(x)
        x_safe = jnp.where(at_inf, jnp.zeros_like(x), x)  # keeps nan out of both branches
        return jnp.where(at_inf, jnp.where(x > 0, x, jnp.zeros_like(x)), f(x_safe, **hyper))

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
    require_real("leaky_relu", "negative_slope", negative_slope)


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
    return 0.5 * (1 + lax.erf(x / math.sqrt(2)))  # NOTE (gelu's Phi)


def _normal_pdf(x):
    return jnp.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _check_approximate(approximate=False):
    require_bool("gelu", "approximate", approximate)


# Beyond |x| > _GELU_TAIL every term gelu drops is exactly 0 even in float64: Phi(-40) ~ 4e-350 and
# phi(40) ~ 1e-348 underflow (the smallest float64 is 5e-324), and 1 +- tanh(u) rounds to 0 for
# |u| > 19. So zeroing x there changes no finite result, and it keeps inf * 0 out of the forward,
# the slope and autodiff's rule of ``auto``.
_GELU_TAIL = 40.0


def _inside_tail(x):
    """``x`` where ``|x| <= _GELU_TAIL``, else 0 (nan stays nan)."""
    return jnp.where(jnp.abs(x) > _GELU_TAIL, jnp.zeros_like(x), x)


def _gelu(x, approximate=False):
    """``gelu(x) = x * Phi(x)``; with ``approximate=True`` the tanh form
    ``x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x**3)))``. relu's limits at +-inf."""
    x_in = _inside_tail(x)
    if approximate:
        t = jnp.tanh(_SQRT_2_OVER_PI * (x_in + _TANH_CUBIC * x_in**3))
        inner = 0.5 * x_in * (1 + t)
    else:
        # Phi reads x itself: erf is finite at +-inf, and one select in front of it (rather than
        # a guarded copy of x feeding it) lets XLA fuse the whole forward into one loop.
        inner = x_in * _normal_cdf(x)
    return jnp.where(x > _GELU_TAIL, x, inner)  # Phi(x) = 1 and 1 + t = 2 exactly there


def _gelu_slope(x, approximate=False):
    x_in = _inside_tail(x)
    if approximate:
        t = jnp.tanh(_SQRT_2_OVER_PI * (x_in + _TANH_CUBIC * x_in**3))
        du_dx = _SQRT_2_OVER_PI * (1 + 3 * _TANH_CUBIC * x_in * x_in)
        slope = 0.5 * (1 + t) + 0.5 * x_in * (1 - t * t) * du_dx
        return jnp.where(x > _GELU_TAIL, jnp.ones_like(x), jnp.where(x < -_GELU_TAIL, jnp.zeros_like(x), slope))
    return _normal_cdf(x) + x_in * _normal_pdf(x)


gelu = _elementwise("gelu", _gelu, _gelu_slope, saves="x", check_hyper=_check_approximate)
