"""Memory audit: what each hand rule saves vs what autodiff saves, before and after jit.

    python benchmarks/memory_audit.py [--dtype float32]

For every registry entry with a ``bench_shape``, in one run:

* residuals: the arrays the VJP closure keeps alive between forward and backward, i.e. the leaves
  of ``jax.vjp(f, *args)[1]`` (the same list ``jax.ad_checkpoint.print_saved_residuals`` prints),
  for ``layer.apply`` (hand rule) and ``layer.auto`` (autodiff), without jit;
* compiled temp: ``jit(grad(args -> <f(args), y_bar>)).lower(...).compile().memory_analysis()
  .temp_size_in_bytes``: what a jitted gradient step really allocates beyond inputs and outputs.

XLA already recovers much of what autodiff saves once the step is jitted (fusion and
rematerialisation of elementwise work), so only the second column is a claim about real memory.
"""

from __future__ import annotations

import argparse
import functools

import jax
import jax.numpy as jnp

from jaxback.testing import random_cotangent, registered
from jaxback.testing._checks import float_positions


def residual_bytes(fn, args) -> int:
    vjp_fn = jax.vjp(fn, *args)[1]
    return sum(l.size * l.dtype.itemsize for l in jax.tree_util.tree_leaves(vjp_fn) if hasattr(l, "dtype"))


def compiled_temp_bytes(fn, args, y_bar) -> int:
    pos = float_positions(args)

    def pairing(float_args):
        full = list(args)
        for i, a in zip(pos, float_args):
            full[i] = a
        return sum(jnp.vdot(y, g) for y, g in zip(jax.tree_util.tree_leaves(fn(*full)), jax.tree_util.tree_leaves(y_bar)))

    grad = jax.jit(jax.grad(pairing))
    return grad.lower(tuple(args[i] for i in pos)).compile().memory_analysis().temp_size_in_bytes


def audit(info, dtype):
    args = info.args(0, dtype=dtype, shape=info.bench_shape)
    hand = functools.partial(info.layer.apply, **info.bench_hyper)
    auto = functools.partial(info.layer.auto, **info.bench_hyper)
    y_bar = random_cotangent(auto(*args))
    return (residual_bytes(hand, args), residual_bytes(auto, args),
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
