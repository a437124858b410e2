"""What forward mode costs the backward: each layer's hand-rule primitive against a plain custom_vjp.

    python benchmarks/hand_rule_cost.py [--rounds 7]

A layer with a hand JVP is one ``jax.experimental.hijax`` primitive carrying both rules
(``jaxback/_hand_rule.py``); before forward mode it was a ``jax.custom_vjp`` of the same ``fwd`` and
``bwd``. For every registry entry with a ``bench_shape``, in one run, float32:

* the reverse mode (what ``jax.grad`` and a training step use): the jitted VJP's compiled temp and
  its time, the primitive against ``make_layer(auto, fwd, bwd)`` without ``jvp=`` (today's rule);
* the forward mode: the jitted JVP by the hand rule against JAX autodiff's JVP of ``layer.auto``.

Times are medians over rounds of the per-round ratio (``_bench.interleaved``), so load from other
processes hits both sides alike.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from _bench import interleaved, ratio_summary, table
from jaxback._layer import make_layer
from jaxback.testing import builtin_registry, random_cotangent, random_tangent
from jaxback.testing._check_vjp import with_values
from jaxback.testing.memory import float_positions

EXPLAINED = """\
Per layer at its registry entry's benchmark shape, float32. "VJP temp" is the compiled temp of the
jitted VJP returning the output too (`memory_analysis().temp_size_in_bytes`, MiB; the
[memory page](memory.md)'s "y+grad") with the hand-rule primitive and with the
same `fwd`/`bwd` as a plain `jax.custom_vjp`; "VJP time" is the primitive's time over the
custom_vjp's. "JVP time" is the hand JVP's time over JAX autodiff's JVP of `layer.auto`, and "JVP
temp" their compiled temps."""

HEADER = ["layer", "shape", "VJP temp: primitive / custom_vjp", "VJP time: primitive / custom_vjp",
          "JVP temp: hand / autodiff", "JVP time: hand / autodiff"]


def _steps(fn, args, hyper):
    """``(vjp, jvp, float args)``: jitted maps of (float args, cotangent or tangent) to the output
    and the cotangents, or the output and its tangent."""
    pos = float_positions(args)
    over = lambda float_args: fn(*with_values(args, pos, float_args), **hyper)  # noqa: E731
    def vjp(float_args, y_bar):  # the output too, as inside a network (memory_audit's "y+grad")
        y, pull = jax.vjp(over, float_args)
        return y, pull(y_bar)[0]
    return jax.jit(vjp), jax.jit(lambda float_args, t: jax.jvp(over, (float_args,), (t,))), tuple(args[i] for i in pos)


def _temp(jitted, *args) -> float:
    return jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def measure(info, rounds: int, reps: int = 5) -> list:
    """One table row for ``info``: temps and time ratios (see the module docstring)."""
    layer, args = info.layer, info.args(0, dtype=jnp.float32, shape=info.bench_shape)
    plain = make_layer(layer.auto, layer.fwd, layer.bwd, name=layer.kind, init=layer.init, roles=layer.roles)
    (vjp_hand, jvp_hand, floats), (vjp_plain, _, _) = (_steps(layer.apply, args, info.bench_hyper),
                                                        _steps(plain.apply, args, info.bench_hyper))
    y_bar = random_cotangent(jax.eval_shape(lambda f: layer.auto(*with_values(args, float_positions(args), f),
                                                                 **info.bench_hyper), floats))
    calls = {"primitive": lambda: jax.block_until_ready(vjp_hand(floats, y_bar)),
             "custom_vjp": lambda: jax.block_until_ready(vjp_plain(floats, y_bar))}
    row = [f"`{info.name}`", info.bench_shape, f"{_temp(vjp_hand, floats, y_bar):.2f} / {_temp(vjp_plain, floats, y_bar):.2f}"]
    row.append(_ratio(interleaved(calls, rounds, reps), "primitive", "custom_vjp"))
    if layer.jvp is None:
        return row + ["no hand JVP", ""]
    _, jvp_auto, _ = _steps(layer.auto, args, info.bench_hyper)
    t = random_tangent(floats)
    row.append(f"{_temp(jvp_hand, floats, t):.2f} / {_temp(jvp_auto, floats, t):.2f}")
    calls = {"hand": lambda: jax.block_until_ready(jvp_hand(floats, t)),
             "autodiff": lambda: jax.block_until_ready(jvp_auto(floats, t))}
    return row + [_ratio(interleaved(calls, rounds, reps), "hand", "autodiff")]


def _ratio(times, name, reference) -> str:
    _, median, low, high = ratio_summary(times, reference)[name]
    return f"{median:.2f} ({low:.2f}-{high:.2f})"


def run(rounds: int = 7) -> list:
    rows = []
    for info in builtin_registry().registered():
        if info.bench_shape is not None:
            rows.append(measure(info, rounds))
            print(f"done: {info.name}", flush=True)
    return rows


def report(rows, rounds: int) -> str:
    return "\n\n".join([EXPLAINED + f" {rounds} rounds.", table(HEADER, rows)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(report(run(args.rounds), args.rounds))


if __name__ == "__main__":
    main()
