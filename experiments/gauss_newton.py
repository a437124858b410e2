"""Forward mode for real: Gauss-Newton on the digits MLP with the hand JVPs and VJPs; writes docs/forward_mode.md.

    python experiments/gauss_newton.py                       # the committed page
    python experiments/gauss_newton.py --steps 5 --rounds 3 --out /tmp/forward_mode.md   # a quick look

The digits MLP of ``experiments/models.py`` (``jb.serial(jb.linear, jb.tanh, jb.linear)``, hidden
64), full batch (the 1347 training images), float64, every function ``jax.jit``-compiled:

1. G v = J^T H_L J v (``_curvature.py`` derives H_L): J v by ``jax.jvp`` through the hand JVPs,
   J^T u by ``jax.vjp`` through the hand VJPs, against autodiff of ``.auto`` throughout; timed
   with ``benchmarks/_bench.py``'s interleaved rounds (ratios: the machine is shared).
2. Damped Gauss-Newton (Hessian-free: CG on (G + damping I) d = -g) against gradient descent and
   Adam, the same number of steps from the same start; the top GGN eigenvalue by power iteration.
3. ``jax.jacfwd`` of the logits w.r.t. one input image (10 x 64), hand vs autodiff vs ``jax.jacrev``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import jaxback as jb

from _curvature import (gauss_newton_run, gauss_newton_step, ggn_product, hessian_product, optax_run, optax_step,
                        power_iteration, problem)
from data import digits_split
from models import mlp

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks"))
from _bench import block, interleaved, ratio_summary, table, write_page  # noqa: E402

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "forward_mode.md")
CURVE_AT = (0, 1, 2, 5, 10, 20)  # the steps whose loss the table shows


def setup(args):
    """``(model, unravel, theta0, train, test)``: float64 digits, the MLP, its flat start."""
    x_train, y_train, x_test, y_test = digits_split(args.seed)
    as64 = lambda x, y: (jnp.asarray(x, jnp.float64), jnp.asarray(y))
    train, test = as64(x_train[:args.train_limit], y_train[:args.train_limit]), as64(x_test, y_test)
    model = mlp(classes=10, size=args.size).model
    params, _ = jax.jit(model.init)(jax.random.key(args.seed), train[0][:2])
    theta0, unravel = ravel_pytree(params)
    return model, unravel, theta0, train, test


def on(fn, model, unravel, hand: bool):
    """``jit(fn(prob, *rest))`` as a function of ``(x, labels, *rest)``: the problem built inside."""
    return jax.jit(lambda x, labels, *rest: fn(problem(model, unravel, x, labels, hand), *rest))


def relative(value, reference) -> float:
    """max|value - reference| / max|reference| (numpy): the error on the reference's scale."""
    return float(np.abs(value - reference).max() / np.abs(reference).max())


def compiled(jitted, *args):
    """``(the executable of jitted at args, its number of dot products)`` (XLA's optimised HLO)."""
    executable = jitted.lower(*args).compile()
    return executable, executable.as_text().count(" dot(")


def evaluation(model, unravel):
    """``jit((theta, x, labels) -> (mean cross-entropy, accuracy))``."""
    def evaluate(theta, x, labels):
        logits = model(unravel(theta), x)
        return jb.softmax_cross_entropy(logits, labels), jnp.mean(jnp.argmax(logits, 1) == labels)
    return jax.jit(evaluate)


# the page's sections -------------------------------------------------------------------------------
def products(args) -> dict:
    """What the first table times, each ``f(prob, theta, v) -> (P,)`` (the output compared)."""
    adam = optax.adam(args.adam_lrs[0])
    return {"gradient: one VJP": lambda p, theta, v: jax.grad(p.loss)(theta),
            "G v: one JVP, H_L u, one VJP": ggn_product,
            "H v: jax.jvp of jax.grad (forward over reverse)": hessian_product,
            f"a damped Gauss-Newton step ({args.cg_iters} CG iterations)":
                lambda p, theta, v: gauss_newton_step(p, theta, args.damping, args.cg_iters)[0],
            "an Adam step": lambda p, theta, v: optax_step(p, adam, theta, adam.init(theta))[0][0]}


def products_section(args, model, unravel, theta0, train) -> tuple[str, float]:
    """G v and H v, hand vs autodiff at the start, their cost against one gradient; and the cost
    of a Gauss-Newton step in Adam steps (median times)."""
    v = jax.jit(jax.random.normal, static_argnums=1)(jax.random.key(args.seed + 1), theta0.shape)
    fns = {(what, hand): compiled(on(f, model, unravel, hand), *train, theta0, v)
           for what, f in products(args).items() for hand in (True, False)}
    outputs = {key: np.asarray(f(*train, theta0, v)) for key, (f, _) in fns.items()}
    calls = {key: functools.partial(lambda f: block(f(*train, theta0, v)), f) for key, (f, _) in fns.items()}
    times = interleaved(calls, args.rounds, args.reps)
    summary = ratio_summary(times, next(iter(fns)))  # every variant against the hand gradient
    rows = []
    for what in products(args):
        _, ratio, low, high = ratio_summary({"hand": times[what, True], "auto": times[what, False]}, "auto")["hand"]
        rows.append([what, f"{fns[what, True][1]} / {fns[what, False][1]}", f"{summary[what, True][0] * 1e3:.3g}",
                     f"{summary[what, False][0] * 1e3:.3g}", f"{ratio:.2f} ({low:.2f}-{high:.2f})",
                     f"{summary[what, True][1]:.2f}", f"{relative(outputs[what, True], outputs[what, False]):.1e}"])
    head = ["computes", "matmuls hand / auto", "ms hand", "ms auto", "hand / auto (median, min-max of rounds)",
            "hand / hand gradient", "max\\|hand - auto\\| / max\\|auto\\|"]
    _, ggn, _, gn, adam = products(args)
    in_adam_steps = summary[gn, True][0] / summary[adam, True][0]
    zeros = (" The hand programs' extra matmul multiplies an array of zeros, the tangent of the images x "
             "(which are not perturbed), where autodiff drops the term as a symbolic zero: the hand JVP "
             "contract instantiates symbolic zeros." if fns[ggn, True][1] > fns[ggn, False][1] else "")
    return "\n".join([
        "## G v and H v: hand rules against autodiff", "",
        f"At the start, a random direction v ({theta0.size} parameters), the {len(train[1])} training images, "
        f"float64. hand: the layers' hand JVPs and VJPs, H_L u in closed form; auto: `jax.jvp` / `jax.vjp` of "
        f"`model.auto`, H_L u by autodiff. Agreement: of the output (a step's: the new parameters). matmuls: "
        f"the dot products in XLA's compiled program.{zeros} Times: {args.rounds} interleaved rounds of "
        f"{args.reps} calls, jitted (`benchmarks/_bench.py`): ms the median call, the ratios the median over "
        f"rounds of the two calls' ratio in one round (the machine is shared).", "", table(head, rows)]), in_adam_steps


def best_first_order(model, unravel, theta0, train, name: str, lrs, steps: int):
    """``(lr, (theta, losses))``: the learning rate of ``lrs`` with the lowest final training loss."""
    run = on(lambda p, theta, lr: optax_run(p, theta, lr, steps, name), model, unravel, True)
    final = lambda result: np.nan_to_num(np.asarray(result[1][1][-1]), nan=np.inf)  # a diverged run loses
    return min(((lr, run(*train, theta0, lr)) for lr in lrs), key=final)


def optimiser_results(args, model, unravel, theta0, train) -> dict:
    """``{label: (steps, (theta, losses (steps + 1,)))}``: the rows of the second table, Gauss-Newton first."""
    results = {f"damped Gauss-Newton ({'hand' if hand else 'auto'})": (args.steps, on(
        lambda p, theta: gauss_newton_run(p, theta, args.damping, args.steps, args.cg_iters), model, unravel,
        hand)(*train, theta0)) for hand in (True, False)}
    for name, lrs, steps in (("gradient descent", args.grad_lrs, args.steps), ("Adam", args.adam_lrs, args.steps),
                             ("Adam", args.adam_lrs, args.steps * args.long_factor)):
        lr, result = best_first_order(model, unravel, theta0, train, name, lrs, steps)
        results[f"{name}, lr {lr:g}" + (f", {args.long_factor} x the steps" if steps > args.steps else "")] = (
            steps, result)
    return results


def optimiser_section(args, model, unravel, theta0, train, test, in_adam_steps) -> tuple[str, jax.Array]:
    """Damped Gauss-Newton against GD and Adam: the training loss along the steps, the test set
    after; and the Gauss-Newton run's final parameters."""
    results = optimiser_results(args, model, unravel, theta0, train)
    at, evaluate = [s for s in CURVE_AT if s <= args.steps], evaluation(model, unravel)
    rows = [[label, steps, *(f"{float(losses[s]):.3g}" for s in at), f"{float(losses[-1]):.3g}",
             *(lambda loss, accuracy: (f"{loss:.4f}", f"{accuracy:.2%}"))(*evaluate(theta, *test))]
            for label, (steps, (theta, losses)) in results.items()]
    head = ["method", "steps", *(f"loss at {s}" for s in at), "final loss", "test loss", "test accuracy"]
    grid = lambda lrs: "{" + ", ".join(f"{lr:g}" for lr in lrs) + "}"
    return "\n".join([
        "## Damped Gauss-Newton against first-order steps", "",
        f"Full batch from the same start: each Gauss-Newton step solves (G + damping I) d = -g by "
        f"{args.cg_iters} conjugate-gradient iterations (one G v each), takes d if it lowers the loss and "
        f"adapts the damping (Levenberg-Marquardt, from {args.damping:g}; `_curvature.gauss_newton_step`). "
        f"loss at k: the training loss (mean cross-entropy) after k steps; test: after the last step. Each "
        f"first-order row is the best learning rate of a grid (gradient descent {grid(args.grad_lrs)}, Adam "
        f"{grid(args.adam_lrs)}) by final training loss, at its own number of steps. The table above measures "
        f"a Gauss-Newton step at {in_adam_steps:.1f} Adam steps (median times): the last row gives Adam "
        f"{args.long_factor} times the steps.", "",
        table(head, rows)]), results["damped Gauss-Newton (hand)"][1][0]


def eigen_section(args, model, unravel, thetas: dict, train) -> str:
    """The top GGN eigenvalue by power iteration, hand vs autodiff, at each of ``thetas``."""
    v0 = jax.jit(jax.random.normal, static_argnums=1)(jax.random.key(args.seed + 2), next(iter(thetas.values())).shape)
    top = {hand: on(lambda p, theta, v: power_iteration(lambda u: ggn_product(p, theta, u), v, args.power_iters),
                    model, unravel, hand) for hand in (True, False)}
    rows = []
    for where, theta in thetas.items():
        hand, auto = (np.asarray(top[hand](*train, theta, v0)) for hand in (True, False))
        rows.append([where, f"{hand[-1]:.10g}", f"{auto[-1]:.10g}", f"{relative(hand[-1], auto[-1]):.1e}",
                     f"{relative(hand[-1], hand[-1 - len(hand) // 10]):.1e}"])
    head = ["parameters", "top eigenvalue (hand)", "top eigenvalue (auto)", "relative difference",
            f"change over the last {args.power_iters // 10} iterations"]
    return "\n".join([
        "## The top eigenvalue of G", "",
        f"{args.power_iters} power iterations v <- G v / \\|G v\\| from one random v, the Rayleigh quotient "
        f"v . G v at the end; hand and auto run the same iteration with their own G v. G shrinks as the "
        f"softmax saturates: where p is nearly one-hot, H_L = (diag(p) - p p^T) / N is nearly 0.", "",
        table(head, rows)])


def jacobian_section(args, model, unravel, theta, test) -> str:
    """jacfwd of the logits w.r.t. one test image, hand vs auto vs jacrev, and the cost of each."""
    image, label = np.asarray(test[0])[0], int(np.asarray(test[1])[0])
    logits_of = lambda apply: lambda theta, x: apply(unravel(theta), x[None])[0]  # (64,) -> (10,)
    jacs = {"jax.jacfwd, hand JVPs": jax.jit(jax.jacfwd(logits_of(model), argnums=1)),
            "jax.jacrev, hand VJPs": jax.jit(jax.jacrev(logits_of(model), argnums=1)),
            "jax.jacfwd, autodiff (reference)": jax.jit(jax.jacfwd(logits_of(model.auto), argnums=1))}
    values = {name: np.asarray(jac(theta, image)) for name, jac in jacs.items()}
    reference = values["jax.jacfwd, autodiff (reference)"]
    calls = {name: functools.partial(lambda j: block(j(theta, image)), jac) for name, jac in jacs.items()}
    summary = ratio_summary(interleaved(calls, args.rounds, args.reps), "jax.jacfwd, hand JVPs")
    rows = [[name, f"{relative(values[name], reference):.1e}", f"{median * 1e6:.3g}",
             f"{ratio:.2f} ({low:.2f}-{high:.2f})"] for name, (median, ratio, low, high) in summary.items()]
    head = ["Jacobian (10 x 64)", "max\\|J - J_ref\\| / max\\|J_ref\\|", "us (median)", "x jacfwd hand (min-max)"]
    return "\n".join([
        "## The input sensitivity: jax.jacfwd of the logits", "",
        f"d logits / d image of the first test image (a {label}) at the Gauss-Newton run's final parameters: "
        f"`jax.jacfwd` pushes the 64 basis directions of the input through the hand JVPs (one batched JVP), "
        f"`jax.jacrev` pulls the 10 logits' directions back through the hand VJPs. Both are exact; with 64 "
        f"inputs and 10 outputs reverse mode needs fewer passes, forward mode wins where inputs are fewer "
        f"than outputs. Largest entry of the true class's row: {np.abs(reference[label]).max():.3g}.",
        "", table(head, rows)])


INTRO = (
    "Forward mode computes J v, the change of a function's outputs along a direction v of its inputs, in "
    "one pass beside the forward, without forming the Jacobian J; reverse mode computes J^T u. The "
    "generalised Gauss-Newton product G v = J^T H_L J v of a classifier uses both: the layers' hand JVPs "
    "for J v and their hand VJPs for J^T u, with the cross-entropy's Hessian H_L (block diagonal, "
    "(diag(p) - p p^T) / N per example; derived in `experiments/_curvature.py`) applied in closed form "
    "between them. The Hessian-vector product by forward over reverse, `jax.jvp(jax.grad(f))`, needs no "
    "hand JVP: the outer forward pass differentiates the hand VJPs' code with ordinary autodiff, and it "
    "includes the model's own second derivatives, so H may be indefinite where G never is (it is PSD). "
    "G is what a Gauss-Newton or Hessian-free optimiser inverts (by conjugate gradients, G v products "
    "only) and what power iteration reads the curvature from.")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="optimiser steps per run (default 30).")
    parser.add_argument("--cg-iters", type=int, default=10, help="CG iterations per Gauss-Newton step.")
    parser.add_argument("--damping", type=float, default=1.0, help="the Gauss-Newton runs' first damping.")
    parser.add_argument("--grad-lrs", type=float, nargs="+", default=[0.3, 1.0, 3.0],
                        help="gradient descent's learning rates (the best is shown).")
    parser.add_argument("--adam-lrs", type=float, nargs="+", default=[3e-3, 1e-2, 3e-2, 1e-1])
    parser.add_argument("--long-factor", type=int, default=10, help="Adam's long run: this many times the steps.")
    parser.add_argument("--power-iters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=41, help="interleaved timing rounds.")
    parser.add_argument("--reps", type=int, default=5, help="calls per variant per round (short rounds: the "
                        "ratios compare calls made close together on a shared machine).")
    parser.add_argument("--size", choices=("small", "tiny"), default="small", help="models.mlp's size (hidden 64 or 8).")
    parser.add_argument("--train-limit", type=int, default=None, help="the first this many training images.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=PAGE)
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)
    model, unravel, theta0, train, test = setup(args)
    products, in_adam_steps = products_section(args, model, unravel, theta0, train)
    optimisers, gn_theta = optimiser_section(args, model, unravel, theta0, train, test, in_adam_steps)
    sections = [INTRO, products, optimisers,
                eigen_section(args, model, unravel, {"start": theta0, "after Gauss-Newton": gn_theta}, train),
                jacobian_section(args, model, unravel, gn_theta, test)]
    command = " ".join(["python experiments/gauss_newton.py", *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
    text = write_page(args.out, "Forward mode: Gauss-Newton on the digits MLP", command, sections)
    print(text)
    return text


if __name__ == "__main__":
    main()
