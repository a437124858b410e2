"""Memory audit: what each hand rule saves vs what autodiff saves, before and after jit.

    python benchmarks/memory_audit.py [--dtype float32]

For every registry entry with a ``bench_shape``, in one run:

* residuals (``jaxback.testing.memory.residual_bytes``): the arrays the VJP closure keeps alive
  between forward and backward, for ``layer.apply`` (hand rule) and ``layer.auto`` (autodiff);
* compiled temp (``compiled_temp_bytes``): what a jitted VJP really allocates, returning the
  gradients alone ("grad": XLA may drop forward work whose result is unused) or the layer's output
  too ("y+grad": as inside a network, where the next layer reads it, or a step that logs its loss).

XLA already recovers much of what autodiff saves once the step is jitted (fusion and
rematerialisation of elementwise work), so only the second column is a claim about real memory.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from jaxback.testing import builtin_registry, random_cotangent
from jaxback.testing.memory import compiled_temp_bytes, residual_bytes


def audit(info, dtype):
    args = info.args(0, dtype=dtype, shape=info.bench_shape)
    hand = functools.partial(info.layer.apply, **info.bench_hyper)
    auto = functools.partial(info.layer.auto, **info.bench_hyper)
    y_bar = random_cotangent(auto(*args))
    temps = [compiled_temp_bytes(fn, args, y_bar, with_output=v) for v in (False, True) for fn in (hand, auto)]
    return (residual_bytes(hand, *args), residual_bytes(auto, *args), *temps)


def _mb(n):
    return f"{n / 2**20:9.3f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    args = parser.parse_args(argv)
    if args.dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dtype = jnp.dtype(args.dtype)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {dtype.name}; MiB")
    pair = lambda what: f"{what + ' hand':>9} {what + ' auto':>9} {'ratio':>6}"
    print(f"{'layer':<24} {'shape':<18} {pair('res')}   {pair('grad')}   {pair('y+g')}")
    for info in builtin_registry().registered():
        if info.bench_shape is None:
            continue
        sizes = audit(info, dtype)
        cells = [f"{_mb(h)} {_mb(a)} {_ratio(h, a)}" for h, a in zip(sizes[::2], sizes[1::2])]
        print(f"{info.name:<24} {str(info.bench_shape):<18} " + "   ".join(cells))


def _ratio(hand, auto):
    return f"{hand / auto:6.2f}" if auto else "   n.a"


if __name__ == "__main__":
    main()
