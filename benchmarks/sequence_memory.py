"""Sequence memory: what attention's and the LSTM's hand rules keep for the backward, against autodiff, vs T.

    python benchmarks/sequence_memory.py [--attention-lengths 64 128 256 512 1024] [--lstm-lengths 32 64 128 256]

For attention (N=2, D=64, 4 heads, not causal) and the LSTM (N=8, D=32, H=64), float32, over
sequence lengths T, hand rule (``layer.apply``) against autodiff of the same forward
(``layer.auto``):

* residual: the bytes the VJP keeps between forward and backward
  (``jaxback.testing.memory.residual_bytes``, inputs held by reference included);
* temp: the temp bytes of the compiled ``jit(grad)`` (``compiled_temp_bytes``), what XLA really
  allocates once it has fused and rematerialised what it can;
* the growth exponent p (bytes ~ T^p) between the two largest T, and the residual bytes per extra
  step next to what the hand rule's docstring says it saves per step.

Attention's hand rule keeps O(N T D) (x, q, k, v, o and the softmax's row max and log-sum-exp),
autodiff the O(N heads T^2) probabilities; the LSTM's keeps (xs, hs, cs) per step.
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

import jaxback as jb
from jaxback.testing.memory import compiled_temp_bytes, residual_bytes

from _bench import table

ATTENTION = dict(n=2, width=64, heads=4)
LSTM = dict(n=8, width=32, hidden=64)
SIZE_NAMES = {"n": "N", "width": "D", "hidden": "H", "heads": "heads"}
ATTENTION_LENGTHS, LSTM_LENGTHS = (64, 128, 256, 512, 1024), (32, 64, 128, 256)
SERIES = ("res_hand", "res_auto", "temp_hand", "temp_auto")


def _measure(fns: dict, args, y_bar) -> dict:
    out = {}
    for how, fn in fns.items():
        out[f"res_{how}"] = residual_bytes(fn, *args)
        out[f"temp_{how}"] = compiled_temp_bytes(fn, args, y_bar)
    return out


def attention_memory(t, n, width, heads, seed=0) -> dict:
    k_p, k_x, k_y = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = jb.attention.init(k_p, width)
    x = jax.random.normal(k_x, (n, t, width))
    y_bar = jax.random.normal(k_y, (n, t, width))
    fns = {"hand": lambda p, x: jb.attention(p, x, num_heads=heads),
           "auto": lambda p, x: jb.attention.auto(p, x, num_heads=heads)}
    return _measure(fns, (params, x), y_bar)


def lstm_memory(t, n, width, hidden, seed=0) -> dict:
    k_p, k_x, k_y, k_h, k_c = jax.random.split(jax.random.PRNGKey(seed), 5)
    params = jb.lstm.init(k_p, width, hidden)
    xs = jax.random.normal(k_x, (t, n, width))
    state = jb.lstm_state(n, hidden)
    y_bar = (jax.random.normal(k_y, (t, n, hidden)),
             type(state)(jax.random.normal(k_h, (n, hidden)), jax.random.normal(k_c, (n, hidden))))
    return _measure({"hand": jb.lstm.apply, "auto": jb.lstm.auto}, (params, xs, state), y_bar)


def sweep(measure, lengths, sizes) -> dict:
    """``{T: {series: bytes}}``."""
    return {t: measure(t, **sizes) for t in lengths}


def growth(rows: dict) -> dict:
    """Per series, p in bytes ~ T^p between the two largest T."""
    ts = sorted(rows)
    return {k: float(np.log(rows[ts[-1]][k] / rows[ts[-2]][k]) / np.log(ts[-1] / ts[-2])) for k in SERIES}


def per_step(rows: dict, key: str) -> float:
    """Bytes per extra step of ``key``, from the smallest to the largest T."""
    ts = sorted(rows)
    return (rows[ts[-1]][key] - rows[ts[0]][key]) / (ts[-1] - ts[0])


def report(name: str, sizes: dict, rows: dict, stated: tuple, linear=("res_hand",)) -> str:
    """The table of one sweep (markdown), its growth exponents and bytes per step."""
    shape = ", ".join(f"{SIZE_NAMES[k]}={v}" for k, v in sizes.items())
    body = [[t, f"{r['res_hand']:,}", f"{r['res_auto']:,}", f"{r['res_auto'] / r['res_hand']:.1f}x",
             f"{r['temp_hand']:,}", f"{r['temp_auto']:,}", f"{r['temp_auto'] / r['temp_hand']:.1f}x"]
            for t, r in rows.items()]
    exponents = ", ".join(f"{k} {p:.2f}" for k, p in growth(rows).items())
    steps = ", ".join(f"{k} {per_step(rows, k):,.0f}" for k in linear)
    ts = sorted(rows)
    return "\n".join([
        f"{name} ({shape}, float32): bytes kept between forward and backward (residual) and temp bytes of "
        f"the compiled jit(grad) (temp), hand rule vs autodiff", "",
        table(["T", "residual hand", "residual auto", "auto/hand", "temp hand", "temp auto", "auto/hand"], body), "",
        f"growth exponent p (bytes ~ T^p, T={ts[-2]} to {ts[-1]}): {exponents}.",
        f"residual bytes per extra step (T={ts[0]} to {ts[-1]}): {steps}; the hand rule's docstring: "
        f"{stated[0]} = {stated[1]:,}."])


def run(attention_lengths, lstm_lengths) -> str:
    """Both sweeps, as the text ``main`` prints."""
    n, d, h = ATTENTION["n"], ATTENTION["width"], ATTENTION["heads"]
    n_l, d_l, h_l = LSTM["n"], LSTM["width"], LSTM["hidden"]
    return "\n\n".join([
        report("attention", ATTENTION, sweep(attention_memory, attention_lengths, ATTENTION),
               ("(5*N*D + 2*N*heads)*4 B (x, q, k, v, o, m, lse)", (5 * n * d + 2 * n * h) * 4)),
        report("lstm", LSTM, sweep(lstm_memory, lstm_lengths, LSTM),
               ("(D + 2*H)*N*4 B (xs, hs, cs)", (d_l + 2 * h_l) * n_l * 4), linear=("res_hand", "res_auto"))])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention-lengths", type=int, nargs="+", default=list(ATTENTION_LENGTHS))
    parser.add_argument("--lstm-lengths", type=int, nargs="+", default=list(LSTM_LENGTHS))
    args = parser.parse_args(argv)
    for name, lengths in (("--attention-lengths", args.attention_lengths), ("--lstm-lengths", args.lstm_lengths)):
        if len(lengths) < 2 or sorted(set(lengths)) != lengths:
            parser.error(f"{name} needs at least two increasing lengths; got {lengths}.")
    print(run(args.attention_lengths, args.lstm_lengths))


if __name__ == "__main__":
    main()
