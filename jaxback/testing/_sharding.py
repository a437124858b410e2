"""The sharded-batch check: every layer flagged "sharding", with its batch split over devices.

JAX's own sharding is jaxback's distributed engine: a hand rule is just more JAX ops, so
``jit`` + ``NamedSharding`` partitions it like any other code. This check shows it: the hand VJP of
a batch sharded over all devices equals the hand VJP on one device. On a CPU-only machine, ask XLA
for several host devices (the flag must be set before JAX starts, hence a separate process):

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python -m jaxback.testing._sharding

checks every flagged entry at every setting; ``--one-per-family`` checks ``ONE_PER_FAMILY``, one
entry per way a rule can meet the sharded batch axis, at one setting each (what the suite runs).
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


# The partitioner treats a hand rule as ordinary JAX ops, so what a sharded batch can break is how
# the ops meet the batch axis, not the layer. One entry (at one setting) per way, from each family:
ONE_PER_FAMILY = (
    ("linear", 0),                 # core: w_bar = x.T @ y_bar, b_bar = sum(y_bar): a sum over the batch
    ("softmax_cross_entropy", 0),  # losses: a batch mean forward, 1/N backward, integer labels sharded
    ("embedding", 0),              # misc: a gather of sharded ids, a scatter-add of w_bar across devices
    ("dropout", 0),                # misc: a PRNG key beside a sharded batch (the mask must not change)
    ("batch_norm", 0),             # norm: batch statistics, forward and backward, over the sharded axis
    ("attention", 4),              # attention: per-example (T, T) scores, causal + a per-head mask
    ("conv2d", 0),                 # conv: windows inside each example, the kernel's gradient summed over it
    ("lstm", 0),                   # lstm: a scan over time with the batch split
    ("fan_in_concat", 0),          # models: the structural nodes (concatenate, split back; copies, sums)
)


def check_sharded(info, seed: int = 0, hypers=None) -> None:
    """Hand VJP (and output) with sharded inputs equals the single-device result, at each of
    ``hypers`` (default: every setting of ``info``)."""
    mesh = Mesh(np.array(jax.devices()), ("batch",))
    biggest = max(info.shapes, key=lambda s: np.prod(s))
    shape = (mesh.devices.size * 2,) + tuple(biggest[1:])  # leading axis divisible by the mesh
    for hyper in info.hypers if hypers is None else hypers:
        args = info.args(seed, shape=shape)
        y_bar = random_cotangent(info.layer.auto(*args, **hyper))
        run = jax.jit(functools.partial(vjp_of, info.layer.apply, hyper))
        sharded = run(_placed(args, mesh), _placed(y_bar, mesh))
        assert_trees_close(f"{info.name} sharded over {mesh.devices.size} devices", sharded, run(args, y_bar))
        apply = jax.jit(functools.partial(info.layer.apply, **hyper))
        assert_trees_close(f"{info.name} sharded forward", apply(*_placed(args, mesh)), apply(*args))


def main(argv=None) -> int:
    jax.config.update("jax_enable_x64", True)
    from . import builtin_registry

    if len(jax.devices()) < 2:
        print("need several devices: XLA_FLAGS=--xla_force_host_platform_device_count=4")
        return 2
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv != ["--one-per-family"]:
        print(f"usage: python -m jaxback.testing._sharding [--one-per-family]; got {argv}")
        return 2
    builtin = builtin_registry()
    chosen = ([(builtin.lookup(name), (builtin.lookup(name).hypers[i],)) for name, i in ONE_PER_FAMILY] if argv
              else [(info, None) for info in builtin.registered()])
    failures = 0
    for info, hypers in chosen:
        if "sharding" not in info.supports:
            print(f"{info.name:<34} n.a. ({info.notes})")
            continue
        try:
            check_sharded(info, hypers=hypers)
            print(f"{info.name:<34} ok over {len(jax.devices())} devices")
        except AssertionError as e:
            failures += 1
            print(f"{info.name:<34} FAILED: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
