"""Shared measurement helpers for the benchmark scripts: every variant timed in one process, round by
round, so load from other processes on a shared machine hits all variants alike.

* ``interleaved(fns, rounds, reps)``: per variant, the seconds of one call in each round (each round
  calls every variant ``reps`` times, in a rotating order); results are medians and per-round ratios;
* ``ratio_summary``: the median, over rounds, of variant / reference in the same round;
* ``temp_mb`` / ``compile_seconds``: XLA's compiled temp memory and the wall time of lowering and
  compiling a jitted function;
* ``machine()``: date, cores, CPU model (or GPU card), library versions, for the tables' headers.
"""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import time

import jax

__all__ = ["interleaved", "ratio_summary", "temp_mb", "compile_seconds", "machine", "block", "table"]


def block(out):
    """Wait for every array in ``out`` (JAX arrays; other values pass)."""
    return jax.block_until_ready(out)


def interleaved(fns: dict, rounds: int, reps: int, warmup: int = 2) -> dict:
    """``{name: [seconds per call, one per round]}``; each ``fn()`` must wait for its own result."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate who goes first
            start = time.perf_counter()
            for _ in range(reps):
                fns[name]()
            times[name].append((time.perf_counter() - start) / reps)
    return times


def ratio_summary(times: dict, reference: str) -> dict:
    """``{name: (median seconds, median of per-round ratio to reference, min ratio, max ratio)}``."""
    ref = times[reference]
    out = {}
    for name, ts in times.items():
        ratios = [t / r for t, r in zip(ts, ref)]
        out[name] = (statistics.median(ts), statistics.median(ratios), min(ratios), max(ratios))
    return out


def temp_mb(jitted, *args) -> float:
    """Compiled temp memory of ``jitted`` at ``args``, MiB (``memory_analysis().temp_size_in_bytes``)."""
    return jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes / 2**20


def compile_seconds(fn, *args) -> float:
    """Wall seconds to trace, lower and compile a fresh ``jax.jit(fn)`` at ``args``."""
    fresh = lambda *a: fn(*a)  # a new function object: nothing cached from an earlier jit of fn
    start = time.perf_counter()
    jax.jit(fresh).lower(*args).compile()
    return time.perf_counter() - start


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    """One line: UTC date, device (GPU card or CPU model and cores), jax version."""
    device = jax.devices()[0]
    where = (f"{device.device_kind} (GPU)" if device.platform == "gpu"
             else f"{_cpu_model()}, {len(os.sched_getaffinity(0))} cores")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"{date}; {where}; jax {jax.__version__}, {device.platform}"


def table(header: list, rows: list) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
