"""Training-step time, compiled temp memory and compile time: jaxback's three modes against the peers.

    python benchmarks/train_steps.py [--rounds 7] [--only mlp|block|models] [--big]

One process; every variant of a network runs once per round, in a rotating order, and each ratio is
taken within a round (variant / reference in the same round), then the median over rounds is printed
with its range. The reference is plain JAX where the network has a plain-JAX twin (the MLPs and the
block) and jaxback's ``auto`` for the experiments' CNN and transformer LM (``benchmarks/_models.py``).
Variants: ``jax`` (plain JAX autodiff), jaxback ``explicit``
(``jb.backprop``: no jax.grad), ``vjp`` (``jax.grad`` through the hand rules), ``auto`` (autodiff of the
same forward), and, when installed (``pip install -e '.[bench]'``; PyTorch on its own, see the README),
``equinox``, ``flax`` and ``torch`` (CPU, 2 threads). Networks: ``benchmarks/_peers.py`` and ``benchmarks/_models.py``. ``--big`` adds
the transformer block at T=1024.
"""

from __future__ import annotations

import argparse
import time

import jax

from _bench import compile_seconds, interleaved, ratio_summary, table, temp_mb
import _models
import _peers

MLPS = {"MLP b128 64-256-256-10": ((64, 256, 256, 10), 128),
        "MLP b256 256-512-512-10": ((256, 512, 512, 10), 256),
        "MLP b256 784-1024-1024-10": ((784, 1024, 1024, 10), 256)}
BLOCKS = {"pre-LN block N=8 T=128 D=128": (8, 128, 128), "pre-LN block N=8 T=512 D=128": (8, 512, 128)}
ORDER = ["explicit", "vjp", "auto", "equinox", "flax", "torch"]


MODELS = {"digits CNN b32 (experiments/models.py cnn)": _models.cnn_case,
          "transformer LM b32 T=64 D=64 2 blocks (models.py transformer)": _models.lm_case}


def _cases(only, big):
    """``(name, build, batch)``: ``build()`` returns ``{variant: (jitted step, params)}``, so each
    network's steps are traced only when its turn comes."""
    blocks = dict(BLOCKS, **({"pre-LN block N=8 T=1024 D=128": (8, 1024, 128)} if big else {}))
    if only in ("all", "mlp"):
        for name, (sizes, n) in MLPS.items():
            batch = _peers.mlp_batch(sizes, n)
            yield name, lambda sizes=sizes, batch=batch: _peers.mlp_steps(sizes, batch), batch
    if only in ("all", "block"):
        for name, shape in blocks.items():
            batch = _peers.block_batch(*shape)
            yield name, lambda batch=batch: _peers.block_steps(batch), batch
    if only in ("all", "models"):
        for name, case in MODELS.items():
            model, batch = case()
            yield name, lambda model=model, batch=batch: _models.model_steps(model, batch), batch


def _callers(steps, batch):
    """{variant: fn()} that runs one step and waits for it (a jitted step keeps its params: the same
    work each call)."""
    calls = {}
    for name, (step, params) in steps.items():
        if name == "torch":
            tb = _peers.torch_batch(batch)
            calls[name] = lambda step=step, params=params, tb=tb: step(params, tb)
        else:
            calls[name] = lambda step=step, params=params: jax.block_until_ready(step(params, batch))
    return calls


def _reps(fn, budget=0.2):
    """Calls per round, so that a variant's round lasts about ``budget`` seconds: a 2 ms step timed
    once per round is mostly timer and scheduler noise. Timed after one warm-up call (which compiles)."""
    fn()
    start = time.perf_counter()
    fn()
    return max(1, int(budget / max(time.perf_counter() - start, 1e-6)))


def run(only="all", rounds=7, big=False):
    time_rows, memory_rows = [], []
    for name, build, batch in _cases(only, big):
        steps = build()
        reference = "jax" if "jax" in steps else "auto"
        calls = _callers(steps, batch)
        reps = _reps(calls[reference])
        summary = ratio_summary(interleaved(calls, rounds, reps), reference)
        cells = [f"{summary[v][1]:.2f} ({summary[v][2]:.2f}-{summary[v][3]:.2f})" if v in summary else ""
                 for v in ORDER]
        time_rows.append([name, f"{summary[reference][0] * 1e3:.3f} ({'plain JAX' if reference == 'jax' else 'auto'})"]
                         + cells)
        jaxed = [v for v in ["jax"] + ORDER if v in steps and v != "torch"]
        temps = {v: temp_mb(steps[v][0], steps[v][1], batch) for v in jaxed}
        compiles = {v: compile_seconds(getattr(steps[v][0], "__wrapped__", steps[v][0]), steps[v][1], batch)
                    for v in ("jax", "explicit", "vjp", "auto") if v in steps}
        memory_rows.append([name] + [f"{temps[v]:.2f}" if v in temps else "" for v in ["jax"] + ORDER[:5]]
                           + [f"{temps['explicit'] / temps['auto']:.2f}", f"{temps['vjp'] / temps['auto']:.2f}"]
                           + [f"{compiles[v]:.2f}" if v in compiles else "" for v in ("jax", "explicit", "vjp", "auto")])
        print(f"done: {name}", flush=True)
    return time_rows, memory_rows


PEERS = ("equinox", "flax", "torch")  # their versions go in the tables' headers when installed


def report(time_rows, memory_rows, rounds):
    out = ["Training step (loss, gradients, SGD update), float32; "
           f"median of {rounds} interleaved rounds of each variant's time / the reference's in the same round "
           "(min-max over rounds); the reference's median in ms: plain JAX, or jaxback auto for the two "
           "experiment models, which have no plain-JAX or peer twin here. An empty cell: that peer is not "
           "installed.", "",
           table(["training step", "reference ms", "jaxback explicit", "jaxback vjp", "jaxback auto", "equinox",
                  "flax linen", "PyTorch 2 threads"], time_rows, PEERS), "",
           "Compiled temp memory of each jitted step (MiB; `memory_analysis().temp_size_in_bytes`), the "
           "hand modes' ratio to jaxback's own autodiff twin, and the wall seconds to trace and compile each "
           "step (one fresh `jax.jit` each):", "",
           table(["training step", "plain JAX", "explicit", "vjp", "auto", "equinox", "flax", "explicit/auto",
                  "vjp/auto", "compile s: JAX", "explicit", "vjp", "auto"], memory_rows, PEERS)]
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", choices=["all", "mlp", "block", "models"], default="all")
    parser.add_argument("--big", action="store_true", help="add the transformer block at T=1024")
    args = parser.parse_args(argv)
    print(report(*run(args.only, args.rounds, args.big), args.rounds))


if __name__ == "__main__":
    main()
