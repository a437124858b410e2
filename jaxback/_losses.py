"""Losses: softmax_cross_entropy, mse, binary_cross_entropy_with_logits. Each returns a scalar mean.

Shapes first: every loss maps a batch to a scalar ``loss``; its cotangent ``loss_bar`` is a scalar
(1.0 when the loss is the end of the chain). "Mean" divides by ``n = max(count, 1)``, so an empty
batch has loss 0 and empty gradients instead of 0/0 = NaN.

Each section states the forward, the backward and the forward-mode tangent as Python lines
``name = expression`` (a comment may follow after three spaces); ``tests/test_derivations_sympy.py``
evaluates them on a batch of sympy symbols, differentiates ``loss`` and proves each stated
``<arg>_bar`` equal to it and ``loss_dot`` equal to the directional derivative
sum over the inputs u of d loss/du * u_dot, then evaluates them with JAX and compares with the hand
``bwd`` and ``jvp``. Forward mode moves every floating input along a tangent ``<arg>_dot`` of its
shape (integer labels have none); ``loss_dot`` is the first-order change of the loss, a scalar.

softmax_cross_entropy.  Forward   logits: (N, C), labels: (N,) integers in [0, C)
    onehot  = labels[:, None] == arange(C)                    (N, C), onehot[i, c] = (c == labels[i])
    lse     = log(sum(exp(logits), axis=1))                   (N,), log sum_c exp(logits[i, c])
    picked  = sum(onehot * logits, axis=1)                    (N,), logits[i, labels[i]]
    loss    = sum(lse - picked) / n
  Chain rule: d lse[i]/d logits[i, c] = softmax(logits)[i, c] = exp(logits[i, c] - lse[i]), and
  d picked[i]/d logits[i, c] = onehot[i, c]. So
  Backward  logits_bar = loss_bar * (exp(logits - lse[:, None]) - onehot) / n     (N, C)
            labels_bar = None                                           (integers: no gradient)
  The rule saves ``logits`` (already alive as the previous layer's output), ``labels`` and ``lse``:
  (N,) floats beyond the inputs, never an (N, C) array of probabilities. (The code gathers
  ``picked`` instead of forming ``onehot * logits``: see ``_picked``.)
  Forward mode: the same two derivatives, summed against logits_dot along each row; picked is
  linear in logits, so its tangent picks from logits_dot:
  Tangent   logits_dot: (N, C), labels: no tangent
            lse_dot    = sum(exp(logits - lse[:, None]) * logits_dot, axis=1)    (N,), softmax-weighted
            picked_dot = sum(onehot * logits_dot, axis=1)                        (N,), gathered as picked is
            loss_dot   = sum(lse_dot - picked_dot) / n

mse.  Forward   pred, target: same shape (...), n = pred.size
    diff = pred - target
    loss = sum(diff**2) / n
  Backward  pred_bar   =  loss_bar * 2 * diff / n
            target_bar = -loss_bar * 2 * diff / n
  Residual: ``diff`` alone.
  Tangent   pred_dot, target_dot: pred's shape          (product rule on diff * diff)
            diff_dot = pred_dot - target_dot
            loss_dot = sum(2 * diff * diff_dot) / n

binary_cross_entropy_with_logits.  Forward   logits x, targets t in [0, 1]: same shape, n = x.size
    x    = logits
    t    = targets
    l    = softplus(x) - x * t       per entry: -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))
               computed as max(x, 0) - x * t + log1p(exp(-|x|))   (no overflow)
    loss = sum(l) / n
  d softplus(x)/dx = sigmoid(x), so dl/dx = sigmoid(x) - t and dl/dt = -x:
  Backward  logits_bar  = loss_bar * (sigmoid(x) - t) / n
            targets_bar = -loss_bar * x / n
  Tangent   logits_dot, targets_dot: x's shape          (the same two partials, summed)
            x_dot    = logits_dot
            t_dot    = targets_dot
            loss_dot = sum((sigmoid(x) - t) * x_dot - x * t_dot) / n

NOTE: losses refuse silent broadcasting: ``mse`` of (N, 1) against (N,) raises. Labels outside
[0, C) match no class (their one-hot row is zero): the loss is lse alone; values are not checked
because they are not known at trace time. Logits must be finite for bce (inf - inf is NaN).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from ._functions import softplus as softplus_maths
from ._layer import dtype_token, make_layer
from ._validate import describe, require_float, require_integer, require_rank, require_same_shape

__all__ = ["softmax_cross_entropy", "mse", "binary_cross_entropy_with_logits"]


def _mean_divisor(x) -> int:
    return max(x.size, 1)


# softmax_cross_entropy ----------------------------------------------------------------------------
_SCE = "softmax_cross_entropy"


def _check_sce(logits, labels):
    require_float(_SCE, "logits", logits)
    require_integer(_SCE, "labels", labels)
    require_rank(_SCE, "logits", logits, 2, hint="Expected (batch, classes).")
    require_rank(_SCE, "labels", labels, 1, hint="Expected (batch,) class indices.")
    if labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"{_SCE}: labels.shape[0] must equal logits.shape[0] (the batch); got logits "
            f"{describe(logits)} and labels {describe(labels)}."
        )


def _onehot(labels, num_classes, dtype):
    return (labels[:, None] == jnp.arange(num_classes)).astype(dtype)


def _logsumexp_rows(logits):
    top = lax.stop_gradient(jnp.max(logits, axis=1, keepdims=True))  # a shift: no gradient needed
    return (top + jnp.log(jnp.sum(jnp.exp(logits - top), axis=1, keepdims=True)))[:, 0]


def _picked(logits, labels):
    """``logits[i, labels[i]]``, 0 where the label is outside [0, C) (a zero one-hot row).

    A gather, not ``sum(onehot * logits)``: XLA materialised that (N, C) product, 64 MiB of
    compiled temp for autodiff's value_and_grad at (2048, 8192), where the gather needs none.
    """
    inside = (labels >= 0) & (labels < logits.shape[1])
    index = jnp.where(inside, labels, 0)[:, None]
    return jnp.where(inside, jnp.take_along_axis(logits, index, axis=1, mode="clip")[:, 0], 0)


def _sce_from(logits, labels, lse):
    return jnp.sum(lse - _picked(logits, labels)) / _mean_divisor(labels)


def softmax_cross_entropy_auto(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of ``softmax(logits)`` against integer ``labels``.

    logits: (N, C) floats, labels: (N,) integers -> scalar.
    """
    _check_sce(logits, labels)
    return _sce_from(logits, labels, _logsumexp_rows(logits))


def softmax_cross_entropy_fwd(logits, labels):
    _check_sce(logits, labels)
    lse = _logsumexp_rows(logits)
    return _sce_from(logits, labels, lse), (logits, labels, lse)


def softmax_cross_entropy_bwd(res, loss_bar):
    logits, labels, lse = res
    probs = jnp.exp(logits - lse[:, None])
    onehot = _onehot(labels, logits.shape[1], logits.dtype)
    logits_bar = loss_bar * (probs - onehot) / _mean_divisor(labels)
    return logits_bar.astype(logits.dtype), None


def softmax_cross_entropy_jvp(primals, tangents):
    (logits, labels), (logits_dot, _) = primals, tangents  # labels: integers, no tangent
    lse = _logsumexp_rows(logits)
    lse_dot = jnp.sum(jnp.exp(logits - lse[:, None]) * logits_dot, axis=1)  # (N,), softmax-weighted
    picked_dot = _picked(logits_dot, labels)                               # (N,), picked is linear
    loss_dot = jnp.sum(lse_dot - picked_dot) / _mean_divisor(labels)
    loss = _sce_from(logits, labels, lse)
    return loss, loss_dot.astype(loss.dtype)


softmax_cross_entropy = make_layer(
    softmax_cross_entropy_auto, softmax_cross_entropy_fwd, softmax_cross_entropy_bwd, name=_SCE,
    jvp=softmax_cross_entropy_jvp,
)


# mse ----------------------------------------------------------------------------------------------
def _check_pair(name, a_name, a, b_name, b):
    require_float(name, a_name, a)
    require_float(name, b_name, b)
    require_same_shape(name, a_name, a, b_name, b)


def mse_auto(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error ``mean((pred - target)**2)``; pred, target: same shape -> scalar."""
    _check_pair("mse", "pred", pred, "target", target)
    diff = pred - target
    return jnp.sum(diff * diff) / _mean_divisor(diff)


def mse_fwd(pred, target):
    _check_pair("mse", "pred", pred, "target", target)
    diff = pred - target
    return jnp.sum(diff * diff) / _mean_divisor(diff), (diff, dtype_token(target))


def mse_bwd(res, loss_bar):
    diff, target_dtype = res
    pred_bar = loss_bar * 2 * diff / _mean_divisor(diff)
    return pred_bar.astype(diff.dtype), (-pred_bar).astype(target_dtype.dtype)


def mse_jvp(primals, tangents):
    (pred, target), (pred_dot, target_dot) = primals, tangents
    loss, (diff, _) = mse_fwd(pred, target)
    diff_dot = pred_dot - target_dot
    loss_dot = jnp.sum(2 * diff * diff_dot) / _mean_divisor(diff)
    return loss, loss_dot.astype(loss.dtype)


mse = make_layer(mse_auto, mse_fwd, mse_bwd, name="mse", jvp=mse_jvp)


# binary_cross_entropy_with_logits -----------------------------------------------------------------
_BCE = "binary_cross_entropy_with_logits"


def binary_cross_entropy_with_logits_auto(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean of ``-t log sigmoid(x) - (1 - t) log(1 - sigmoid(x))``; same shapes -> scalar."""
    _check_pair(_BCE, "logits", logits, "targets", targets)
    per_entry = softplus_maths(logits) - logits * targets
    return jnp.sum(per_entry) / _mean_divisor(logits)


def binary_cross_entropy_with_logits_fwd(logits, targets):
    return binary_cross_entropy_with_logits_auto(logits, targets), (logits, targets)


def binary_cross_entropy_with_logits_bwd(res, loss_bar):
    x, t = res
    n = _mean_divisor(x)
    logits_bar = loss_bar * (lax.logistic(x) - t) / n
    targets_bar = -loss_bar * x / n
    return logits_bar.astype(x.dtype), targets_bar.astype(t.dtype)


def binary_cross_entropy_with_logits_jvp(primals, tangents):
    (x, t), (x_dot, t_dot) = primals, tangents
    loss = binary_cross_entropy_with_logits_auto(x, t)
    loss_dot = jnp.sum((lax.logistic(x) - t) * x_dot - x * t_dot) / _mean_divisor(x)
    return loss, loss_dot.astype(loss.dtype)


binary_cross_entropy_with_logits = make_layer(
    binary_cross_entropy_with_logits_auto,
    binary_cross_entropy_with_logits_fwd,
    binary_cross_entropy_with_logits_bwd,
    name=_BCE,
    jvp=binary_cross_entropy_with_logits_jvp,
)
