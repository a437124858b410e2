"""Memory audit: what each hand rule saves vs what autodiff saves, before and after jit.

    python benchmarks/memory_audit.py [--dtype float32]

For every registry entry with a ``bench_shape``, in one run:

* residuals (``jaxback.testing.memory.residual_bytes``): the arrays the VJP closure keeps alive
  between forward and backward, for ``layer.apply`` (hand rule) and ``layer.auto`` (autodiff);
* compiled temp (``compiled_temp_bytes``): what a jitted gradient really allocates.

XLA already recovers much of what autodiff saves once the step is jitted (fusion and
rematerialisation of elementwise work), so only the second column is a claim about real memory.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from jaxback.testing import random_cotangent, registered
from jaxback.testing.memory import compiled_temp_bytes, residual_bytes


def audit(info, dtype):
    args = info.args(0, dtype=dtype, shape=info.bench_shape)
    hand = functools.partial(info.layer.apply, **info.bench_hyper)
    auto = functools.partial(info.layer.auto, **info.bench_hyper)
    y_bar = random_cotangent(auto(*args))
    return (residual_bytes(hand, *args), residual_bytes(auto, *args),
            compiled_temp_bytes(hand, args, y_bar), compiled_temp_bytes(auto, args, y_bar))


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
    print(f"{'layer':<24} {'shape':<18} {'res hand':>9} {'res auto':>9} {'ratio':>6}   "
          f"{'temp hand':>9} {'temp auto':>9} {'ratio':>6}")
    for info in registered():
        if info.bench_shape is None:
            continue
        rh, ra, th, ta = audit(info, dtype)
        ratio = lambda a, b: f"{a / b:6.2f}" if b else "   n.a"
        print(f"{info.name:<24} {str(info.bench_shape):<18} {_mb(rh)} {_mb(ra)} {ratio(rh, ra)}   "
              f"{_mb(th)} {_mb(ta)} {ratio(th, ta)}")


if __name__ == "__main__":
    main()
