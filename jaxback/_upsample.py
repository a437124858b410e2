"""upsample: enlarge NHWC images by an integer scale, nearest-neighbour or bilinear.

Shapes first. ``x``: (N, H, W, C), ``scale`` (sh, sw) positive ints, ``y``: (N, sh H, sw W, C).
Channels and examples never mix, and each spatial axis is resized on its own, so the layer is
separable: y = A_h x A_w^T per (n, c), with an interpolation matrix A: (s H, H) per axis.

nearest.  Forward   y[n, i, j, c] = x[n, i // sh, j // sw, c]
  Every x entry is copied into an sh x sw block of y, and dy[i, j]/dx[h, w] = 1 exactly when
  (i // sh, j // sw) = (h, w), so the chain rule x_bar[h, w] = sum_{i, j} y_bar[i, j] dy[i, j]/dx[h, w]
  sums each block:

  Backward  x_bar = y_bar.reshape(N, H, sh, W, sw, C).sum((2, 4))                  (N, H, W, C)

bilinear (half-pixel centres, PyTorch's ``align_corners=False``).  Output row i samples the input
at ``src = max((i + 0.5) / s - 0.5, 0)``, between rows ``i0 = floor(src)`` and
``i1 = min(i0 + 1, H - 1)`` with weight ``lam = src - i0``:
    A[i, i0] += 1 - lam,   A[i, i1] += lam          (rows of A sum to 1; A is static: shapes only)

  Forward   y[n, i, j, c] = sum_{h, w} A_h[i, h] x[n, h, w, c] A_w[j, w]
  y is linear in x with dy[i, j]/dx[h, w] = A_h[i, h] A_w[j, w], so the chain rule gives the
  transposed contraction:

  Backward  x_bar[n, h, w, c] = sum_{i, j} A_h[i, h] y_bar[n, i, j, c] A_w[j, w]   (N, H, W, C)

Forward mode. Both methods are linear maps of x (copies, or fixed weighted sums), so moving x along
a tangent x_dot moves y along the same map of x_dot:

  Tangent   x_dot: (N, H, W, C)
            y_dot = upsample(x_dot)          nearest: x_dot[n, i // sh, j // sw, c]; bilinear: A_h x_dot A_w^T

NOTE: the bilinear edge clamps (src < 0 -> 0, i1 <= H - 1) replicate the border, as PyTorch and
OpenCV do; the contractions run at HIGHEST precision (no TF32/bf16 passes on GPU/TPU). Nearest
copies, so bfloat16/float16 are exact; bilinear rounds the weighted sums in x's dtype.
Residuals: none but x's static shape and dtype (a ``Like`` record, zero bytes): both rules read no
entry of x.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ._layer import Like, make_layer
from ._validate import require_float, require_rank
from ._windows import pair

__all__ = ["upsample"]

NAME = "upsample"
METHODS = ("nearest", "bilinear")


def _check(x, scale, method):
    require_float(NAME, "x", x)
    require_rank(NAME, "x", x, 4, hint="Expected NHWC: (N, H, W, C).")
    if method not in METHODS:
        raise ValueError(f'{NAME}: method must be "nearest" or "bilinear"; got method={method!r}.')
    return pair(NAME, "scale", scale)


def interpolation_matrix(size: int, s: int) -> np.ndarray:
    """A: (s size, size), bilinear with half-pixel centres and clamped edges (see the docstring)."""
    src = np.maximum((np.arange(s * size) + 0.5) / s - 0.5, 0.0)
    i0 = np.floor(src).astype(int)
    i1, lam = np.minimum(i0 + 1, size - 1), src - i0
    a = np.zeros((s * size, size))
    np.add.at(a, (np.arange(s * size), i0), 1 - lam)
    np.add.at(a, (np.arange(s * size), i1), lam)
    return a


def _bilinear(x, a_h, a_w):
    """``sum_{h, w} a_h[i, h] x[n, h, w, c] a_w[j, w]``: y from x, or x_bar from y_bar with A^T."""
    a_h, a_w = jnp.asarray(a_h, x.dtype), jnp.asarray(a_w, x.dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", a_h, x, a_w, precision=lax.Precision.HIGHEST)


def upsample_auto(x: jax.Array, *, scale: int | tuple[int, int] = 2, method: str = "nearest") -> jax.Array:
    """x: (N, H, W, C) -> y: (N, sh H, sw W, C), nearest-neighbour copies or bilinear interpolation."""
    (sh, sw) = _check(x, scale, method)
    if method == "nearest":
        return jnp.repeat(jnp.repeat(x, sh, axis=1), sw, axis=2)
    return _bilinear(x, interpolation_matrix(x.shape[1], sh), interpolation_matrix(x.shape[2], sw))


def upsample_fwd(x, *, scale=2, method="nearest"):
    return upsample_auto(x, scale=scale, method=method), Like.of(x)


def upsample_bwd(res, y_bar, *, scale=2, method="nearest"):
    like = res
    (sh, sw), (n, h, w, c) = pair(NAME, "scale", scale), like.shape
    if method == "nearest":
        x_bar = y_bar.reshape(n, h, sh, w, sw, c).sum((2, 4))  # each sh x sw block of y came from one x
    else:
        x_bar = _bilinear(y_bar, interpolation_matrix(h, sh).T, interpolation_matrix(w, sw).T)
    return (x_bar.astype(like.dtype),)


def upsample_jvp(primals, tangents, *, scale=2, method="nearest"):
    (x,), (x_dot,) = primals, tangents
    y = upsample_auto(x, scale=scale, method=method)
    return y, upsample_auto(x_dot, scale=scale, method=method)  # linear: the layer applied to x_dot


upsample = make_layer(upsample_auto, upsample_fwd, upsample_bwd, name=NAME, jvp=upsample_jvp)
