"""Regenerate the measured docs pages. Each table is written by the script that measures it, headed
by one ``measured on`` line (machine, versions, date); a rerun replaces the page (history is git's).

    python benchmarks/report.py memory                    # docs/memory.md: compiles only, about a minute
    python benchmarks/report.py benchmarks [--rounds 7]   # docs/benchmarks.md: timings, on a quiet machine
    python benchmarks/report.py rule_cost [--rounds 7]    # docs/rule_cost.md: forward mode's cost to the VJP

``memory`` runs ``memory_audit.py``; ``benchmarks`` runs ``train_steps.py``, ``mlp_gap.py``,
``attention_scaling.py`` (and its PNG), ``kernels.py``, ``remat.py`` and ``matmul.py`` at their default sizes.
"""

from __future__ import annotations

import argparse
import os

import attention_scaling
import hand_rule_cost
import kernels
import matmul
import memory_audit
import mlp_gap
import remat
import sequence_memory
import train_steps
from _bench import write_page

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs")
FIGURE = "figures/attention_scaling.png"  # relative to docs/

MEMORY_INTRO = """\
What a hand rule saves against autodiff of the same forward (`layer.auto`), per layer, before and
after `jit`. The training steps' compiled memory is on the [benchmarks page](benchmarks.md)."""

BENCHMARKS_INTRO = """\
Each script measures in one process, every variant once per round in a rotating order, and prints
the median over rounds of variant / reference *in the same round* with its range, so load from
other processes hits all variants alike. Timings are only as good as the machine was quiet. The
peers (equinox, flax) come with `pip install -e '.[bench]'`; PyTorch is a column when installed
(`pip install torch`, a CPU build). Each section's script also runs alone and prints its tables."""


MLP_GAP_INTRO = """\
Why explicit and vjp take longer than plain JAX on the two larger MLPs (XLA:CPU). Their optimized HLO
has the same 8 matmuls, no copy, transpose or barrier (`saved_only`'s compiles away: the program is
the same without it), fewer fusions and a third less temp. What differs is how the program starts:
plain JAX's and auto's loss backward scatter-adds into the logits' gradient, and the scatter's index
fusions need only the labels, so XLA:CPU has 3-4 thunks ready at the start and hands them to its
pool; jaxback's loss rule subtracts a fused one-hot instead, the first matmul is the only ready
thunk, and XLA:CPU runs it and the serial forward after it on the dispatching thread
(`python benchmarks/mlp_gap.py --only threads`: 45% of the hand modes' thunk time, none of plain
JAX's), where the same matmuls take longer (that thread and the pool's two share 2 cores). Any op
that needs only the inputs closes the gap: a scatter in the loss's rule (`vjp, loss bwd by scatter`)
or a label-only output (`vjp + a label-only op`). The scatter's updates are one more (N,) float
vector: 8 KiB more compiled temp than autodiff's in the loss's own jitted VJP at (2048, 8192) when the
loss value is dropped, which the memory claim (`tests/test_memory.py`) does not allow, so the rule
keeps its one-hot. The relu's residual (y, not x), the linear layer and the barrier are not the
cause (their columns are at 1.00 or match vjp)."""


def memory_page(args) -> str:
    return write_page(os.path.join(DOCS, "memory.md"), "Memory: what a hand rule saves, and what survives `jit`",
                      "python benchmarks/report.py memory",
                      [MEMORY_INTRO, memory_audit.report(memory_audit.run()),
                       "## Sequence models: memory against length\n\n`python benchmarks/sequence_memory.py`: "
                       + sequence_memory.run(sequence_memory.ATTENTION_LENGTHS, sequence_memory.LSTM_LENGTHS)])


def benchmarks_page(args) -> str:
    steps = train_steps.report(*train_steps.run("all", args.rounds), args.rounds)
    memory, timing = attention_scaling.run(8192, 2048, args.rounds)
    attention_scaling.plot(memory, os.path.join(DOCS, FIGURE))
    sections = [BENCHMARKS_INTRO,
                "## Training steps\n\n`python benchmarks/train_steps.py`: " + steps,
                "## MLPs: the hand modes against plain JAX\n\n`python benchmarks/mlp_gap.py`: " + MLP_GAP_INTRO
                + "\n\n" + mlp_gap.hlo_report() + "\n\n" + mlp_gap.time_report(mlp_gap.ROUNDS),
                "## Attention alone\n\n`python benchmarks/attention_scaling.py`: "
                + attention_scaling.report(memory, timing, args.rounds)
                + f"\n\n![compiled temp memory of attention's gradient against T]({FIGURE})",
                "## Two choices inside the rules\n\n`python benchmarks/kernels.py`: " + kernels.report(args.rounds),
                "## Rematerialisation: `jb.remat` on the blocks\n\n`python benchmarks/remat.py`: the cnn and lm "
                "presets' training steps with every block under `jb.remat` or not, in the three modes (auto's "
                "remat is `jax.checkpoint`), then the LM's step memory against its depth.\n\n"
                + remat.report(args.rounds),
                "## This machine's matmul rate\n\n`python benchmarks/matmul.py`: " + matmul.report(2048, args.rounds)]
    return write_page(os.path.join(DOCS, "benchmarks.md"), "Benchmarks: time, compiled memory, compile time",
                      f"python benchmarks/report.py benchmarks --rounds {args.rounds}", sections)


def rule_cost_page(args) -> str:
    return write_page(os.path.join(DOCS, "rule_cost.md"), "Forward mode's cost: one primitive with both hand rules",
                      f"python benchmarks/report.py rule_cost --rounds {args.rounds}",
                      [hand_rule_cost.__doc__.split("\n\n", 2)[2].strip(),
                       hand_rule_cost.report(hand_rule_cost.run(args.rounds), args.rounds)])


PAGES = {"memory": memory_page, "benchmarks": benchmarks_page, "rule_cost": rule_cost_page}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", choices=sorted(PAGES))
    parser.add_argument("--rounds", type=int, default=7, help="timing rounds (benchmarks page). Default: 7.")
    args = parser.parse_args(argv)
    print(PAGES[args.page](args))


if __name__ == "__main__":
    main()
