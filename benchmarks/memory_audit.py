"""Memory audit: what each hand rule saves vs what autodiff saves, before and after jit.

    python benchmarks/memory_audit.py [--dtype float32]

For every registry entry with a ``bench_shape``, in one run:

* residuals (``jaxback.testing.memory.residual_bytes``): the arrays the VJP closure keeps alive
  between forward and backward, for ``layer.apply`` (hand rule) and ``layer.auto`` (autodiff);
* compiled temp (``compiled_temp_bytes``): what a jitted VJP really allocates, returning the
  gradients alone ("grad": XLA may drop forward work whose result is unused) or the layer's output
  too ("y+grad": as inside a network, where the next layer reads it, or a step that logs its loss).

XLA already recovers much of what autodiff saves once the step is jitted (fusion and
rematerialisation of elementwise work), so only the compiled columns are claims about real memory.
Prints the markdown that ``benchmarks/report.py memory`` writes to ``docs/memory.md``.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from _bench import table
from jaxback.testing import builtin_registry, random_cotangent
from jaxback.testing.memory import compiled_temp_bytes, residual_bytes

COLUMNS = ["res hand", "res auto", "grad hand", "grad auto", "y+grad hand", "y+grad auto"]
EXPLAINED = """\
Per layer at its registry entry's benchmark shape (`bench_shape`, `bench_hyper` in
`jaxback/testing/_entries_*.py`), in MiB. "res" is what the VJP keeps between forward and backward
(`jaxback.testing.memory.residual_bytes`: the arrays `jax.ad_checkpoint.print_saved_residuals`
lists; inputs held by reference count on both sides). "grad" is what the compiled VJP allocates
(`memory_analysis().temp_size_in_bytes` of `jit` of the gradient, the cotangent passed as an
argument); "y+grad" compiles the layer's output too, as inside a network. XLA may drop forward work
when only the gradient is asked for, so the two can differ either way. `tests/test_memory.py`
asserts that every hand column is at most its autodiff column."""


def audit(info, dtype):
    """``(res hand, res auto, grad hand, grad auto, y+grad hand, y+grad auto)`` in bytes."""
    args = info.args(0, dtype=dtype, shape=info.bench_shape)
    hand = functools.partial(info.layer.apply, **info.bench_hyper)
    auto = functools.partial(info.layer.auto, **info.bench_hyper)
    y_bar = random_cotangent(auto(*args))
    temps = [compiled_temp_bytes(fn, args, y_bar, with_output=v) for v in (False, True) for fn in (hand, auto)]
    return (residual_bytes(hand, *args), residual_bytes(auto, *args), *temps)


def run(dtype="float32") -> list:
    """``[(name, hyperparameters, shape, sizes in bytes), ...]``, one per entry with a bench_shape."""
    dtype = jnp.dtype(dtype)
    out = []
    for info in builtin_registry().registered():
        if info.bench_shape is not None:
            hyper = ", ".join(f"{k}={v}" for k, v in info.bench_hyper.items())
            out.append((info.name, hyper, info.bench_shape, audit(info, dtype)))
            print(f"done: {info.name}", flush=True)
    return out


def _equal(a, b) -> bool:
    """Within 5 %, or within 0.05 MiB (a few KiB of temp is no saving worth a claim)."""
    return abs(a - b) <= max(0.05 * max(a, b), 0.05 * 2**20)


def _less(hand, auto) -> bool:
    return hand < auto and not _equal(hand, auto)


def findings(results) -> str:
    """Which rows show a saving, computed from the rows (no number written by hand)."""
    buckets = [
        ("Less compiled temp by hand, with the layer's output (y+grad)", lambda rh, ra, gh, ga, yh, ya: _less(yh, ya)),
        ("Less compiled temp by hand for the gradient alone, the same with the output",
         lambda rh, ra, gh, ga, yh, ya: _less(gh, ga) and _equal(yh, ya)),
        ("Fewer residuals by hand, the same compiled temp either way (XLA recovers autodiff's extra "
         "residuals once jitted)", lambda rh, ra, gh, ga, yh, ya: _less(rh, ra) and _equal(gh, ga) and _equal(yh, ya)),
        ("The same residuals either way (the inputs are the residuals)", lambda rh, ra, *_: _equal(rh, ra))]
    lines = []
    for what, keep in buckets:
        names = list(dict.fromkeys(f"`{name}`" for name, _, _, sizes in results if keep(*sizes)))
        lines.append(f"* {what}: {', '.join(names) if names else 'none'}.")
    return "\n".join(lines)


def report(results, dtype="float32") -> str:
    rows = [[f"`{name}`" + (f" ({hyper})" if hyper else ""), shape, *(f"{n / 2**20:.3f}" for n in sizes)]
            for name, hyper, shape, sizes in results]
    return "\n\n".join([EXPLAINED, table(["layer", f"shape ({dtype})", *COLUMNS], rows), findings(results)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    args = parser.parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    print(report(run(args.dtype), args.dtype))


if __name__ == "__main__":
    main()
