"""Convolution maths shared by conv2d, conv1d and conv_transpose2d, for any number of spatial axes.

The derivation is conv2d's (``jaxback._conv``): per spatial axis, with stride s, dilation d,
padding (lo, hi), kernel span ``e = (k - 1) d + 1`` and leftover rows
``r = (size + lo + hi - e) % s``, the input gradient of ``y = conv(x, w)`` is a stride-1
correlation of the s-spread y_bar with the flipped, channel-swapped kernel, padded
``(e - 1 - lo, e - 1 - hi + r)``; the weight gradient a correlation of x with y_bar that contracts
the batch (x as features=N, y_bar as in=N), padded ``(lo, hi - r)``, taps s apart, outputs d apart.
Layouts: "NWC"/"WIO" (1 axis), "NHWC"/"HWIO" (2 axes).
Forward mode: each layer is ``y = product(x, w) + b`` with ``product`` bilinear (conv2d's and
conv1d's ``conv``, conv_transpose2d's ``input_grad``), so its tangent is the product rule,
``product(x_dot, w) + product(x, w_dot) + b_dot`` (``affine_jvp``): convolutions of the forward's
own geometry, no new index maths.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._sharding import cotangent_sharding
from ._validate import describe, require_float, require_rank
from ._windows import leftover

__all__ = ["dimension_numbers", "spans", "require_inputs", "require_fits", "grad_pads", "conv", "input_grad", "weight_grad",
           "affine", "affine_jvp", "compiled"]


def dimension_numbers(n: int) -> tuple:
    """``(dims, w_bar_dims)`` for ``n`` spatial axes: the forward's and the weight gradient's."""
    sp = "DHW"[3 - n:]
    return ("N" + sp + "C", sp + "IO", "N" + sp + "C"), ("C" + sp + "N", "I" + sp + "O", sp + "NC")


def spans(kernel: tuple, d: tuple) -> tuple:
    """The dilated kernel's extent per axis, ``(k - 1) d + 1``."""
    return tuple((k - 1) * di + 1 for k, di in zip(kernel, d))


def require_inputs(name: str, params, x, n: int) -> None:
    """Floating x: (N, spatial..., C) and params ``(w: (k..., C, F), b: (F,))`` of matching sizes,
    for ``n`` spatial axes (C: x's channels, F: the kernel's other channel axis, y's channels)."""
    for arg, a in (("x", x), ("params.w", params.w), ("params.b", params.b)):
        require_float(name, arg, a)
    x_layout, w_layout = dimension_numbers(n)[0][:2]
    require_rank(name, "x", x, n + 2, hint=f"Expected {x_layout}: (N, {', '.join(x_layout[1:-1])}, C_in).")
    require_rank(name, "params.w", params.w, n + 2, hint=f"Expected {w_layout}: (k..., C_in, C_out).")
    if x.shape[-1] != params.w.shape[n]:
        raise ValueError(f"{name}: x.shape[-1] must equal w.shape[{n}] (input channels); got x {describe(x)}, "
                         f"w {describe(params.w)}. Is x {x_layout} and w {w_layout}?")
    if params.b.shape != (params.w.shape[n + 1],):
        raise ValueError(f"{name}: b must have shape (w.shape[{n + 1}],) = ({params.w.shape[n + 1]},); "
                         f"got b {describe(params.b)}.")


def require_fits(name: str, x, sizes: tuple, pads: tuple, span: tuple) -> None:
    """Every padded spatial axis holds the dilated kernel (else there is no output row)."""
    if any(h + lo + hi < e for h, (lo, hi), e in zip(sizes, pads, span)):
        raise ValueError(f"{name}: the dilated kernel spans {'x'.join(map(str, span))}, more than the padded "
                         f"input (x {describe(x)}, padding={pads}); use a smaller kernel or dilation, or more padding.")


def grad_pads(sizes: tuple, kernel: tuple, d: tuple, s: tuple, pads: tuple) -> tuple:
    """Per axis, the paddings of the x_bar and w_bar convolutions (see the module docstring)."""
    x_pads, w_pads = [], []
    for h, e, si, (lo, hi) in zip(sizes, spans(kernel, d), s, pads):
        r = leftover(h, (lo, hi), e, si)
        x_pads.append((e - 1 - lo, e - 1 - hi + r))
        w_pads.append((lo, hi - r))
    return tuple(x_pads), tuple(w_pads)


def conv(x, w, s, pads, d):
    """``lax.conv_general_dilated`` in jaxback's channels-last layout (no bias)."""
    return lax.conv_general_dilated(x, w, s, pads, rhs_dilation=d, dimension_numbers=dimension_numbers(x.ndim - 2)[0])


def input_grad(y_bar, w, s, d, x_pads):
    """``x_bar = conv(spread_s(y_bar), flip(w).swap(in, out))``, padded x_pads: x's spatial shape."""
    n = w.ndim - 2
    w_t = jnp.flip(w, tuple(range(n))).swapaxes(n, n + 1).astype(y_bar.dtype)  # (k..., C_out, C_in)
    return lax.conv_general_dilated(y_bar, w_t, (1,) * n, x_pads, lhs_dilation=s, rhs_dilation=d,
                                    dimension_numbers=dimension_numbers(n)[0])


def weight_grad(x, y_bar, s, d, w_pads, like=None):
    """``w_bar[k, c, o] = sum over n and positions of x[n, i s + k d - lo, c] y_bar[n, i, o]``: one
    convolution with the batch contracted; the result is already (k..., C_in, C_out). ``like``: the
    kernel, whose sharding ``w_bar`` takes under an explicit mesh (the contracted batch may be split)."""
    n = x.ndim - 2
    return lax.conv_general_dilated(x.astype(y_bar.dtype), y_bar, d, w_pads, rhs_dilation=s,
                                    dimension_numbers=dimension_numbers(n)[1],
                                    out_sharding=None if like is None else cotangent_sharding(like))


def affine(product, params, x):
    """``product(x, w) + b`` in the common dtype of (x, w, b), as ``x @ w + b`` promotes."""
    dtype = jnp.result_type(x, params.w, params.b)
    return product(x.astype(dtype), params.w.astype(dtype)) + params.b.astype(dtype)


def affine_jvp(product, primals, tangents):
    """``(y, y_dot)`` for ``y = affine(product, params, x)``, ``product`` bilinear in (x, w): the
    product rule, one term per input, ``y_dot = product(x_dot, w) + product(x, w_dot) + b_dot``."""
    (params, x), (params_dot, x_dot) = primals, tangents
    y = affine(product, params, x)
    x, w, x_dot, w_dot, b_dot = (a.astype(y.dtype) for a in (x, params.w, x_dot, params_dot.w, params_dot.b))
    return y, product(x_dot, w) + product(x, w_dot) + b_dot


def compiled(rule, hyper=("stride", "padding", "dilation")):
    """``rule`` (a bwd or a jvp) as one compiled program, its hyperparameters static: run eagerly,
    its convolutions, casts and sums would each dispatch on their own, which is slower."""
    return jax.jit(rule, static_argnames=hyper)
