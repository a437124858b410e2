"""Two choices inside the rules, measured side by side: gelu's Phi and the tiled backward's product form.

    python benchmarks/kernels.py [--rounds 7]

* gelu: the training step (gradients of params and x) of linear-gelu-linear at the T=512 block's MLP
  shape, (8 * 512, 128) -> 512 -> 128, with Phi(x) = (1 + erf(x / sqrt(2))) / 2 (jaxback's), with the
  equal erfc(-x / sqrt(2)) / 2, and with relu in gelu's place (the floor: the same program less
  gelu's arithmetic); and each form's largest error against scipy in float64, x in [-10, 3].
  See NOTE (gelu's Phi) in jaxback/_activations.py.
* block products: one (8, 4, 128, 128) x (8, 4, 128, 32) product of the tiled backward, contracting
  the left operand's last axis (s @ q) or its first (s.T @ q, the (i, j)-order form of k_bar's share).
  See NOTE (layout) in jaxback/_attention_tiled.py.
Each table: medians of interleaved rounds, ratios to the first row within each round.
"""

from __future__ import annotations

import argparse
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import jaxback as jb
import jaxback._activations as activations
from _bench import block, interleaved, ratio_summary, table

_PHI = {"erf (jaxback)": activations._normal_cdf,  # (1 + erf(x / sqrt(2))) / 2
        "erfc": lambda x: 0.5 * lax.erfc(-x / math.sqrt(2))}


def _mlp_step(activation, phi=None):
    """A jitted gradient of sum(model(p, x)**2) for linear-activation-linear, gelu traced with ``phi``."""
    model = jb.serial(jb.linear.sized(512), activation, jb.linear.sized(128))
    x = jnp.asarray(np.random.default_rng(0).standard_normal((8, 512, 128)), jnp.float32)
    params, _ = model.init(jax.random.PRNGKey(0), x)
    step = jax.jit(jax.grad(lambda p, x: jnp.sum(model(p, x) ** 2), argnums=(0, 1)))
    default, activations._normal_cdf = activations._normal_cdf, phi or activations._normal_cdf
    try:
        compiled = step.lower(params, x).compile()  # traced now, with this phi
    finally:
        activations._normal_cdf = default
    return lambda: block(compiled(params, x))


def gelu_table(rounds):
    fns = {f"gelu, Phi by {name}": _mlp_step(jb.gelu, phi) for name, phi in _PHI.items()}
    fns["relu in gelu's place"] = _mlp_step(jb.relu)
    return _table(fns, rounds, reps=5, what="linear-gelu-linear training step")


def product_table(rounds):
    rng = np.random.default_rng(0)
    s = jnp.asarray(rng.standard_normal((8, 4, 128, 128)), jnp.float32)
    q = jnp.asarray(rng.standard_normal((8, 4, 128, 32)), jnp.float32)
    forms = {"s @ q (left operand contracts its last axis)": "nhij,nhje->nhie",
             "s.T @ q (left operand contracts its first axis)": "nhij,nhie->nhje"}
    fns = {}
    for name, spec in forms.items():
        product = jax.jit(lambda s, q, spec=spec: jnp.einsum(spec, s, q))
        fns[name] = lambda product=product: block(product(s, q))
    return _table(fns, rounds, reps=20, what="block product")


def accuracy_table():
    """Max |gelu error| of each Phi over x in [-10, 3], in float32 and float64, against scipy's float64
    erfc form evaluated at the same (rounded) x: where each form loses digits, and how many."""
    from scipy.special import erfc
    rows = []
    for dtype in ("float32", "float64"):
        with jax.enable_x64(dtype == "float64"):
            x = jnp.asarray(np.linspace(-10.0, 3.0, 200001), dtype)
            x64 = np.asarray(x, np.float64)
            truth = x64 * 0.5 * erfc(-x64 / math.sqrt(2))
            for name, phi in _PHI.items():
                error = np.abs(np.asarray(x * phi(x), np.float64) - truth)
                worst = int(np.argmax(error))
                rows.append((name, dtype, f"{error[worst]:.1e}", f"{x64[worst]:.2f}", f"{truth[worst]:.1e}"))
    return table(["gelu = x * Phi(x)", "dtype", "max abs error on [-10, 3]", "at x", "gelu there"], rows)


def _table(fns, rounds, reps, what):
    summary = ratio_summary(interleaved(fns, rounds, reps), reference=next(iter(fns)))
    rows = [(name, f"{median * 1e3:.2f}", f"{ratio:.2f} ({low:.2f}-{high:.2f})")
            for name, (median, ratio, low, high) in summary.items()]
    return table([what, "median ms", "ratio to the first row"], rows)


def report(rounds) -> str:
    """The three tables with a line each on what they measure (float32 timings)."""
    return "\n\n".join([
        "gelu's Phi: the training step of linear-gelu-linear at the T=512 block's MLP shape, with each "
        "form of Phi and with relu in gelu's place (NOTE (gelu's Phi) in `jaxback/_activations.py`):",
        gelu_table(rounds),
        "Each form's largest gelu error against scipy's erfc form in float64, x in [-10, 3]:",
        accuracy_table(),
        "One (8, 4, 128, 128) x (8, 4, 128, 32) block product of the tiled backward in its two forms "
        "(NOTE (layout) in `jaxback/_attention_tiled.py`):",
        product_table(rounds)])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    print(report(args.rounds))


if __name__ == "__main__":
    main()
