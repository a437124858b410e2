"""What the experiment scripts share: digits data, the per-mode training loop and its timings,
gradient agreement between modes, the printed table and the PNG helper.

A *mode* is one way of computing gradients ("explicit", "vjp", "auto"). ``train_modes`` runs one
jit-compiled step function per mode from the same initial carry over the same batches, and records
per mode the final carry, the loss curve, the median step time and the compiled step's temp memory.
``pairwise_max_diffs`` / ``update_worst`` reduce gradients computed by several modes *at the same
parameters* to the largest |difference| per pair of modes; ``print_table`` prints one row per mode.
"""

from __future__ import annotations

import argparse

import itertools
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

__all__ = ["model_gradients", "load_digits_split", "epoch_orders", "make_train_step", "train_modes", "pairwise_max_diffs",
           "update_worst", "print_table", "plot_panels", "plot_mode_curves"]


# data -----------------------------------------------------------------------------------------------
def load_digits_split(seed: int, image_shape=None):
    """Digits (1797 8x8 images), stratified 75/25 split, features standardised on the train set.

    ``(x_train, y_train, x_test, y_test)``: x float32 (N, 64), or (N, *image_shape) when given
    (e.g. ``(8, 8, 1)`` for NHWC), y int32 (N,).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.25, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    shape = (-1, *image_shape) if image_shape is not None else (-1, x.shape[1])
    as_x = lambda a: jnp.asarray(scaler.transform(a).reshape(shape), jnp.float32)
    return as_x(x_train), jnp.asarray(y_train, jnp.int32), as_x(x_test), jnp.asarray(y_test, jnp.int32)


def epoch_orders(seed: int, n: int, epochs: int):
    """One permutation of ``range(n)`` per epoch, fixed by ``seed``: the same batches for every mode."""
    rng = np.random.default_rng(seed)
    return [rng.permutation(n) for _ in range(epochs)]


# the three gradient modes on a model -----------------------------------------------------------------
def model_gradients(model, loss, mode: str, training: bool = True):
    """``f(params, state, x, target, key) -> ((loss, new_state), grads)`` in one gradient mode:

    * explicit: ``jb.backprop`` (each layer's ``fwd``, then each ``bwd`` in reverse; no jax.grad);
    * vjp:      ``jax.value_and_grad`` through ``model`` (JAX chains our hand rules);
    * auto:     ``jax.value_and_grad`` through ``model.auto`` and ``loss.auto`` (pure autodiff).

    ``new_state`` is ``None`` for a model without state.
    """
    import jaxback as jb

    state_args = lambda state: (state,) if model.has_state else ()

    def explicit(params, state, x, target, key):
        out = jb.backprop(model, loss, params, x, target, state=state, key=key, training=training)
        return out if model.has_state else ((out[0], None), out[1])

    def through_jax(params, state, x, target, key):
        method = "apply" if mode == "vjp" else "auto"

        def objective(p):
            out = getattr(model, method)(p, x, *state_args(state), key=key, training=training)
            y, new_state = out if model.has_state else (out, None)
            return getattr(loss, method)(y, target), new_state

        return jax.value_and_grad(objective, has_aux=True)(params)

    return explicit if mode == "explicit" else through_jax


# the per-mode training loop -------------------------------------------------------------------------
def make_train_step(optimizer, loss_and_grads, stateful: bool = False):
    """A jitted ``step((params, opt_state, state), *batch) -> ((params, opt_state, state), loss)``.

    ``loss_and_grads(params, *batch) -> (loss, grads)``, or with ``stateful``
    ``loss_and_grads(params, state, *batch) -> ((loss, new_state), grads)`` for a model that threads
    non-trained state (running statistics) through training. Start from ``(params,
    optimizer.init(params), state or None)``.
    """
    @jax.jit
    def step(carry, *batch):
        params, opt_state, state = carry
        if stateful:
            (loss, state), grads = loss_and_grads(params, state, *batch)
        else:
            loss, grads = loss_and_grads(params, *batch)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, state), loss
    return step


def train_modes(modes, make_step, carry0, n_epochs: int, n_batches: int, get_batch, before_step=None):
    """Train once per mode from ``carry0`` over the same batches; time every step.

    Args:
      modes: mode names, e.g. ``("explicit", "vjp", "auto")``.
      make_step: ``mode -> step``, a jitted ``step(carry, *batch) -> (carry, loss)``.
      carry0: the initial carry (parameters, optimiser state, running statistics...).
      n_epochs, n_batches: the loop's shape; the loss curve has one point (the mean) per epoch.
      get_batch: ``(epoch, b) -> tuple`` of step arguments; called identically for every mode.
      before_step: optional ``(mode, carry, batch) -> None``, called before each step, untimed
        (used to compare all modes' gradients at the same parameters).

    Returns:
      ``{mode: dict(carry, curve, step_ms, temp_bytes)}``: ``step_ms`` is the median wall time of a
      step without its first (compiling) call, ``temp_bytes`` the compiled step's
      ``temp_size_in_bytes``.
    """
    results = {}
    for mode in modes:
        step = make_step(mode)
        carry, step_times, curve = carry0, [], []
        for epoch in tqdm(range(n_epochs), desc=f"{mode:>8}", leave=False):
            epoch_loss = 0.0
            for b in range(n_batches):
                batch = get_batch(epoch, b)
                if before_step is not None:
                    before_step(mode, carry, batch)
                t0 = time.perf_counter()
                carry, loss = jax.block_until_ready(step(carry, *batch))
                step_times.append(time.perf_counter() - t0)
                epoch_loss += float(loss) / n_batches
            curve.append(epoch_loss)
        memory = step.lower(carry, *batch).compile().memory_analysis()
        results[mode] = dict(
            carry=carry, curve=curve,
            step_ms=1e3 * statistics.median(step_times[1:]),  # [1:]: skip the compiling call
            temp_bytes=getattr(memory, "temp_size_in_bytes", float("nan")))
    return results


# gradient agreement ---------------------------------------------------------------------------------
def max_abs_diff(a, b):
    """max |a - b| over all leaves of two pytrees of the same structure (a traced scalar)."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(u - v)) for u, v in zip(
        jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))]))


def pairwise_max_diffs(grads: dict, modes) -> dict:
    """``{(a, b): max |grads[a] - grads[b]|}`` for each pair of modes, in ``modes`` order."""
    return {(a, b): max_abs_diff(grads[a], grads[b]) for i, a in enumerate(modes) for b in modes[i + 1:]}


def update_worst(worst: dict, diffs: dict) -> None:
    """Keep, per pair, the largest difference seen so far (``worst`` is updated in place)."""
    for pair, d in diffs.items():
        worst[pair] = max(worst.get(pair, 0.0), float(d))


# reporting ------------------------------------------------------------------------------------------
def print_table(modes, results, worst_diff, metrics=(("test acc", "accuracy"),), baseline="auto"):
    """One row per mode: metrics (as %), max |grad diff| to the other modes, median step time, its
    ratio to ``baseline``'s, and the compiled step's temp memory."""
    base_ms = results[baseline]["step_ms"]
    print(f"\n{'mode':<9}" + "".join(f" {h:>9}" for h, _ in metrics)
          + f" {'max |grad diff| to others':>28} {'median step':>12} {'vs ' + baseline:>8} {'step temp mem':>14}")
    for m in modes:
        r = results[m]
        others = ", ".join(f"{o}:{worst_diff[tuple(sorted((m, o), key=list(modes).index))]:.1e}"
                           for o in modes if o != m)
        print(f"{m:<9}" + "".join(f" {100 * r[k]:8.2f}%" for _, k in metrics)
              + f" {others:>28} {r['step_ms']:9.3f} ms {r['step_ms'] / base_ms:7.2f}x {r['temp_bytes']:>11,} B")


def plot_panels(path, panels, what="loss curves", panel_size=(6, 4)):
    """Side-by-side line plots written to ``path`` (PNG).

    ``panels``: a list of dicts with ``series`` (a list of ``(label, xs or None, ys)``, optionally
    with a fourth item: ``Axes.plot`` keywords for that line alone), ``axes``
    (keywords for ``Axes.set``: title, xlabel, yscale...) and optionally ``plot`` (keywords for
    every ``Axes.plot`` of the panel, e.g. a marker) and ``legend`` (keywords for ``Axes.legend``).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(panel_size[0] * len(panels), panel_size[1]),
                             squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for (label, xs, ys, *own), style in zip(panel["series"], itertools.cycle(("-", "--", ":", "-."))):
            kwargs = {**panel.get("plot", {}), **(own[0] if own else {})}
            ax.plot(*((ys,) if xs is None else (xs, ys)), style, label=label, **kwargs)
        ax.set(**panel["axes"])
        ax.legend(**panel.get("legend", {}))
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"{what} written to {path}")


def plot_mode_curves(path, modes, results, title):
    """Each mode's per-epoch mean train loss (log scale), its test accuracy in the legend."""
    plot_panels(path, [dict(
        series=[(f"{m} ({100 * results[m]['accuracy']:.1f}% test)", None, results[m]["curve"]) for m in modes],
        axes=dict(xlabel="epoch", ylabel="mean train loss", yscale="log", title=title))])


def training_parser(doc: str, *, epochs: int, lr: float, weight_decay: float, out_name: str,
                    min_accuracy: float) -> argparse.ArgumentParser:
    """The command line every digits experiment shares; scripts add their own options to it."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--weight-decay", type=float, default=weight_decay)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("experiments", "out", out_name))
    parser.add_argument("--min-accuracy", type=float, default=min_accuracy,
                        help="exit non-zero if any mode ends below this test accuracy")
    return parser

