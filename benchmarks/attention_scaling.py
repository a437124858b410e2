"""Attention alone: compiled temp memory and time of jit(grad) against sequence length.

    python benchmarks/attention_scaling.py [--max-t 8192] [--time-max-t 2048] [--rounds 5] [--png PATH]

N=1, D=64, 4 heads, causal, float32. Variants: jaxback's hand rule tiled (``block_size=128``) and
untiled (one block), jaxback's autodiff of the untiled forward, ``jax.nn.dot_product_attention``
under autodiff, and PyTorch's ``scaled_dot_product_attention`` (time only, 2 threads) when installed.
Memory (``memory_analysis().temp_size_in_bytes``) needs only a compile, so it runs up to ``--max-t``;
times (interleaved rounds, ratio to the untiled hand rule in the same round) up to ``--time-max-t``.
Prints markdown tables and the fitted exponent of temp ~ T^a between 512 and 4096, and writes the
curve to ``--png`` (default benchmarks/out/attention_scaling.png).
"""

from __future__ import annotations

import argparse
import math
import os

import jax
import jax.numpy as jnp

from _bench import interleaved, ratio_summary, table, temp_mb
from _peers import have

import jaxback as jb

WIDTH, HEADS = 64, 4


def _grad(fn):
    return jax.jit(jax.grad(lambda p, x, y_bar: jnp.vdot(fn(p, x), y_bar), argnums=(0, 1)))


def variants():
    hand = lambda b: (lambda p, x: jb.attention(p, x, num_heads=HEADS, causal=True, block_size=b))
    out = {"hand tiled (B=128)": (hand(128), None), "hand untiled": (hand(2**30), None),
           "autodiff untiled": (lambda p, x: jb.attention.auto(p, x, num_heads=HEADS, causal=True, block_size=2**30), None)}

    def plain(p, x):
        n, t, width = x.shape
        heads = lambda w: (x @ w).reshape(n, t, HEADS, width // HEADS)
        o = jax.nn.dot_product_attention(heads(p.w_q), heads(p.w_k), heads(p.w_v), is_causal=True, implementation="xla")
        return o.reshape(n, t, width) @ p.w_o + p.b_o

    out["jax.nn.dot_product_attention"] = (plain, None)
    return out


def _torch_call(t):
    import torch
    torch.set_num_threads(2)
    lin = [torch.nn.Linear(WIDTH, WIDTH, bias=i == 3) for i in range(4)]
    x = torch.randn(1, t, WIDTH, requires_grad=True)

    def call():
        q, k, v = (l(x).view(1, t, HEADS, -1).transpose(1, 2) for l in lin[:3])
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        lin[3](o.transpose(1, 2).reshape(1, t, WIDTH)).sum().backward()

    return call


def run(max_t, time_max_t, rounds):
    lengths = [2 ** e for e in range(8, int(math.log2(max_t)) + 1)]
    params = jb.attention.init(jax.random.PRNGKey(0), WIDTH)
    memory, timing = {}, {}
    for t in lengths:
        x = jax.random.normal(jax.random.PRNGKey(1), (1, t, WIDTH))
        grads = {name: _grad(fn) for name, (fn, _) in variants().items()}
        memory[t] = {name: temp_mb(g, params, x, x) for name, g in grads.items()}
        if t <= time_max_t:
            calls = {name: (lambda g=g, x=x: jax.block_until_ready(g(params, x, x))) for name, g in grads.items()}
            if have("torch"):
                calls["PyTorch SDPA"] = _torch_call(t)
            timing[t] = ratio_summary(interleaved(calls, rounds, 1, warmup=1), "hand untiled")
        print(f"done: T={t}", flush=True)
    return memory, timing


def exponent(memory, name, lo=512, hi=4096):
    if lo in memory and hi in memory:
        return math.log(memory[hi][name] / memory[lo][name]) / math.log(hi / lo)
    return float("nan")


def report(memory, timing, rounds):
    names = list(next(iter(memory.values())))
    out = ["jit(grad) of attention alone, N=1, D=64, 4 heads, causal, float32. Compiled temp memory, MiB:", "",
           table(["T"] + names + ["tiled / autodiff"],
                 [[t] + [f"{m[n]:.2f}" for n in names] + [f"{m[names[0]] / m['autodiff untiled']:.4f}"]
                  for t, m in memory.items()]),
           "", "Exponent a of temp ~ T^a from T=512 to 4096: "
           + ", ".join(f"{n} {exponent(memory, n):.2f}" for n in names), ""]
    if timing:
        cols = list(next(iter(timing.values())))
        out += [f"Time of one gradient: median of {rounds} interleaved rounds of variant / hand untiled in the "
                "same round (min-max); the untiled hand rule's median in ms:", "",
                table(["T", "hand untiled ms"] + cols,
                      [[t, f"{s['hand untiled'][0] * 1e3:.2f}"] + [f"{s[c][1]:.2f} ({s[c][2]:.2f}-{s[c][3]:.2f})" for c in cols]
                       for t, s in timing.items()], ("torch",))]
    return "\n".join(out)


def plot(memory, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ts = list(memory)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in next(iter(memory.values())):
        ax.loglog(ts, [memory[t][name] for t in ts], marker="o", label=name)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("compiled temp of jit(grad), MiB")
    ax.set_title("attention (N=1, D=64, 4 heads, causal, float32)")
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-t", type=int, default=8192)
    parser.add_argument("--time-max-t", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--png", default=os.path.join(os.path.dirname(__file__), "out", "attention_scaling.png"))
    args = parser.parse_args(argv)
    memory, timing = run(args.max_t, args.time_max_t, args.rounds)
    print(report(memory, timing, args.rounds))
    plot(memory, args.png)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
