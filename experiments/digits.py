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


import functools

import jax
import jax.numpy as jnp
import optax

import jaxback as jb
from _common import epoch_orders, load_digits_split, training_parser, make_train_step, pairwise_max_diffs, plot_mode_curves, \
    print_table, train_modes, update_worst

MODES = ("explicit", "vjp", "auto")
MODEL = jb.serial(jb.linear, jb.tanh, jb.linear, jb.tanh, jb.linear)
LOSS = jb.softmax_cross_entropy


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


@jax.jit
def grad_differences(params, x, y):
    """max |g_a - g_b| over all parameters, for each pair of modes, at the same parameters."""
    return pairwise_max_diffs({m: loss_and_grads(m, params, x, y)[1] for m in MODES}, MODES)


@jax.jit
def accuracy(params, x, y):
    return jnp.mean(jnp.argmax(MODEL.auto(params, x), axis=-1) == y)


def train(args):
    x_train, y_train, x_test, y_test = load_digits_split(args.seed)
    optimizer = optax.chain(optax.add_decayed_weights(args.weight_decay), optax.sgd(args.lr))
    params0 = init_params(jax.random.PRNGKey(args.seed))
    n_batches = len(x_train) // args.batch_size
    orders = epoch_orders(args.seed, len(x_train), args.epochs)
    worst_diff = {}

    def get_batch(epoch, b):
        idx = orders[epoch][b * args.batch_size:(b + 1) * args.batch_size]
        return x_train[idx], y_train[idx]

    def before_step(mode, carry, batch):
        if mode == "explicit":  # all three gradients at the same parameters
            update_worst(worst_diff, grad_differences(carry[0], *batch))

    make_step = lambda mode: make_train_step(optimizer, functools.partial(loss_and_grads, mode))
    results = train_modes(MODES, make_step, (params0, optimizer.init(params0), None),
                          args.epochs, n_batches, get_batch, before_step)
    for r in results.values():
        r["accuracy"] = float(accuracy(r["carry"][0], x_test, y_test))
    return results, worst_diff


def report(results, worst_diff):
    print_table(MODES, results, worst_diff)


def plot(results, path):
    plot_mode_curves(path, MODES, results, "digits MLP: explicit vs vjp vs auto gradients")


def main(argv=None):
    parser = training_parser(__doc__, epochs=40, lr=0.05, weight_decay=1e-4, out_name="digits_loss.png",
                             min_accuracy=0.975)
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
