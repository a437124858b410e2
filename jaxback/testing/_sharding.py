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
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from ._check_vjp import random_cotangent
from ._checks import assert_trees_close, vjp_of


# The batch axis of ``info.shapes`` where it is not the leading one: lstm's xs is time-major (T, N, D).
_BATCH_AXIS = {"lstm": 1}


def _sample(info, n_devices: int):
    """The largest sample shape with its batch axis set to ``2 * n_devices`` (divisible by the mesh),
    and that batch size."""
    axis, batch = _BATCH_AXIS.get(info.name, 0), 2 * n_devices
    biggest = list(max(info.shapes, key=lambda s: np.prod(s)))
    biggest[axis] = batch
    return tuple(biggest), batch


def _placed(info, args, mesh, batch: int):
    """The arguments placed as a user places them: the data batch ("x"-role arguments, and the targets
    or labels that follow a loss's roles) split over the mesh along each leaf's batch axis (its first
    axis of size ``batch``: the state (N, H) beside lstm's (T, N, D) xs); parameters, state and keys
    replicated (``Layer.roles``)."""
    roles = tuple(info.layer.roles) + ("x",) * (len(args) - len(info.layer.roles))

    def place(leaf, is_data):
        axis = next((i for i, n in enumerate(np.shape(leaf)) if n == batch), None) if is_data else None
        spec = PartitionSpec(*([None] * axis), "batch") if axis is not None else PartitionSpec()
        return jax.device_put(leaf, NamedSharding(mesh, spec))

    return tuple(jax.tree_util.tree_map(functools.partial(place, is_data=role == "x"), arg)
                 for role, arg in zip(roles, args))


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


class AutodiffFailsToo(Exception):
    """Under an explicit-sharding mesh, JAX autodiff of the plain forward fails as well: a limit of
    the forward's ops under sharding in types, not of the hand rule."""


def _explicit_mesh(n: int):
    """``jax.make_mesh``'s default since jax 0.9: every axis ``Explicit`` (shardings in the types)."""
    return jax.make_mesh((n,), ("batch",), axis_types=(AxisType.Explicit,))


def _under(mesh, fn, *args):
    """``fn(*args)``, with ``mesh`` the ambient mesh where it has explicit axes (``jax.set_mesh``)."""
    if mesh.explicit_axes:
        with jax.set_mesh(mesh):
            return fn(*args)
    return fn(*args)


def _check_on(info, mesh, hyper, args, y_bar, batch) -> None:
    run = jax.jit(functools.partial(vjp_of, info.layer.apply, hyper))
    apply = jax.jit(functools.partial(info.layer.apply, **hyper))
    where = f"{info.name} sharded over {mesh.devices.size} devices ({mesh.axis_types[0]} mesh)"
    placed = _placed(info, args, mesh, batch)
    y_bar_placed = None
    try:
        y = _under(mesh, apply, *placed)
        # The cotangent sharded as the output is (what JAX's vjp expects under an explicit mesh).
        y_bar_placed = jax.tree_util.tree_map(lambda a, o: jax.device_put(a, o.sharding), y_bar, y)
        assert_trees_close(f"{where}, forward", y, apply(*args))
        assert_trees_close(where, _under(mesh, run, placed, y_bar_placed), run(args, y_bar))
    except Exception as hand_error:
        if mesh.explicit_axes:
            auto = jax.jit(functools.partial(vjp_of, info.layer.auto, hyper))
            try:
                y_auto = _under(mesh, jax.jit(functools.partial(info.layer.auto, **hyper)), *placed)
                y_bar_auto = jax.tree_util.tree_map(lambda a, o: jax.device_put(a, o.sharding), y_bar, y_auto)
                _under(mesh, auto, placed, y_bar_auto)
            except Exception as e:
                raise AutodiffFailsToo(f"{type(e).__name__}: {str(e).splitlines()[0]}") from None
        if isinstance(hand_error, AssertionError):
            raise
        raise AssertionError(f"{where}: {type(hand_error).__name__}: {hand_error}") from hand_error


def check_sharded(info, seed: int = 0, hypers=None) -> None:
    """Hand VJP (and output) with the data batch sharded equals the single-device result, at each of
    ``hypers`` (default: every setting of ``info``), under a mesh of ``Auto`` axes (the partitioner
    chooses) and one of ``Explicit`` axes (shardings in the types, ``jax.make_mesh``'s default).

    Raises ``AssertionError`` where a hand rule fails, and :class:`AutodiffFailsToo` where, under the
    explicit mesh, JAX autodiff of the plain forward fails as well (checked after the Auto mesh)."""
    n = len(jax.devices())
    meshes = (Mesh(np.array(jax.devices()), ("batch",), axis_types=(AxisType.Auto,)), _explicit_mesh(n))
    shape, batch = _sample(info, n)
    for hyper in info.hypers if hypers is None else hypers:
        args = info.args(seed, shape=shape)
        y_bar = random_cotangent(info.layer.auto(*args, **hyper))
        for mesh in meshes:
            _check_on(info, mesh, hyper, args, y_bar, batch)


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
            print(f"{info.name:<34} ok over {len(jax.devices())} devices, Auto and Explicit meshes")
        except AutodiffFailsToo as e:
            print(f"{info.name:<34} ok over {len(jax.devices())} devices, Auto mesh; Explicit mesh: "
                  f"JAX autodiff fails too ({e})")
        except AssertionError as e:
            failures += 1
            print(f"{info.name:<34} FAILED: {e}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
