"""group_norm: normalise each example's channels in ``num_groups`` groups, then scale and shift.

Shapes first. x: (N, ..., C), NHWC for images; ``num_groups`` G divides C, and each group holds
``Cg = C / G`` consecutive channels. Reshape x to xg: (N, ..., G, Cg); the statistics of one group
of one example run over the spatial axes and Cg (``axes``: every axis of xg but N and G), so a
"row" of layer_norm becomes the M = (H W ...) Cg entries of a group. scale, bias: (C,); y has x's
shape. Forward, one group x: (M,) of one example:

    mu, rstd = moments(x)                 shifted two-pass mean and 1/sqrt(var + eps) (``_statistics``)
    x_hat    = (x - mean(x)) * rstd
    y        = x_hat * scale + bias       scale and bias per channel, broadcast over N and the spatial axes

Chain rule. Within a group this is layer_norm's maths (``jaxback._norm``) over M entries instead
of D: dx_hat[i]/dx[j] = rstd (delta_ij - 1/M - x_hat[i] x_hat[j] / M); the affine step is
elementwise, so g = dL/dx_hat = y_bar * scale and

    x_bar[j] = rstd (g[j] - mean(g) - x_hat[j] mean(g * x_hat))       means over the group's M entries.

scale and bias are shared by every example and position: their gradients sum over all but C.

  Backward  y_bar = dL/dy: (N, ..., C)
            x_hat     = centered(xg, mu) * rstd                        recomputed, (N, ..., G, Cg)
            g         = (y_bar * scale) grouped                        (N, ..., G, Cg)
            x_bar     = rstd * (g - mean(g) - x_hat * mean(g * x_hat)) means over ``axes``, ungrouped
            scale_bar = sum(y_bar * x_hat) over every axis but C       (C,)
            bias_bar  = sum(y_bar) over every axis but C               (C,)

Forward mode. Move x, scale and bias along x_dot, scale_dot, bias_dot. dx_hat[i]/dx[j] is symmetric
in i and j, so x_hat's tangent is the Backward's centred map applied to the grouped x_dot; the
affine step takes the product rule:

  Tangent   x_dot: (N, ..., C), scale_dot, bias_dot: (C,)
            x_hat     = centered(xg, mu) * rstd                        as the forward, (N, ..., G, Cg)
            x_hat_dot = rstd * (x_dot - mean(x_dot) - x_hat * mean(x_dot * x_hat))
                        x_dot grouped, means over ``axes``, ungrouped  (N, ..., C)
            y_dot     = x_hat_dot * scale + x_hat * scale_dot + bias_dot                (N, ..., C)

NOTE: num_groups has no default (it must divide C; None is refused with a message). G = 1 is layer_norm over all of an example's entries; G = C is instance norm. The stability
measures are layer_norm's (statistics in at least float32, shifted two-pass moments, overflow-free
squares, x0 and p held constant); a constant group gives y = bias and finite gradients.
Residuals: ``(params, x, mu, rstd)``; mu, rstd are (N, 1..., G, 1): 2 N G floats beyond arrays
alive anyway (x_hat is recomputed in bwd, one fused elementwise op).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ._layer import infer_from_features, make_layer
from ._statistics import centered, centered_tangent, centered_x_bar, check_affine, compute_dtype, moments, sum_rows
from ._validate import describe, require_rank
from ._windows import is_int

__all__ = ["GroupNormParams", "group_norm"]

NAME = "group_norm"


class GroupNormParams(NamedTuple):
    """``scale``: (C,) gain, ``bias``: (C,) shift, per channel."""

    scale: jax.Array
    bias: jax.Array


def group_norm_init(key, num_features: int, dtype=jnp.float32) -> GroupNormParams:
    """scale = 1, bias = 0 over ``num_features`` channels. ``key`` is unused."""
    return GroupNormParams(jnp.ones((num_features,), dtype), jnp.zeros((num_features,), dtype))


def _check(params, x, num_groups, eps):
    check_affine(NAME, params, x, eps, GroupNormParams)
    require_rank(NAME, "x", x, 2, at_least=True, hint="Expected (N, ..., C), e.g. NHWC.")
    if not (is_int(num_groups) and num_groups >= 1 and x.shape[-1] % num_groups == 0):
        raise ValueError(f"{NAME}: num_groups must be a positive int that divides the channels "
                         f"x.shape[-1] = {x.shape[-1]}; got num_groups={num_groups!r} (x {describe(x)}).")


def _grouped(a, num_groups):
    """(N, ..., C) -> (N, ..., G, C / G), and the statistics' axes: all but N and G."""
    g = a.reshape(*a.shape[:-1], num_groups, a.shape[-1] // num_groups)
    return g, tuple(range(1, g.ndim - 2)) + (g.ndim - 1,)


def _group_norm(params, x, num_groups, eps):
    """``(y, x_hat, mu, rstd)``, statistics in the compute dtype; x_hat grouped, (N, ..., G, Cg)."""
    xg, axes = _grouped(x.astype(compute_dtype(x, *params)), num_groups)
    mu, _, rstd = moments(xg, eps, axes)
    x_hat = centered(xg, mu, axes) * rstd
    y = x_hat.reshape(x.shape) * params.scale + params.bias
    return y.astype(jnp.result_type(x, *params)), x_hat, mu, rstd


def group_norm_auto(params: GroupNormParams, x: jax.Array, *, num_groups: int | None = None, eps: float = 1e-5) -> jax.Array:
    """``y = (x - mean) / sqrt(var + eps) * scale + bias``, statistics per example and group of channels."""
    _check(params, x, num_groups, eps)
    return _group_norm(params, x, num_groups, eps)[0]


def group_norm_fwd(params: GroupNormParams, x, *, num_groups=None, eps=1e-5):
    _check(params, x, num_groups, eps)
    y, _, mu, rstd = _group_norm(params, x, num_groups, eps)
    return y, (params, x, mu, rstd)


def group_norm_bwd(res, y_bar, *, num_groups=None, eps=1e-5):
    params, x, mu, rstd = res
    y_bar = y_bar.astype(rstd.dtype)
    xg, axes = _grouped(x.astype(rstd.dtype), num_groups)
    x_hat = centered(xg, mu, axes) * rstd
    g, _ = _grouped(y_bar * params.scale, num_groups)
    x_bar = centered_x_bar(g, x_hat, rstd, axes).reshape(x.shape)
    scale_bar = sum_rows(y_bar * x_hat.reshape(x.shape), params.scale.dtype)
    bias_bar = sum_rows(y_bar, params.bias.dtype)
    return GroupNormParams(scale_bar, bias_bar), x_bar.astype(x.dtype)


def group_norm_jvp(primals, tangents, *, num_groups=None, eps=1e-5):
    (params, x), (params_dot, x_dot) = primals, tangents
    _check(params, x, num_groups, eps)
    y, x_hat, _, rstd = _group_norm(params, x, num_groups, eps)
    x_dot_g, axes = _grouped(x_dot.astype(rstd.dtype), num_groups)
    x_hat_dot = centered_tangent(x_dot_g, x_hat, rstd, axes).reshape(x.shape)
    y_dot = x_hat_dot * params.scale + x_hat.reshape(x.shape) * params_dot.scale + params_dot.bias
    return y, y_dot.astype(y.dtype)


group_norm = make_layer(group_norm_auto, group_norm_fwd, group_norm_bwd, name=NAME, init=group_norm_init,
                        infer=infer_from_features(group_norm_init), jvp=group_norm_jvp)
