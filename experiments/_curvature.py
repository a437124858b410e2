"""Curvature of a classifier's loss through jaxback's hand rules: generalised Gauss-Newton products,
damped Gauss-Newton (Hessian-free) steps, the top eigenvalue by power iteration; and the
first-order runs (optax) that ``experiments/gauss_newton.py`` compares them with.

The parameters are one flat vector ``theta`` (P,) (``ravel_pytree`` of the model's params), the
model maps it to ``logits`` (N, C), and the loss is the mean softmax cross-entropy
``L(theta) = ce(logits(theta), labels)``. Its generalised Gauss-Newton matrix (GGN) is

  G = J^T H_L J       J = dlogits/dtheta: (N*C, P),   H_L = d^2 ce / dlogits^2: (N*C, N*C)

the Hessian of L without the term of the model's own second derivatives (sum over the logits of
dce/dlogits * d^2 logits/dtheta^2). G is positive semi-definite (below), so (G + damping I) d = -g
always gives a descent direction, where the full Hessian may not.

The cross-entropy's Hessian w.r.t. the logits, shapes first (``p`` the softmax, ``onehot`` the labels):

  Forward   logits: (N, C), labels: (N,)
            p  = softmax(logits, axis=1)                             (N, C)
            ce = (1/N) sum_i [logsumexp(logits[i]) - logits[i, labels[i]]]
  Gradient  dce/dlogits[i, c] = (p[i, c] - onehot[i, c]) / N         (N, C)
  Hessian   softmax's Jacobian: dp[i, c]/dlogits[j, d] = delta_ij p[i, c] (delta_cd - p[i, d]), and
            onehot is constant, so
            d^2 ce / dlogits[i, c] dlogits[j, d] = delta_ij (p[i, c] delta_cd - p[i, c] p[i, d]) / N

Zero between different examples (delta_ij): H_L is block diagonal, example i's block
(diag(p[i]) - p[i] p[i]^T) / N, (C, C), and the labels do not appear in it. Applied to a logits
tangent ``u`` (N, C) without forming a block, sum over d:

  H_L u     hu[i, c] = (p[i, c] u[i, c] - p[i, c] sum_d p[i, d] u[i, d]) / N
            hu = p * (u - (p * u).sum(1, keepdims=True)) / N         (N, C)

PSD: u[i] . hu[i] = (sum_c p[i, c] u[i, c]^2 - (sum_c p[i, c] u[i, c])^2) / N, the variance of
u[i] under p[i] (over N), >= 0; so v . G v = (J v) . H_L (J v) >= 0.

The product G v of a direction v (P,), one forward-mode and one reverse-mode pass, no Jacobian:

  u  = J v        jax.jvp through the model: its layers' hand JVPs      (N, C)
  hu = H_L u      the closed form above                                (N, C)
  Gv = J^T hu     jax.vjp through the model: its layers' hand VJPs      (P,)

The reference (``problem(..., hand=False)``) is autodiff throughout: ``model.auto`` for J and J^T,
and H_L u as jax.jvp of jax.grad of ``softmax_cross_entropy.auto`` (no closed form).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

import jaxback as jb

__all__ = ["Problem", "problem", "ce_hessian_product", "ggn_product", "hessian_product", "gauss_newton_step",
           "gauss_newton_run", "scan_run", "power_iteration", "optax_step", "optax_run", "OPTIMIZERS"]


class Problem(NamedTuple):
    """A loss of flat parameters: ``logits_of(theta) -> (N, C)``, ``loss_of(logits) -> ()`` and
    ``hessian_product(logits, u) -> H_L u`` (N, C)."""

    logits_of: Callable
    loss_of: Callable
    hessian_product: Callable

    def loss(self, theta):
        return self.loss_of(self.logits_of(theta))


def ce_hessian_product(logits, u):
    """``H_L u``: the mean softmax cross-entropy's Hessian w.r.t. logits (N, C) times u (N, C)."""
    p = jax.nn.softmax(logits, axis=1)
    return p * (u - (p * u).sum(1, keepdims=True)) / logits.shape[0]


def problem(model, unravel, x, labels, hand: bool = True) -> Problem:
    """The cross-entropy of ``model`` on ``(x, labels)`` as a function of flat ``theta``: the hand
    rules and the closed-form H_L (``hand``), or autodiff of ``.auto`` throughout."""
    if hand:
        return Problem(lambda theta: model(unravel(theta), x),
                       lambda logits: jb.softmax_cross_entropy(logits, labels), ce_hessian_product)
    loss_of = lambda logits: jb.softmax_cross_entropy.auto(logits, labels)
    return Problem(lambda theta: model.auto(unravel(theta), x), loss_of,
                   lambda logits, u: jax.jvp(jax.grad(loss_of), (logits,), (u,))[1])


def ggn_product(prob: Problem, theta, v):
    """``G v = J^T H_L J v`` (P,): one JVP and one VJP of the model."""
    logits, pullback = jax.vjp(prob.logits_of, theta)
    _, u = jax.jvp(prob.logits_of, (theta,), (v,))
    (gv,) = pullback(prob.hessian_product(logits, u))
    return gv


def hessian_product(prob: Problem, theta, v):
    """The full Hessian's ``H v``, forward over reverse: jax.jvp of jax.grad (for comparison; with
    the hand rules, the outer JVP differentiates the hand VJPs' code by autodiff)."""
    return jax.jvp(jax.grad(prob.loss), (theta,), (v,))[1]


def conjugate_gradient(matvec, b, iters: int):
    """``iters`` steps of conjugate gradients on ``matvec(d) = b`` (symmetric positive definite), from 0;
    once the residual is exactly 0 (converged in fewer steps) the steps change nothing."""
    def step(_, carry):
        d, r, s, rr = carry  # solution, residual b - A d, search direction, r . r
        a_s = matvec(s)
        alpha = jnp.where(rr > 0, rr / (s @ a_s), 0.0)
        d, r = d + alpha * s, r - alpha * a_s
        rr_new = r @ r
        return d, r, r + jnp.where(rr > 0, rr_new / rr, 0.0) * s, rr_new
    return jax.lax.fori_loop(0, iters, step, (jnp.zeros_like(b), b, b, b @ b))[0]


def gauss_newton_step(prob: Problem, theta, damping, cg_iters: int):
    """One damped Gauss-Newton step: ``(G + damping I) d = -g`` by ``cg_iters`` CG steps, taken
    if it lowers the loss; damping adapted by Levenberg-Marquardt's rule on the ratio
    rho = (actual change) / (the quadratic model's g . d + d . G d / 2): x 3/2 where rho < 1/4,
    x 2/3 where rho > 3/4 (Martens 2010). Returns ``(theta, damping, loss before the step)``."""
    loss, g = jax.value_and_grad(prob.loss)(theta)
    gv = lambda v: ggn_product(prob, theta, v)
    d = conjugate_gradient(lambda v: gv(v) + damping * v, -g, cg_iters)
    new_loss = prob.loss(theta + d)
    rho = (new_loss - loss) / (g @ d + 0.5 * d @ gv(d))
    damping = damping * jnp.where(rho < 0.25, 1.5, jnp.where(rho > 0.75, 2 / 3, 1.0))
    return jnp.where(new_loss < loss, theta + d, theta), damping, loss


def scan_run(prob, step, carry, steps: int):
    """``(theta, losses (steps + 1,))``: ``step(carry) -> (carry, loss before)``, theta first in carry."""
    carry, losses = jax.lax.scan(lambda c, _: step(c), carry, length=steps)
    return carry[0], jnp.append(losses, prob.loss(carry[0]))


def gauss_newton_run(prob, theta, damping, steps: int, cg_iters: int):
    """``steps`` damped Gauss-Newton steps from ``theta``: ``(theta, losses (steps + 1,))``."""
    def step(carry):
        theta, damping, loss = gauss_newton_step(prob, *carry, cg_iters)
        return (theta, damping), loss
    return scan_run(prob, step, (theta, damping), steps)


def power_iteration(matvec, v0, iters: int):
    """The Rayleigh quotients ``v . A v`` (iters,) of the power iteration on ``matvec`` from ``v0``:
    the last one is the top eigenvalue of a PSD A once they have settled."""
    def step(v, _):
        av = matvec(v)
        return av / jnp.linalg.norm(av), v @ av
    return jax.lax.scan(step, v0 / jnp.linalg.norm(v0), length=iters)[1]


# the first-order baselines -----------------------------------------------------------------------
def optax_step(prob, optimizer, theta, opt_state):
    """``((theta, opt_state), loss)`` after one step of ``optimizer`` on the full batch."""
    loss, g = jax.value_and_grad(prob.loss)(theta)
    updates, opt_state = optimizer.update(g, opt_state, theta)
    return (theta + updates, opt_state), loss


def optax_run(prob, theta, lr, steps: int, name: str):
    """``steps`` full-batch steps of ``OPTIMIZERS[name](lr)``: ``(theta, losses (steps + 1,))``."""
    optimizer = OPTIMIZERS[name](lr)
    return scan_run(prob, lambda carry: optax_step(prob, optimizer, *carry), (theta, optimizer.init(theta)), steps)


OPTIMIZERS = {"gradient descent": optax.sgd, "Adam": optax.adam}
