"""A small decoder-only transformer language model, trained in the three gradient modes.

    python experiments/transformer.py       # no arguments needed; a few minutes on 2 CPU cores

The text (``corpus``): the Python standard library's own source files, read as bytes from the
running interpreter's installation (no download; real text; split by file, one in ten for
validation). The model (``networks.transformer_lm``), one jaxback model with no glue:

    serial(embedding(256, D), position_embedding(T),
           depth x [residual(serial(layer_norm, attention(causal))),
                    residual(serial(layer_norm, linear(4D), gelu, linear(D)))],
           layer_norm, linear(256), reshape(-1, 256))  ->  softmax_cross_entropy of the next byte

Three gradient modes from the same initialisation over the same batches (``_common.model_gradients``):
explicit (``jb.backprop``: every layer's ``fwd``, then every ``bwd`` in reverse, the residuals'
``x_bar = y_bar + inner_x_bar`` included; no jax.grad), vjp (``jax.grad`` through the model) and
auto (``jax.grad`` through ``model.auto``). Optimiser: AdamW with a warmup-cosine schedule.

Printed per mode: validation loss (nats per byte) and perplexity, next to the unigram and bigram
byte models' perplexity on the same validation text; the largest |gradient difference| to the
other modes, all at the same parameters and batch, every ``--compare-every`` steps of the explicit
run; the median step time and its ratio to auto; the compiled step's temp memory.
"""

from __future__ import annotations

import argparse
import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxback as jb
import corpus
import networks
from _common import make_train_step, model_gradients, pairwise_max_diffs, plot_panels, train_modes, update_worst

MODES = ("explicit", "vjp", "auto")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64, help="model width D")
    parser.add_argument("--heads", type=int, default=4, help="attention heads")
    parser.add_argument("--depth", type=int, default=2, help="transformer blocks")
    parser.add_argument("--length", type=int, default=64, help="context length T (bytes)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--chunks", type=int, default=10, help="loss-curve points")
    parser.add_argument("--chunk", type=int, default=60, help="steps per loss-curve point")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--compare-every", type=int, default=20, help="steps between gradient comparisons")
    parser.add_argument("--valid-windows", type=int, default=256, help="validation windows of T bytes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("experiments", "out", "transformer_loss.png"))
    args = parser.parse_args(argv)

    train, valid, n_files = corpus.stdlib_bytes()
    unigram, bigram = corpus.ngram_perplexities(train, valid)
    steps = args.chunks * args.chunk
    rng = np.random.default_rng(args.seed)
    batch_starts = rng.integers(0, train.size - args.length - 1, (steps, args.batch_size))
    valid_x, valid_y = (jnp.asarray(a) for a in corpus.windows(
        valid, args.length, np.linspace(0, valid.size - args.length - 2, args.valid_windows).astype(int)))
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; text: {n_files} stdlib files, "
          f"{train.size:,} train / {valid.size:,} validation bytes; model D={args.width}, {args.heads} heads, "
          f"{args.depth} blocks, T={args.length}; {steps} AdamW steps, batch {args.batch_size}")

    model = networks.transformer_lm(corpus.VOCAB, args.width, args.heads, args.depth, args.length)
    loss = jb.softmax_cross_entropy
    params0, _ = model.init(jax.random.PRNGKey(args.seed), valid_x[:1])
    print(f"{sum(l.size for l in jax.tree_util.tree_leaves(params0)):,} parameters")
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, steps // 10, steps)
    optimizer = optax.adamw(schedule, weight_decay=args.weight_decay)

    def loss_and_grads(mode, params, x, y):
        (value, _), grads = model_gradients(model, loss, mode)(params, None, x, y.reshape(-1), None)
        return value, grads

    @jax.jit
    def grad_differences(params, x, y):
        return pairwise_max_diffs({m: loss_and_grads(m, params, x, y)[1] for m in MODES}, MODES)

    @jax.jit
    def valid_loss(params):
        return loss.auto(model.auto(params, valid_x), valid_y.reshape(-1))

    def get_batch(c, b):
        return tuple(jnp.asarray(a) for a in corpus.windows(train, args.length, batch_starts[c * args.chunk + b]))

    worst, step_count = {}, {"explicit": 0}

    def before_step(mode, carry, batch):
        if mode == "explicit":
            if step_count["explicit"] % args.compare_every == 0:
                update_worst(worst, grad_differences(carry[0], *batch))
            step_count["explicit"] += 1

    make_step = lambda mode: make_train_step(optimizer, functools.partial(loss_and_grads, mode))
    results = train_modes(MODES, make_step, (params0, optimizer.init(params0), None), args.chunks, args.chunk,
                          get_batch, before_step)
    base = results["auto"]["step_ms"]
    print(f"\nbaselines on the validation bytes: unigram perplexity {unigram:.2f}, bigram {bigram:.2f}\n")
    print("| mode | val loss (nats/byte) | val perplexity | max \\|grad diff\\| to others | median step | vs auto "
          "| compiled step temp |\n|---|---|---|---|---|---|---|")
    for m in MODES:
        r = results[m]
        r["val_loss"] = float(valid_loss(r["carry"][0]))
        others = ", ".join(f"{o} {worst[tuple(sorted((m, o), key=MODES.index))]:.1e}" for o in MODES if o != m)
        print(f"| {m} | {r['val_loss']:.4f} | {math.exp(r['val_loss']):.2f} | {others} | {r['step_ms']:.2f} ms "
              f"| {r['step_ms'] / base:.2f}x | {r['temp_bytes']:,} B |")
    xs = args.chunk * np.arange(1, args.chunks + 1)
    plot_panels(args.out, [dict(
        series=[(f"{m} (val ppl {math.exp(results[m]['val_loss']):.2f})", xs, results[m]["curve"]) for m in MODES]
        + [(f"bigram baseline (ppl {bigram:.2f})", xs, [math.log(bigram)] * len(xs), dict(color="grey"))],
        axes=dict(title="byte-level transformer LM on the Python stdlib", xlabel="step",
                  ylabel="mean train loss (nats/byte)"))])


if __name__ == "__main__":
    main()
