"""Train an MLP on scikit-learn's bundled digits in the three gradient modes, side by side.

    python experiments/digits.py            # no arguments needed; ~30 s on 2 CPU cores

The same initialisation and the same minibatch order are used for every mode:

* explicit: ``jb.backprop`` -- the seed's algorithm, hand rules chained by jaxback, no jax.grad;
* vjp:      ``jax.grad`` through ``model.apply`` -- JAX chains our hand rules;
* auto:     ``jax.grad`` through ``model.auto`` -- pure JAX autodiff.

The update is the seed's ``W <- W - lr * (dW + lam * W)``, i.e.
``optax.chain(optax.add_decayed_weights(lam), optax.sgd(lr))``. Every step is ``jax.jit``-compiled.

Printed per mode: test accuracy, the largest |gradient difference| to the other two modes along
the explicit run's trajectory (all three gradients evaluated at the same parameters every step),
the median step time and its ratio to auto, and the compiled step's temp memory. A loss-curve PNG
is written to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from tqdm import tqdm

import jaxback as jb

MODES = ("explicit", "vjp", "auto")
MODEL = jb.serial(jb.linear, jb.tanh, jb.linear, jb.tanh, jb.linear)
LOSS = jb.softmax_cross_entropy


def load_data(seed: int):
    """Digits (1797 8x8 images), stratified 75/25 split, features standardised on the train set."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    as_jax = lambda a, dt: jnp.asarray(a, dt)
    return (as_jax(scaler.transform(x_train), jnp.float32), as_jax(y_train, jnp.int32),
            as_jax(scaler.transform(x_test), jnp.float32), as_jax(y_test, jnp.int32))


def init_params(key, sizes=(64, 128, 64, 10)):
    k = jax.random.split(key, len(sizes) - 1)
    return (jb.linear.init(k[0], sizes[0], sizes[1]), None,
            jb.linear.init(k[1], sizes[1], sizes[2]), None,
            jb.linear.init(k[2], sizes[2], sizes[3]))


def loss_and_grads(mode: str, params, x, y):
    if mode == "explicit":
        return jb.backprop(MODEL, LOSS, params, x, y)
    if mode == "vjp":
        return jax.value_and_grad(lambda p: LOSS(MODEL(p, x), y))(params)
    return jax.value_and_grad(lambda p: LOSS.auto(MODEL.auto(p, x), y))(params)


def make_step(mode: str, optimizer):
    @jax.jit
    def step(params, opt_state, x, y):
        loss, grads = loss_and_grads(mode, params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss
    return step


@jax.jit
def grad_differences(params, x, y):
    """max |g_a - g_b| over all parameters, for each pair of modes, at the same parameters."""
    grads = {m: loss_and_grads(m, params, x, y)[1] for m in MODES}
    diff = lambda a, b: jnp.max(jnp.stack([jnp.max(jnp.abs(u - v)) for u, v in zip(
        jax.tree_util.tree_leaves(grads[a]), jax.tree_util.tree_leaves(grads[b]))]))
    return {(a, b): diff(a, b) for i, a in enumerate(MODES) for b in MODES[i + 1:]}


@jax.jit
def accuracy(params, x, y):
    return jnp.mean(jnp.argmax(MODEL.auto(params, x), axis=-1) == y)


def train(args):
    x_train, y_train, x_test, y_test = load_data(args.seed)
    optimizer = optax.chain(optax.add_decayed_weights(args.weight_decay), optax.sgd(args.lr))
    params0 = init_params(jax.random.PRNGKey(args.seed))
    rng = np.random.default_rng(args.seed)
    n_batches = len(x_train) // args.batch_size
    orders = [rng.permutation(len(x_train)) for _ in range(args.epochs)]
    results = {}
    worst_diff = {}
    for mode in MODES:
        step = make_step(mode, optimizer)
        params, opt_state = params0, optimizer.init(params0)
        step_times, curve = [], []
        for epoch in tqdm(range(args.epochs), desc=f"{mode:>8}", leave=False):
            epoch_loss = 0.0
            for b in range(n_batches):
                idx = orders[epoch][b * args.batch_size:(b + 1) * args.batch_size]
                xb, yb = x_train[idx], y_train[idx]
                if mode == "explicit":  # all three gradients at the same parameters
                    for pair, d in grad_differences(params, xb, yb).items():
                        worst_diff[pair] = max(worst_diff.get(pair, 0.0), float(d))
                t0 = time.perf_counter()
                params, opt_state, loss = jax.block_until_ready(step(params, opt_state, xb, yb))
                step_times.append(time.perf_counter() - t0)
                epoch_loss += float(loss) / n_batches
            curve.append(epoch_loss)
        memory = step.lower(params, opt_state, xb, yb).compile().memory_analysis()
        results[mode] = dict(
            accuracy=float(accuracy(params, x_test, y_test)),
            step_ms=1e3 * statistics.median(step_times[1:]),  # [1:]: skip the compiling call
            temp_bytes=getattr(memory, "temp_size_in_bytes", float("nan")),
            curve=curve)
    return results, worst_diff


def report(results, worst_diff):
    auto_ms = results["auto"]["step_ms"]
    print(f"\n{'mode':<9} {'test acc':>9} {'max |grad diff| to others':>28} {'median step':>12} "
          f"{'vs auto':>8} {'step temp mem':>14}")
    for m in MODES:
        r = results[m]
        others = ", ".join(f"{o}:{worst_diff[tuple(sorted((m, o), key=MODES.index))]:.1e}"
                           for o in MODES if o != m)
        print(f"{m:<9} {100 * r['accuracy']:8.2f}% {others:>28} {r['step_ms']:9.3f} ms "
              f"{r['step_ms'] / auto_ms:7.2f}x {r['temp_bytes']:>11,} B")


def plot(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m, style in zip(MODES, ("-", "--", ":")):
        ax.plot(results[m]["curve"], style, label=f"{m} ({100 * results[m]['accuracy']:.1f}% test)")
    ax.set(xlabel="epoch", ylabel="mean train loss", yscale="log",
           title="digits MLP: explicit vs vjp vs auto gradients")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"loss curves written to {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("experiments", "out", "digits_loss.png"))
    parser.add_argument("--min-accuracy", type=float, default=0.975,
                        help="exit non-zero if any mode ends below this test accuracy")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; MLP 64-128-64-10 (tanh), "
          f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}, weight decay {args.weight_decay}")
    results, worst_diff = train(args)
    report(results, worst_diff)
    plot(results, args.out)
    low = [m for m in MODES if results[m]["accuracy"] < args.min_accuracy]
    if low:
        raise SystemExit(f"test accuracy below {args.min_accuracy:.1%} for: {', '.join(low)}")


if __name__ == "__main__":
    main()
