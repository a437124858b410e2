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

import jax
import numpy as np

import jaxback as jb
from _bench import block, interleaved, ratio_summary, table, temp_mb

from _models import cnn_case, lm_case  # the experiments' cnn and lm presets' networks

LR = 0.05
VARIANTS = [(remat, mode) for remat in (False, True) for mode in jb.MODES]


def cnn(remat: bool):
    """The cnn preset's network (size small), each conv-bn-relu block under remat or not."""
    return cnn_case(remat=remat)[0].model


def lm(remat: bool, depth: int = 2):
    """The lm preset's network (size small) at ``depth`` blocks, each block under remat or not."""
    return lm_case(remat=remat, depth=depth)[0].model


def cnn_batch():
    return cnn_case()[1]


def lm_batch():
    return lm_case()[1]


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


def report(rounds: int = 5, reps: int = 3, depths=(1, 2, 4, 8)) -> str:
    """Both tables (markdown): the two networks remat on/off x mode, then the LM depth sweep."""
    rows = compare("digits CNN b32", cnn, cnn_batch(), rounds, reps)
    rows += compare("transformer LM b32 T64", lm, lm_batch(), rounds, reps)
    header = ["network", "variant", "temp MiB", "/ plain auto", "/ remat auto", "ms", "time / plain auto"]
    return table(header, rows) + "\n\n" + sweep(list(depths))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--depths", default="1,2,4,8")
    args = parser.parse_args()
    print(report(args.rounds, args.reps, [int(d) for d in args.depths.split(",")]))


if __name__ == "__main__":
    main()
