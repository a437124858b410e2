"""Matmul rate on this machine: XLA CPU (default flags, and with ``--xla_cpu_use_xnnpack=true``)
against numpy and PyTorch (2 threads), float32 n x n @ n x n.

    python benchmarks/matmul.py [--n 2048] [--rounds 7]

XLA reads its flags once per process, so the XNNPACK variant runs in a child process (``--child``)
with ``XLA_FLAGS`` set; numpy and torch are timed in the parent, round by round with default XLA.
Numerics: the XNNPACK product is compared with a float64 numpy product (max relative error).
Opt in for your own runs with ``XLA_FLAGS=--xla_cpu_use_xnnpack=true`` (jaxback never sets it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

from _bench import table


def _time(fn, rounds):
    fn()
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def _jax_rates(n, rounds):
    import jax
    import jax.numpy as jnp
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    f = jax.jit(jnp.matmul)
    ja, jb_ = jnp.asarray(a), jnp.asarray(b)
    times = _time(lambda: f(ja, jb_).block_until_ready(), rounds)
    exact = a.astype(np.float64) @ b.astype(np.float64)
    err = float(np.max(np.abs(np.asarray(f(ja, jb_)) - exact)) / np.max(np.abs(exact)))
    return times, err


def rates(n, rounds) -> tuple[dict, float, float]:
    """``({variant: seconds per product, one per round}, XLA's error, XNNPACK's error)``."""
    env = dict(os.environ, XLA_FLAGS=(os.environ.get("XLA_FLAGS", "") + " --xla_cpu_use_xnnpack=true").strip())
    child = subprocess.run([sys.executable, __file__, "--child", "--n", str(n), "--rounds", str(rounds)],
                           env=env, capture_output=True, text=True, check=True)
    xnn_times, xnn_err = json.loads(child.stdout.strip().splitlines()[-1])
    rows = {}
    rows["XLA default"], err = _jax_rates(n, rounds)
    rows["XLA --xla_cpu_use_xnnpack=true (child process)"] = xnn_times
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    rows["numpy"] = _time(lambda: a @ b, rounds)
    try:
        import torch
        torch.set_num_threads(2)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rows["PyTorch 2 threads"] = _time(lambda: ta @ tb, rounds)
    except ImportError:
        pass
    return rows, err, xnn_err


def report(n=2048, rounds=7) -> str:
    rows, err, xnn_err = rates(n, rounds)
    rate = {name: 2 * n ** 3 / statistics.median(t) for name, t in rows.items()}  # FLOP/s
    cells = [(name, f"{r / 1e9:.0f}", f"{r / rate['XLA default']:.2f}") for name, r in rate.items()]
    return (f"float32 {n}x{n} matmul, median of {rounds}; max relative error vs a float64 product: XLA default "
            f"{err:.1e}, XNNPACK {xnn_err:.1e}.\n\n"
            + table(["variant", "GFLOP/s", "vs XLA default"], cells, ("numpy", "torch")))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--child", action="store_true")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_jax_rates(args.n, args.rounds)))
        return
    print(report(args.n, args.rounds))


if __name__ == "__main__":
    main()
