"""The sharded-batch check: every layer flagged "sharding", with its batch split over devices.

JAX's own sharding is jaxback's distributed engine: a hand rule is just more JAX ops, so
``jit`` + ``NamedSharding`` partitions it like any other code. This check shows it: the hand VJP of
a batch sharded over all devices equals the hand VJP on one device. On a CPU-only machine, ask XLA
for several host devices (the flag must be set before JAX starts, hence a separate process):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m jaxback.testing._sharding
"""

from __future__ import annotations

import functools
import sys

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._check_vjp import random_cotangent
from ._checks import assert_trees_close, vjp_of


def _placed(tree, mesh):
    """Split every leaf whose leading axis divides evenly over the mesh; replicate the rest."""
    n = mesh.devices.size

    def place(leaf):
        spec = PartitionSpec("batch") if leaf.ndim and leaf.shape[0] % n == 0 else PartitionSpec()
        return jax.device_put(leaf, NamedSharding(mesh, spec))

    return jax.tree_util.tree_map(place, tree)


def check_sharded(info, seed: int = 0) -> None:
    """Hand VJP (and output) with sharded inputs equals the single-device result."""
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    biggest = max(info.shapes, key=lambda s: np.prod(s))
    shape = (mesh.devices.size * 2,) + tuple(biggest[1:])  # leading axis divisible by the mesh
    for hyper in info.hypers:
        args = info.args(seed, shape=shape)
        y_bar = random_cotangent(info.layer.auto(*args, **hyper))
        run = jax.jit(functools.partial(vjp_of, info.layer.apply, hyper))
        sharded = run(_placed(args, mesh), _placed(y_bar, mesh))
        assert_trees_close(f"{info.name} sharded over {mesh.devices.size} devices", sharded, run(args, y_bar))
        apply = jax.jit(functools.partial(info.layer.apply, **hyper))
        assert_trees_close(f"{info.name} sharded forward", apply(*_placed(args, mesh)), apply(*args))


def main() -> int:
    jax.config.update("jax_enable_x64", True)
    from . import registered

    if len(jax.devices()) < 2:
        print("need several devices: XLA_FLAGS=--xla_force_host_platform_device_count=4")
        return 2
    failures = 0
    for info in registered():
        if "sharding" not in info.supports:
            print(f"{info.name:<34} n.a. ({info.notes})")
            continue
        try:
            check_sharded(info)
            print(f"{info.name:<34} ok over {len(jax.devices())} devices")
        except AssertionError as e:
            failures += 1
            print(f"{info.name:<34} FAILED: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
