"""Registry entries for the losses: softmax_cross_entropy, mse, binary_cross_entropy_with_logits."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .._losses import binary_cross_entropy_with_logits, mse, softmax_cross_entropy
from ._entries_core import _assert_equal, _assert_finite
from ._registry import EdgeCase, ErrorCase, LayerInfo, Mutant
from .strategies import values

__all__ = ["ENTRIES"]


def _sce_args(rng, dtype, shape, kind):
    n, c = shape
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.integers(0, c, n), jnp.int32)


def _pair_args(rng, dtype, shape, kind):
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.standard_normal(shape), dtype)


def _bce_args(rng, dtype, shape, kind):
    return jnp.asarray(values(rng, shape, kind), dtype), jnp.asarray(rng.random(shape), dtype)


def _empty_loss_case(make):
    def check(y, cots):
        _assert_equal(y, 0.0)
        assert cots[0].shape[0] == 0
    return EdgeCase("empty batch", make, "loss 0 (sum over nothing / max(n, 1)), empty gradients", check)


def _check_no_class_matches(y, cotangents):
    lse = np.log(np.exp(np.arange(4.0)).sum())
    np.testing.assert_allclose(y, lse, rtol=1e-14)
    softmax = np.exp(np.arange(4.0) - lse)
    np.testing.assert_allclose(cotangents[0], np.stack([softmax, softmax[::-1]]) / 2, rtol=1e-14)


def _sce_probs(res):
    """softmax recomputed from the residuals (logits, labels, lse)."""
    logits, _, lse = res
    return jnp.exp(logits - lse[:, None])


def _sce_onehot(res):
    logits, labels, _ = res
    return jnp.eye(logits.shape[1])[labels]


def _sce_n(res):
    _, labels, _ = res
    return max(labels.shape[0], 1)


def _mse_grad(res, g, factor=2):
    """``factor * g * diff / n`` from the residuals (diff, target dtype token)."""
    diff, _ = res
    return factor * g * diff / max(diff.size, 1)


def _bce_terms(res):
    """``(x, t, n)`` from the residuals (logits x, targets t)."""
    x, t = res
    return x, t, max(x.size, 1)


def _bce_targets_dropped(res, g):
    x, t, n = _bce_terms(res)
    return g * (jax.nn.sigmoid(x) - t) / n, None


def _bce_plus_t(res, g):
    x, t, n = _bce_terms(res)
    return g * (jax.nn.sigmoid(x) + t) / n, -g * x / n


def _loss_jvp_mutant(layer, tangent):
    """A loss jvp whose ``loss_dot = tangent(primals, tangents)`` (the loss itself from ``auto``)."""
    def jvp(primals, tangents):
        loss = layer.auto(*primals)
        return loss, tangent(primals, tangents).astype(loss.dtype)
    return jvp


def _sce_lse_dot(logits, logits_dot):
    return jnp.sum(jax.nn.softmax(logits, axis=1) * logits_dot, axis=1)


def _sce_picked_dot(logits_dot, labels):
    return jnp.take_along_axis(logits_dot, labels[:, None], axis=1)[:, 0]


_SCE_NO_PICKED = _loss_jvp_mutant(softmax_cross_entropy, lambda p, t: jnp.sum(
    _sce_lse_dot(p[0], t[0])) / max(p[1].shape[0], 1))
_SCE_SUM = _loss_jvp_mutant(softmax_cross_entropy, lambda p, t: jnp.sum(
    _sce_lse_dot(p[0], t[0]) - _sce_picked_dot(t[0], p[1])))
_MSE_NO_2 = _loss_jvp_mutant(mse, lambda p, t: jnp.sum((p[0] - p[1]) * (t[0] - t[1])) / max(p[0].size, 1))
_MSE_PLUS = _loss_jvp_mutant(mse, lambda p, t: jnp.sum(2 * (p[0] - p[1]) * (t[0] + t[1])) / max(p[0].size, 1))
_BCE_NO_T = _loss_jvp_mutant(binary_cross_entropy_with_logits, lambda p, t: jnp.sum(
    (jax.nn.sigmoid(p[0]) - p[1]) * t[0]) / max(p[0].size, 1))
_BCE_PLUS_T = _loss_jvp_mutant(binary_cross_entropy_with_logits, lambda p, t: jnp.sum(
    (jax.nn.sigmoid(p[0]) + p[1]) * t[0] - p[0] * t[1]) / max(p[0].size, 1))

_LOGITS, _INT_LABELS = jnp.ones((4, 3)), jnp.zeros(4, jnp.int32)
SOFTMAX_CROSS_ENTROPY = LayerInfo(
    softmax_cross_entropy, _sce_args, ((1, 1), (6, 4), (0, 4)), bench_shape=(2048, 8192),
    edge_cases=(
        _empty_loss_case(lambda dt: (jnp.zeros((0, 4), dt), jnp.zeros(0, jnp.int32))),
        EdgeCase("huge logits", lambda dt: (jnp.asarray([[1e4, -1e4, 0.0], [3e4, 1e4, -3e4]], dt), jnp.asarray([1, 0])),
                 "finite loss and gradients", lambda y, cots: _assert_finite(y, cots[0])),
        EdgeCase("labels outside [0, C)", lambda dt: (jnp.asarray([[0, 1, 2, 3], [3, 2, 1, 0]], dt), jnp.asarray([-1, 4])),
                 "no class matches: loss = mean(lse), logits_bar = softmax / n", _check_no_class_matches),
    ),
    error_cases=(
        ErrorCase("float labels", lambda: (_LOGITS, jnp.zeros(4)), TypeError, r"softmax_cross_entropy: labels must be an integer array"),
        ErrorCase("batch mismatch", lambda: (_LOGITS, jnp.zeros(5, jnp.int32)), ValueError,
                  r"softmax_cross_entropy: labels.shape\[0\] must equal logits.shape\[0\]"),
        ErrorCase("rank of logits", lambda: (jnp.ones(3), jnp.zeros(3, jnp.int32)), ValueError,
                  r"softmax_cross_entropy: logits must have exactly 2"),
        ErrorCase("rank of labels", lambda: (_LOGITS, jnp.zeros((4, 1), jnp.int32)), ValueError,
                  r"softmax_cross_entropy: labels must have exactly 1"),
    ),
    mutants=(
        Mutant("sum instead of mean", lambda res, g: (g * (_sce_probs(res) - _sce_onehot(res)), None)),
        Mutant("missing the one-hot", lambda res, g: (g * _sce_probs(res) / _sce_n(res), None)),
        Mutant("jvp: missing the picked term", jvp=_SCE_NO_PICKED),
        Mutant("jvp: sum instead of mean", jvp=_SCE_SUM),
    ),
)
MSE = LayerInfo(
    mse, _pair_args, ((1,), (4, 3), (0, 3)),
    edge_cases=(_empty_loss_case(lambda dt: (jnp.zeros((0, 3), dt), jnp.zeros((0, 3), dt))),),
    error_cases=(
        ErrorCase("silent broadcasting", lambda: (jnp.ones((4, 1)), jnp.ones(4)), ValueError,
                  r"mse: pred and target must have the same shape \(no broadcasting\); got pred shape=\(4, 1\)"),
        ErrorCase("integer target", lambda: (jnp.ones(4), jnp.ones(4, jnp.int32)), TypeError, r"mse: target must be a floating-point array"),
    ),
    mutants=(
        Mutant("target cotangent with the wrong sign", lambda res, g: (_mse_grad(res, g),) * 2),
        Mutant("missing the factor 2", lambda res, g: (_mse_grad(res, g, 1), -_mse_grad(res, g, 1))),
        Mutant("wrong dtype", lambda res, g: (_mse_grad(res, g).astype(jnp.float32), -_mse_grad(res, g))),
        Mutant("jvp: missing the factor 2", jvp=_MSE_NO_2),
        Mutant("jvp: target tangent with the wrong sign", jvp=_MSE_PLUS),
    ),
)
BCE = LayerInfo(
    binary_cross_entropy_with_logits, _bce_args, ((1,), (4, 3), (0, 3)),
    edge_cases=(
        _empty_loss_case(lambda dt: (jnp.zeros((0, 3), dt), jnp.zeros((0, 3), dt))),
        EdgeCase("saturated logits", lambda dt: (jnp.asarray([-1e4, 1e4, 0.0], dt), jnp.asarray([1.0, 0.0, 0.5], dt)),
                 "finite loss (1e4 per wrong entry) and gradients", lambda y, cots: _assert_finite(y, *cots)),
    ),
    error_cases=(
        ErrorCase("shape mismatch", lambda: (jnp.ones((4, 2)), jnp.ones((4, 1))), ValueError,
                  r"binary_cross_entropy_with_logits: logits and targets must have the same shape"),
        ErrorCase("integer logits", lambda: (jnp.ones(4, jnp.int32), jnp.ones(4)), TypeError,
                  r"binary_cross_entropy_with_logits: logits must be a floating-point array"),
    ),
    mutants=(
        Mutant("targets cotangent dropped", _bce_targets_dropped),
        Mutant("sigmoid(x) + t", _bce_plus_t),
        Mutant("jvp: targets tangent dropped", jvp=_BCE_NO_T),
        Mutant("jvp: sigmoid(x) + t", jvp=_BCE_PLUS_T),
    ),
)


ENTRIES = (SOFTMAX_CROSS_ENTROPY, MSE, BCE)
