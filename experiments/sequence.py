"""Sequence models with hand rules vs autodiff: attention and an LSTM learn to copy; memory vs length.

    python experiments/sequence.py          # no arguments needed; about 2 minutes on 2 CPU cores

The task (``copy_task``): a row of K random symbols, a delimiter, then K blanks; after the delimiter
the model must output the K symbols again, in order. The answer is nowhere near its position in the
input, so the model needs memory: attention must look K+1 tokens back, the LSTM must carry the K
symbols in its state across the delimiter. The loss is the softmax cross-entropy of the K outputs
after the delimiter; accuracy is per symbol ("tok acc") and per whole row ("seq acc"), on 2000 fresh
rows.

Models (``networks``; sizes in ``main``), each one jaxback model with no glue:

* attention: ``serial(embedding, position_embedding, attention (causal, 4 heads), linear)``;
* lstm:      ``serial(parallel(embedding, identity), lstm, select, linear)``: the lstm takes the
  pair ``(xs, initial state)`` time-major, and ``select`` keeps its hidden states.

The loss (``networks.answer_loss``, a layer written for this task with its own hand rule) is the
cross-entropy of the last K positions; the others get an exact zero gradient.

Three gradient modes, from the same initialisation over the same batches:

* explicit: ``jb.backprop`` (each layer's ``fwd``, then each ``bwd`` in reverse; no jax.grad);
* vjp:      ``jax.grad`` through the model: JAX chains our hand rules;
* auto:     ``jax.grad`` through ``model.auto``: pure JAX autodiff.

Optimiser: Adam (lr 3e-3), the usual choice for attention and LSTMs. Explicit and vjp compute the
same gradients bit for bit, so their runs are identical; auto's trajectory drifts by rounding
(Adam magnifies differences in near-zero gradient entries), so the printed gradient difference is
measured with all gradients at the same parameters and batch, every step of the explicit run.
Table columns as in ``digits.py``; a loss-curve PNG per model.

Then a memory sweep: for attention (N=2, D=64, 4 heads) and the LSTM (N=8, D=32, H=64) over
sequence lengths T, the bytes the VJP keeps between forward and backward (``residual_bytes``, inputs
held by reference included) and the temp bytes of the jitted gradient (``compiled_temp_bytes``),
hand vs auto, the growth exponent between the two largest T, and the residual bytes per extra step
next to what the hand rule's docstring says it saves. PNGs go to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import functools
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxback as jb
from jaxback.testing.memory import compiled_temp_bytes, residual_bytes
import networks
from _common import make_train_step, model_gradients, pairwise_max_diffs, plot_panels, print_table, train_modes, update_worst

MODES = ("explicit", "vjp", "auto")
BLANK, DELIM, FIRST_SYMBOL = 0, 1, 2
METRICS = (("tok acc", "tok_acc"), ("seq acc", "seq_acc"))


# the task ------------------------------------------------------------------------------------------
def copy_task(rng, n: int, k: int, symbols: int):
    """``(inputs (n, 2k+1), targets (n, k))`` int32: ``[a_1..a_k, DELIM, BLANK x k]`` -> ``a_1..a_k``."""
    targets = rng.integers(FIRST_SYMBOL, FIRST_SYMBOL + symbols, (n, k))
    inputs = np.concatenate([targets, np.full((n, 1), DELIM), np.full((n, k), BLANK)], axis=1)
    return jnp.asarray(inputs, jnp.int32), jnp.asarray(targets, jnp.int32)


# the models (``networks``) and how each is fed ---------------------------------------------------
class Task(NamedTuple):
    """A model, its loss, ``feed(inputs) -> x`` (the model's input for a batch of rows) and whether
    its logits are time-major (T, N, V)."""

    model: jb.Model
    loss: jb.Layer
    feed: Callable
    time_major: bool = False


def attention_task(vocab, length, width, heads):
    return Task(networks.attention_copier(vocab, width, heads, length), networks.answer_loss, lambda ids: ids)


def lstm_task(vocab, width, hidden):
    """Time-major: the lstm takes ``(xs (T, N, D), initial state)``; its logits are (T, N, V)."""
    return Task(networks.lstm_copier(vocab, width, hidden), jb.bind(networks.answer_loss, time_major=True),
                lambda ids: (ids.T, jb.lstm_state(ids.shape[0], hidden)), time_major=True)


# training: the shared per-mode loop ----------------------------------------------------------------
def loss_and_grads(task, mode, params, inputs, targets):
    (loss, _), grads = model_gradients(task.model, task.loss, mode)(params, None, task.feed(inputs), targets, None)
    return loss, grads


def train_model(name, task, params0, args, test):
    """Train ``task`` in every mode on the same batches, print the table; returns the results."""
    optimizer = optax.adam(args.lr)
    rng = np.random.default_rng(args.seed)
    batches = [copy_task(rng, args.batch_size, args.k, args.symbols) for _ in range(args.chunks * args.chunk)]

    make_step = lambda mode: make_train_step(optimizer, functools.partial(loss_and_grads, task, mode))

    @jax.jit
    def grad_differences(params, inputs, targets):
        grads = {m: loss_and_grads(task, m, params, inputs, targets)[1] for m in MODES}
        return pairwise_max_diffs(grads, MODES)

    worst_diff = {}

    def before_step(mode, carry, batch):
        if mode == "explicit":  # all gradients at the same parameters, along the explicit run
            update_worst(worst_diff, grad_differences(carry[0], *batch))

    @jax.jit
    def accuracies(params, inputs, targets):
        logits = task.model.auto(params, task.feed(inputs))
        answers = networks.answers(logits, targets.shape[1], task.time_major)
        hit = jnp.argmax(answers, -1) == targets
        return jnp.mean(hit), jnp.mean(jnp.all(hit, axis=1))

    print(f"\n{name}: copy K={args.k} of {args.symbols} symbols (T={2 * args.k + 1}), batch {args.batch_size}, "
          f"{args.chunks * args.chunk} Adam steps, lr {args.lr}")
    results = train_modes(MODES, make_step, (params0, optimizer.init(params0), None), args.chunks, args.chunk,
                          lambda c, b: batches[c * args.chunk + b], before_step)
    for r in results.values():
        r["tok_acc"], r["seq_acc"] = (float(a) for a in accuracies(r["carry"][0], *test))
    print_table(MODES, results, worst_diff, metrics=METRICS)
    return results


# the memory sweep ----------------------------------------------------------------------------------
ATT = dict(n=2, width=64, heads=4)     # attention sweep sizes
LSTM = dict(n=8, width=32, hidden=64)  # lstm sweep sizes
GUIDE = dict(color="grey", linewidth=1, marker=None)


def attention_memory(t, n, width, heads, seed=0):
    k_p, k_x, k_y = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = jb.attention.init(k_p, width)
    x = jax.random.normal(k_x, (n, t, width))
    y_bar = jax.random.normal(k_y, (n, t, width))
    fns = {"hand": lambda p, x: jb.attention(p, x, num_heads=heads),
           "auto": lambda p, x: jb.attention.auto(p, x, num_heads=heads)}
    return _measure(fns, (params, x), y_bar)


def lstm_memory(t, n, width, hidden, seed=0):
    k_p, k_x, k_y, k_h, k_c = jax.random.split(jax.random.PRNGKey(seed), 5)
    params = jb.lstm.init(k_p, width, hidden)
    xs = jax.random.normal(k_x, (t, n, width))
    state = jb.lstm_state(n, hidden)
    y_bar = (jax.random.normal(k_y, (t, n, hidden)),
             type(state)(jax.random.normal(k_h, (n, hidden)), jax.random.normal(k_c, (n, hidden))))
    return _measure({"hand": jb.lstm.apply, "auto": jb.lstm.auto}, (params, xs, state), y_bar)


def _measure(fns, args, y_bar):
    out = {}
    for how, fn in fns.items():
        out[f"res_{how}"] = residual_bytes(fn, *args)
        out[f"temp_{how}"] = compiled_temp_bytes(fn, args, y_bar)
    return out


SIZE_NAMES = {"n": "N", "width": "D", "hidden": "H", "heads": "heads"}


def memory_sweep(name, measure, lengths, sizes, hand_per_step, linear=("res_hand",)):
    """Measure, print the table, the growth exponents and the residual bytes per extra step.

    ``hand_per_step``: ``(formula, bytes)``, what the hand rule's docstring says it saves per step;
    ``linear``: the residual series that grow linearly in T, whose bytes per step are printed.
    """
    rows = {t: measure(t, **sizes) for t in lengths}
    shape = ", ".join(f"{SIZE_NAMES[k]}={v}" for k, v in sizes.items())
    print(f"\n{name} memory ({shape}, float32): bytes the VJP keeps between forward and backward "
          f"(residual) and temp bytes of the compiled jit(grad) (temp)")
    print(f"{'T':>6} {'residual hand':>15} {'residual auto':>15} {'auto/hand':>9} "
          f"{'temp hand':>13} {'temp auto':>13} {'auto/hand':>9}")
    for t, r in rows.items():
        print(f"{t:>6} {r['res_hand']:>15,} {r['res_auto']:>15,} {r['res_auto'] / r['res_hand']:8.1f}x "
              f"{r['temp_hand']:>13,} {r['temp_auto']:>13,} {r['temp_auto'] / r['temp_hand']:8.1f}x")
    ts = np.array(lengths, float)
    series = {key: np.array([rows[t][key] for t in lengths], float)
              for key in ("res_hand", "res_auto", "temp_hand", "temp_auto")}
    top = lambda v: np.log(v[-1] / v[-2]) / np.log(ts[-1] / ts[-2])
    print(f"growth exponent p (bytes ~ T^p between T={lengths[-2]} and {lengths[-1]}): "
          + ", ".join(f"{k} {top(v):.2f}" for k, v in series.items()))
    per_step = {k: (v[-1] - v[0]) / (ts[-1] - ts[0]) for k, v in series.items() if k in linear}
    print(f"residual bytes per extra step (T={lengths[0]} to {lengths[-1]}): "
          + ", ".join(f"{k} {v:,.0f}" for k, v in per_step.items())
          + f"; hand rule's stated residuals {hand_per_step[0]} = {hand_per_step[1]:,}")
    return ts, series


def memory_panel(title, ts, series, guides):
    labels = {"res_hand": "residuals, hand rule", "res_auto": "residuals, autodiff",
              "temp_hand": "jit(grad) temp, hand rule", "temp_auto": "jit(grad) temp, autodiff"}
    return dict(series=[(labels[k], ts, v) for k, v in series.items()] + [(*g, GUIDE) for g in guides],
                axes=dict(title=title, xlabel="sequence length T", ylabel="bytes", xscale="log", yscale="log"),
                plot=dict(marker="o"), legend=dict(fontsize=7))


def memory_sweeps(path):
    n, d, h = ATT["n"], ATT["width"], ATT["heads"]
    att_ts, att = memory_sweep("attention", attention_memory, [64, 128, 256, 512, 1024], ATT,
                               ("(5*N*D + 2*N*heads)*4 B (x, q, k, v, o, m, lse)", (5 * n * d + 2 * n * h) * 4))
    n_l, d_l, h_l = LSTM["n"], LSTM["width"], LSTM["hidden"]
    lstm_ts, lst = memory_sweep("lstm", lstm_memory, [32, 64, 128, 256], LSTM,
                                ("(D + 2*H)*N*4 B (xs, hs, cs)", (d_l + 2 * h_l) * n_l * 4),
                                linear=("res_hand", "res_auto"))
    plot_panels(path, [
        memory_panel(f"attention, N={n}, D={d}, {h} heads", att_ts, att,
                     [("guide: one P, N*heads*T*T*4 B", att_ts, n * h * att_ts ** 2 * 4),
                      ("guide: one activation, N*T*D*4 B", att_ts, n * att_ts * d * 4)]),
        memory_panel(f"lstm, N={n_l}, D={d_l}, H={h_l}", lstm_ts, lst,
                     [("guide: one (T, N, H) array, T*N*H*4 B", lstm_ts, lstm_ts * n_l * h_l * 4)]),
    ], what="memory sweep")


# main ----------------------------------------------------------------------------------------------
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=6, help="symbols to copy")
    parser.add_argument("--symbols", type=int, default=8, help="alphabet size (plus blank and delimiter)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--chunks", type=int, default=20, help="loss-curve points")
    parser.add_argument("--chunk", type=int, default=50, help="steps per loss-curve point")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--out-dir", default=os.path.join("experiments", "out"))
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}")
    vocab, length = args.symbols + FIRST_SYMBOL, 2 * args.k + 1
    if not args.skip_training:
        test = copy_task(np.random.default_rng(args.seed + 1), 2000, args.k, args.symbols)
        key_a, key_l = jax.random.split(jax.random.PRNGKey(args.seed))
        width, heads, hidden = 64, 4, 128
        tasks = {f"attention (D={width}, {heads} heads, causal)": (attention_task(vocab, length, width, heads), key_a),
                 f"lstm (embedding {width}, H={hidden})": (lstm_task(vocab, width, hidden), key_l)}
        panels = []
        for name, (task, key) in tasks.items():
            params0, _ = task.model.init(key, task.feed(test[0][:1]))
            results = train_model(name, task, params0, args, test)
            steps = args.chunk * np.arange(1, args.chunks + 1)
            panels.append(dict(
                series=[(f"{m} ({100 * results[m]['seq_acc']:.1f}% rows)", steps, results[m]["curve"])
                        for m in MODES],
                axes=dict(title=f"copy: {name}", xlabel="step", ylabel="mean train loss", yscale="log")))
        plot_panels(os.path.join(args.out_dir, "sequence_loss.png"), panels)
    if not args.skip_memory:
        memory_sweeps(os.path.join(args.out_dir, "sequence_memory.png"))

if __name__ == "__main__":
    main()
