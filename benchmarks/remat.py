"""Rematerialisation: step memory against step time, ``jb.remat`` on the blocks or not.

    python benchmarks/remat.py [--rounds 5] [--reps 3] [--depths 1,2,4,8] [--only models|sweep]

Networks: the experiments' digits CNN (three conv-bn-relu blocks) and transformer LM (pre-LN blocks
of an attention and an MLP sublayer, width 64, 4 heads), built from the experiments' own sublayers
(``experiments/models.py``) on the trainer's shapes (batch 32, 8x8 images; context 64, 256 bytes),
with ``jb.remat`` around each block or not. Each variant is a jitted training step (gradients in
one mode, then SGD). Memory: the compiled temp of that step (``memory_analysis()``). Time: the
median over interleaved rounds, and the median per-round ratio to plain ``auto`` (autodiff without
remat). ``auto`` with remat is the fair twin: ``jax.checkpoint`` of the same blocks' ``auto``.
The sweep: the LM's compiled temp at each depth, and its growth per block (a least-squares slope)
against the size of one block input.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxback as jb
from _bench import block, interleaved, ratio_summary, table, temp_mb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments"))
import models  # noqa: E402  (experiments/models.py: the sublayers the experiments train)

# before and after networks.py was merged into models.py: the conv-bn-relu triple's two names
CONV_BN_RELU = getattr(models, "conv_bn_relu_layers", None) or models.conv_bn_relu
LR = 0.05
VARIANTS = [(remat, mode) for remat in (False, True) for mode in jb.MODES]


def _remat_if(on):
    return (lambda *layers: (jb.remat(jb.serial(*layers)),)) if on else (lambda *layers: layers)


def cnn(remat: bool):
    """models.cnn(size="small"), each conv-bn-relu block under remat or not."""
    wrap = _remat_if(remat)
    return jb.serial(*wrap(*CONV_BN_RELU(32)), *wrap(*CONV_BN_RELU(32)), jb.max_pool2d, *wrap(*CONV_BN_RELU(64)),
                     jb.max_pool2d, jb.flatten, jb.bind(jb.dropout, rate=0.25), jb.linear.sized(10))


def lm(remat: bool, depth: int = 2, vocab: int = 256, context: int = 64, width: int = 64, heads: int = 4):
    """models.transformer(size="small") at ``depth`` blocks, each block under remat or not."""
    wrap = _remat_if(remat)
    blocks = [b for _ in range(depth) for b in wrap(models.attention_sublayer(heads), models.mlp_sublayer(width))]
    return jb.serial(jb.parallel(jb.embedding.sized(vocab, width), jb.embedding.sized(context, width)), jb.fan_in_sum,
                     *blocks, jb.layer_norm, jb.linear.sized(vocab), jb.bind(jb.reshape, shape=(-1, vocab)))


def cnn_batch(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((n, 8, 8, 1)), jnp.float32), jnp.asarray(rng.integers(0, 10, n), jnp.int32))


def lm_batch(n=32, context=64, vocab=256, seed=0):
    rng = np.random.default_rng(seed)
    ids = jnp.asarray(rng.integers(0, vocab, (n, context)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(context, dtype=jnp.int32), (n, context))
    return (ids, positions), jnp.asarray(rng.integers(0, vocab, n * context), jnp.int32)


def step_of(model, mode, batch):
    """``(jitted step, args)``: ``step(params, state, x, target) -> (loss, params, state)``."""
    params, state = model.init(jax.random.PRNGKey(0), batch[0])
    grads_of = jb.value_and_grad(model, jb.softmax_cross_entropy, mode=mode)
    key = jax.random.PRNGKey(1)  # a fixed dropout key: every call does the same work

    def step(params, state, x, target):
        out, grads = grads_of(params, x, target, key=key, **({"state": state} if model.has_state else {}))
        (value, state) = out if model.has_state else (out, state)
        return value, jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads), state

    return jax.jit(step), (params, state, *batch)


def compare(name, build, batch, rounds, reps):
    """One table row per (remat, mode): temp, its ratios to plain auto and to remat auto, time."""
    steps = {v: step_of(build(v[0]), v[1], batch) for v in VARIANTS}
    temps = {v: temp_mb(f, *args) for v, (f, args) in steps.items()}
    label = lambda v: f"{'remat' if v[0] else 'plain'} {v[1]}"
    times = interleaved({label(v): (lambda f=f, a=args: block(f(*a))) for v, (f, args) in steps.items()}, rounds, reps)
    summary = ratio_summary(times, "plain auto")
    rows = []
    for v in VARIANTS:
        median, ratio, low, high = summary[label(v)]
        rows.append([name, label(v), f"{temps[v]:.2f}", f"{temps[v] / temps[(False, 'auto')]:.2f}",
                     f"{temps[v] / temps[(True, 'auto')]:.2f}", f"{median * 1e3:.2f}", f"{ratio:.2f} ({low:.2f}-{high:.2f})"])
    return rows


def sweep(depths):
    """LM compiled temp per depth, and the growth per block (MiB) by least squares."""
    batch = lm_batch()
    temps = {}
    for d in depths:
        for v in VARIANTS:
            f, args = step_of(lm(v[0], depth=d), v[1], batch)
            temps[(d, v)] = temp_mb(f, *args)
    block_input = 32 * 64 * 64 * 4 / 2**20
    rows = []
    for v in VARIANTS:
        ys = [temps[(d, v)] for d in depths]
        slope = np.polyfit(depths, ys, 1)[0] if len(depths) > 1 else float("nan")
        rows.append([f"{'remat' if v[0] else 'plain'} {v[1]}", *(f"{y:.2f}" for y in ys), f"{slope:.2f}",
                     f"{slope / block_input:.1f}"])
    header = ["LM step", *(f"depth {d}" for d in depths), "MiB per block", "block inputs per block"]
    return table(header, rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--depths", default="1,2,4,8")
    parser.add_argument("--only", choices=("models", "sweep"))
    args = parser.parse_args()
    if args.only != "sweep":
        rows = compare("digits CNN b32", cnn, cnn_batch(), args.rounds, args.reps)
        rows += compare("transformer LM b32 T64", lm, lm_batch(), args.rounds, args.reps)
        header = ["network", "variant", "temp MiB", "/ plain auto", "/ remat auto", "ms", "time / plain auto"]
        print(table(header, rows), end="\n\n")
    if args.only != "models":
        print(sweep([int(d) for d in args.depths.split(",")]))


if __name__ == "__main__":
    main()
