"""Why jaxback's hand-rule MLP steps (explicit, vjp) take longer than plain JAX's on XLA:CPU.

The optimized HLO side by side, the step with one piece swapped at a time, and where the thunks ran:

    python benchmarks/mlp_gap.py [--rounds 201] [--only hlo|time|threads]

The MLP and its step are ``train_steps.py``'s (``_peers.mlp_steps``: linear-relu-linear-relu-linear,
softmax cross-entropy on integer labels, SGD). Variants, each timed against plain JAX in the same round:

* ``jax + jb <piece>``: plain JAX's step with jaxback's hand rule for the linear layers, the relu or
  the loss in place of ``@`` / ``jax.nn.relu`` / the logsumexp loss;
* jaxback's ``explicit``, ``vjp`` and ``auto``;
* ``vjp, relu saves x``: a relu whose rule saves its input, as autodiff does (jaxback's saves y);
* ``vjp, no barrier``: ``saved_only``'s ``optimization_barrier`` off while the step is traced;
* ``vjp, loss bwd by scatter``: the loss's rule subtracting the one-hot by a scatter-add (autodiff's
  form) instead of a compare that XLA fuses;
* ``vjp + a label-only op``: the step also returns ``labels * 3``, an op that needs nothing else.

``ready at start`` in the HLO table counts the entry's ops whose operands are all parameters or
constants: the thunks XLA:CPU can start at once. ``--only threads`` profiles the steps
(``jax.profiler``, XLA's per-thunk trace events) and prints the share of thunk time spent on the
dispatching thread (``tf_XLAPjRtCpuClient``) rather than on XLA's pool (``tf_XLAEigen``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import glob
import os
import re
import statistics
import sys
import tempfile

if any(a.endswith("threads") for a in sys.argv[1:]):  # per-thunk trace events, before jax starts
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true"

import jax
import jax.numpy as jnp
from jax import lax

import jaxback as jb
import jaxback._layer
import jaxback._model
from jaxback import _losses
from jaxback._linear import LinearParams
from _bench import interleaved, table, temp_mb
import _peers
import train_steps

HLO_SIZES = (784, 1024, 1024, 10), 256
ROUNDS = 201
KINDS = ("fusion", "dot", "copy", "transpose", "reduce", "broadcast", "convert", "select", "scatter", "gather",
         "opt-barrier")
HLO_VARIANTS = ("jax", "auto", "vjp", "explicit", "vjp, no barrier", "vjp, loss bwd by scatter",
                "vjp + a label-only op")

relu_saving_x = jb.make_layer(jb.relu.auto, lambda x: (jb.relu.auto(x), x),
                              lambda x, y_bar: (jnp.where(x <= 0, 0.0, y_bar),), name="relu")

# One update per row i, at column labels[i] (none for a label outside [0, C)): autodiff's transpose
# of the loss's gather.
_ONE_PER_ROW = lax.ScatterDimensionNumbers(update_window_dims=(), inserted_window_dims=(1,),
                                           scatter_dims_to_operand_dims=(1,), operand_batching_dims=(0,),
                                           scatter_indices_batching_dims=(0,))


def _sce_bwd_by_scatter(res, loss_bar):
    logits, labels, lse = res
    probs = jnp.exp(logits - lse[:, None])
    minus_onehot = lax.scatter_add(probs, labels[:, None], jnp.full(labels.shape, -1, probs.dtype), _ONE_PER_ROW,
                                   unique_indices=True, mode=lax.GatherScatterMode.FILL_OR_DROP)
    return (loss_bar / max(labels.size, 1) * minus_onehot).astype(logits.dtype), None


sce_by_scatter = jb.make_layer(_losses.softmax_cross_entropy_auto, _losses.softmax_cross_entropy_fwd,
                               _sce_bwd_by_scatter, name="softmax_cross_entropy")


def _plain_sce(logits, labels):
    return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, labels[:, None], 1)[:, 0])


def _plain_step(linear=lambda w, b, h: h @ w + b, relu=jax.nn.relu, loss=_plain_sce):
    """``_peers``' plain-JAX MLP step with each piece replaceable."""
    def loss_fn(params, batch):
        h = batch[0]
        for w, b in params[:-1]:
            h = relu(linear(w, b, h))
        return loss(linear(*params[-1], h), batch[1])

    return _peers._jit_step(loss_fn)


def _jaxback_vjp(sizes, batch, relu=jb.relu, loss=jb.softmax_cross_entropy):
    layers = []
    for width in sizes[1:-1]:
        layers += [jb.linear.sized(width), relu]
    model = jb.serial(*layers, jb.linear.sized(sizes[-1]))
    params, _ = model.init(jax.random.PRNGKey(0), batch[0])
    return _peers._jaxback_steps(model, loss, params, batch)["vjp"]


@contextlib.contextmanager
def _no_barrier():
    """``saved_only`` (``jaxback._layer``) as the identity while a step is traced."""
    saved = jaxback._layer.saved_only
    jaxback._layer.saved_only = jaxback._model.saved_only = lambda res: res
    try:
        yield
    finally:
        jaxback._layer.saved_only = jaxback._model.saved_only = saved


def _wrapped(step_and_params, around):
    """A fresh jit of ``around(step's function, params, batch)``."""
    step, params = step_and_params
    return jax.jit(lambda params, batch: around(step.__wrapped__, params, batch)), params


def _without_barrier(step, params, batch):
    with _no_barrier():
        return step(params, batch)


def variants(sizes, batch):
    """``{name: (jitted step, params)}``, plain JAX's first."""
    steps = _peers.mlp_steps(sizes, batch)
    plain = steps["jax"][1]
    pieces = {"jax": {}, "jax + jb linear": {"linear": lambda w, b, h: jb.linear(LinearParams(w, b), h)},
              "jax + jb relu": {"relu": jb.relu}, "jax + jb loss": {"loss": jb.softmax_cross_entropy}}
    out = {name: (_plain_step(**kw), plain) for name, kw in pieces.items()}
    out.update({mode: steps[mode] for mode in jb.MODES})
    out["vjp, relu saves x"] = _jaxback_vjp(sizes, batch, relu=relu_saving_x)
    out["vjp, no barrier"] = _wrapped(steps["vjp"], _without_barrier)
    out["vjp, loss bwd by scatter"] = _jaxback_vjp(sizes, batch, loss=sce_by_scatter)
    out["vjp + a label-only op"] = _wrapped(steps["vjp"], lambda step, p, b: (step(p, b), b[1] * 3))
    return out


def _entry(jitted, *args) -> str:
    text = jitted.lower(*args).compile().as_text()
    return text[text.index("\nENTRY"):]


def op_counts(jitted, *args) -> collections.Counter:
    """Ops of the optimized HLO by kind, in every computation (inside fusions too); ``top fusion``,
    ``top dot``: at the entry level; ``ready at start``: entry ops whose operands are all
    parameters or constants."""
    text = jitted.lower(*args).compile().as_text()
    ops = collections.Counter(re.findall(r"^\s*(?:ROOT )?%\S+ = \S+ ([\w-]+)\(", text, re.M))
    entry = text[text.index("\nENTRY"):]
    inputs, ready = set(), 0
    for name, kind, operands in re.findall(r"^\s*(?:ROOT )?%(\S+) = \S+ ([\w-]+)\(([^)]*)\)", entry, re.M):
        if kind in ("parameter", "constant"):
            inputs.add(name)
        elif kind not in ("tuple", "bitcast") and set(re.findall(r"%([\w.-]+)", operands)) <= inputs:
            ready += 1
        ops[f"top {kind}"] += kind in ("fusion", "dot")
    ops["ready at start"] = ready
    return ops


def hlo_report() -> str:
    sizes, n = HLO_SIZES
    batch = _peers.mlp_batch(sizes, n)
    steps = {k: v for k, v in variants(sizes, batch).items() if k in HLO_VARIANTS}
    counts = {k: op_counts(s, p, batch) for k, (s, p) in steps.items()}
    kinds = ["ready at start", "top fusion", "top dot", *KINDS]
    rows = [[k] + [str(counts[k][kind]) for kind in kinds] + [f"{temp_mb(s, p, batch):.2f}"]
            for k, (s, p) in steps.items()]
    return (f"Optimized HLO of the MLP step {'-'.join(map(str, sizes))}, batch {n}: ops by kind in all "
            "computations (`top`: at the entry level), the entry's ops ready at the start, and the "
            "compiled temp MiB:\n\n" + table(["step", *kinds, "temp MiB"], rows))


def _deciles(values) -> tuple:
    """``(median, 10th percentile, 90th percentile)``."""
    q = statistics.quantiles(values, n=10)
    return statistics.median(values), q[0], q[-1]


def time_report(rounds) -> str:
    rows = []
    for name, (sizes, n) in train_steps.MLPS.items():
        batch = _peers.mlp_batch(sizes, n)
        steps = variants(sizes, batch)
        calls = {k: (lambda s=s, p=p, b=batch: jax.block_until_ready(s(p, b))) for k, (s, p) in steps.items()}
        times = interleaved(calls, rounds, 1)  # one call a round: the load changes slower than a step
        ratios = {k: _deciles([t / r for t, r in zip(ts, times["jax"])]) for k, ts in times.items()}
        rows.append([name, f"{statistics.median(times['jax']) * 1e3:.3f}"]
                    + [f"{r:.2f} ({lo:.2f}-{hi:.2f})" for k, (r, lo, hi) in ratios.items() if k != "jax"])
        print(f"done: {name}", flush=True)
    names = [k for k in steps if k != "jax"]
    return (f"Step time / plain JAX's in the same round: the median over {rounds} rounds of one call of each "
            "variant in a rotating order (10th-90th percentile of the ratios):\n\n"
            + table(["MLP", "plain JAX ms", *names], rows))


def _thunk_times(steps, batch, calls) -> dict:
    """``{step: {thread: [thunk ns per call]}}`` from ``calls`` profiled rounds of every step."""
    with tempfile.TemporaryDirectory() as where:
        with jax.profiler.trace(where):
            for _ in range(calls):
                for k, (s, p) in steps.items():
                    with jax.profiler.TraceAnnotation(f"step:{k}"):
                        jax.block_until_ready(s(p, batch))
        trace = jax.profiler.ProfileData.from_file(glob.glob(f"{where}/**/*.xplane.pb", recursive=True)[0])
    events = [(ev.start_ns, ev.end_ns, ev.name, line.name.split("/")[0])
              for plane in trace.planes for line in plane.lines for ev in line.events]
    thunks = [e for e in events if e[3].startswith("tf_XLA")
              and not re.match(r"ThreadpoolListener|ThunkExecutor|Slinky|end:|\$", e[2])]
    out = collections.defaultdict(lambda: collections.defaultdict(list))
    for start, end, name, _ in events:
        if name.startswith("step:"):
            per_thread = collections.Counter()
            for a, b, _, thread in thunks:
                if start <= a and b <= end:
                    per_thread[thread] += b - a
            for thread in ("tf_XLAPjRtCpuClient", "tf_XLAEigen"):
                out[name[5:]][thread].append(per_thread[thread])
    return out


def threads_report(calls=40) -> str:
    sizes, n = HLO_SIZES
    batch = _peers.mlp_batch(sizes, n)
    steps = {k: v for k, v in variants(sizes, batch).items() if k in HLO_VARIANTS}
    for s, p in steps.values():
        jax.block_until_ready(s(p, batch))
    rows = []
    for k, per in _thunk_times(steps, batch, calls).items():
        client, pool = (statistics.median(per[t]) for t in ("tf_XLAPjRtCpuClient", "tf_XLAEigen"))
        rows.append([k, f"{client / 1e6:.2f}", f"{pool / 1e6:.2f}", f"{client / max(client + pool, 1):.2f}"])
    return (f"Where the MLP step's thunks ran ({'-'.join(map(str, sizes))}, batch {n}; median over {calls} "
            "profiled steps each): ms of thunk time on the dispatching thread and on XLA's pool:\n\n"
            + table(["step", "dispatching thread ms", "pool ms", "share on the dispatching thread"], rows))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="timing rounds, one call of each variant a round")
    parser.add_argument("--only", choices=["all", "hlo", "time", "threads"], default="all")
    args = parser.parse_args(argv)
    if args.only in ("all", "hlo"):
        print(hlo_report(), "\n", flush=True)
    if args.only in ("all", "time"):
        print(time_report(args.rounds), "\n", flush=True)
    if args.only == "threads":
        print(threads_report())


if __name__ == "__main__":
    main()
