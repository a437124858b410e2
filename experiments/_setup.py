"""What a run of ``experiments/train.py`` compiles once: the network, the data, the jitted step,
evaluation and gradient agreement, the start state, the device mesh.

The three gradient modes come from one place, :func:`gradients` (``jb.value_and_grad``); the step
is the same for every mode: split the run's key, loss and gradients, optax update.
"""

from __future__ import annotations

import argparse
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxback as jb

import _checks
import data as datasets
from models import NETWORKS, Network
from presets import PRESETS

__all__ = ["TrainState", "Setup", "gradients", "relative_difference", "setup_for", "global_batch", "schedule"]


def gradients(network: Network, mode: str):
    """``f(params, state, inputs, targets, key, record=False) -> (loss, new_state, grads[, record])``
    in ``mode`` (``jb.MODES``), training; ``new_state`` is None for a model without state."""
    grad_fn = jb.value_and_grad(network.model, network.loss, mode=mode)
    stateful = network.model.has_state

    def f(params, state, inputs, targets, key, record=False):
        given = dict(state=state) if stateful else {}
        value, grads, *rest = grad_fn(params, network.feed(inputs), targets, key=key, record=record, **given)
        loss, new_state = value if stateful else (value, None)
        return (loss, new_state, grads, *rest)
    return f


def relative_difference(grads, reference):
    """max|g - r| / max|r|, each max over every entry of every leaf: the error on the gradient's scale.

    Not per leaf: a conv bias followed by batch norm has a true gradient of 0 (the norm removes the
    mean), so its computed gradient is rounding noise and its own relative error is O(1).
    """
    leaves = list(zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(reference)))
    diff = jnp.max(jnp.stack([jnp.max(jnp.abs(g - r)) for g, r in leaves]))
    scale = jnp.max(jnp.stack([jnp.max(jnp.abs(r)) for _, r in leaves]))
    return diff / jnp.maximum(scale, jnp.finfo(scale.dtype).tiny)


def schedule(args):
    """The learning rate per step (an optax schedule)."""
    if args.schedule == "constant":
        return optax.constant_schedule(args.lr)
    if args.schedule == "cosine":
        return optax.cosine_decay_schedule(args.lr, args.steps)
    return optax.warmup_cosine_decay_schedule(0.0, args.lr, min(args.warmup, args.steps - 1), args.steps)


def optimizer(args, lr):
    """The optax transformation of ``--optimizer`` (see its help)."""
    if args.optimizer == "adamw":
        return optax.adamw(lr, weight_decay=args.weight_decay)
    base = {"sgd": lambda: optax.sgd(lr), "momentum": lambda: optax.sgd(lr, momentum=0.9),
            "adam": lambda: optax.adam(lr)}[args.optimizer]()
    return optax.chain(optax.add_decayed_weights(args.weight_decay), base)


class TrainState(NamedTuple):
    """What a step carries and a checkpoint stores (with the data position, in its meta)."""

    params: object     # the model's parameters (a tuple per serial, the layers' records)
    state: object      # the model's state (batch-norm running statistics), None without one
    opt_state: object  # optax's state (momentum, Adam moments, step count)
    step: object       # int32 scalar: updates done
    key: object        # uint32[2]: the PRNG key the next step splits


class Setup(NamedTuple):
    """Everything a run compiles once: the network, the data, the jitted functions and the start."""

    network: Network
    dataset: datasets.Dataset
    lr: object
    step: object          # jitted (train_state, batch) -> (train_state, loss), in the run's mode
    evaluate: object      # jitted (params, state, inputs, targets) -> {loss, accuracy, sequence_accuracy}
    agreement: object     # jitted (train_state, batch) -> (explicit_vs_auto, vjp_vs_auto)
    flow: tuple           # (jitted (params, state, batch, key) -> [(|x_bar|, |params_bar|)], their paths)
    start: TrainState     # the initial training state (replicated over the mesh)
    names: list           # one path per leaf of the training state
    mesh: object


def mesh_for(n: int):
    """A 1-axis ``data`` mesh of the first ``n`` devices."""
    devices = jax.devices()
    if (problem := _checks.devices(argparse.Namespace(devices=n))) is not None:
        raise SystemExit(problem)
    return jax.sharding.Mesh(np.array(devices[:n]), ("data",))


def state_names(model, train_state) -> list:
    """A readable path per leaf of the training state: params/state by the model's own paths."""
    names = []
    for part, tree in train_state._asdict().items():
        if part in ("params", "state") and tree is not None:
            own = list(model.paths(tree))
            if len(own) == len(jax.tree_util.tree_leaves(tree)):
                names += [f"{part}.{n}" for n in own]
                continue
        names += [part + jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]
    return names


def _norm(tree):
    """The L2 norm over every float leaf of ``tree``; NaN when there is none (integer inputs)."""
    leaves = [l for l in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(l.dtype, jnp.floating)]
    if not leaves:
        return jnp.float32(jnp.nan)
    return jnp.sqrt(sum(jnp.sum(jnp.square(l.astype(jnp.float32))) for l in leaves))


def metrics(network: Network, method: str, params, state, inputs, targets) -> dict:
    """Loss, accuracy per target and per row (all of a row's targets right), training=False."""
    model = network.model if method == "apply" else network.model.auto
    out = model(params, network.feed(inputs), *((state,) if network.model.has_state else ()), training=False)
    logits = out[0] if network.model.has_state else out
    hit = jnp.argmax(network.answers(logits, targets), -1) == targets
    loss = (network.loss if method == "apply" else network.loss.auto)(logits, targets)
    return dict(loss=loss, accuracy=jnp.mean(hit), sequence_accuracy=jnp.mean(jnp.all(hit.reshape(len(hit), -1), 1)))


@functools.lru_cache(maxsize=None)
def prepare(preset, size, data_name, context, optimizer_name, lr, weight_decay, schedule_name, warmup, steps, seed,
            devices) -> dict:
    """What every mode of one configuration shares (cached: the modes and a resumed run reuse it)."""
    config = PRESETS[preset]
    args = argparse.Namespace(optimizer=optimizer_name, lr=lr, weight_decay=weight_decay, schedule=schedule_name,
                              warmup=warmup, steps=steps)
    dataset = datasets.load(data_name, seed=seed, context=context, **config["data_options"])
    network = NETWORKS[config["network"]](size=size, **dataset.info)
    lr_fn = schedule(args)
    opt = optimizer(args, lr_fn)
    example = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), dataset.example)

    @jax.jit  # one compiled program for the whole initialisation (eagerly, every op compiles alone)
    def initial(seed_key):
        init_key, train_key = jax.random.split(seed_key)
        params, state = network.model.init(init_key, network.feed(jnp.zeros(example.shape, example.dtype)))
        return TrainState(params, state, opt.init(params), jnp.zeros((), jnp.int32), train_key)

    start = initial(jax.random.PRNGKey(seed))
    mesh = mesh_for(devices)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    grads_of = {m: gradients(network, m) for m in jb.MODES}

    def agreement(ts, batch):
        key = jax.random.split(ts.key)[1]  # the key the step at ts will use
        grads = {m: grads_of[m](ts.params, ts.state, *batch, key)[2] for m in jb.MODES}
        return relative_difference(grads["explicit"], grads["auto"]), relative_difference(grads["vjp"], grads["auto"])

    layer_order = []  # the record's paths in forward order, filled while tracing (jit sorts dict keys)

    def flow(params, state, batch, key):
        record = grads_of["explicit"](params, state, *batch, key, record=True)[-1]
        layer_order[:] = list(record)
        return [(_norm(r["x_bar"]), _norm(r["params_bar"])) for r in record.values()]

    on_mesh = lambda f: jax.jit(f, in_shardings=(replicated, sharded), out_shardings=replicated)
    return dict(
        network=network, dataset=dataset, lr=lr_fn, opt=opt, grads_of=grads_of, on_mesh=on_mesh, mesh=mesh,
        evaluate={m: jax.jit(functools.partial(metrics, network, m)) for m in ("apply", "auto")},
        agreement=on_mesh(agreement), flow=(jax.jit(flow), layer_order),
        start=jax.device_put(start, replicated), names=state_names(network.model, start))


@functools.lru_cache(maxsize=None)
def build(mode: str, *config) -> Setup:
    """``prepare(*config)`` and the jitted train step of ``mode`` (cached like ``prepare``)."""
    shared = prepare(*config)
    grads, opt = shared["grads_of"][mode], shared["opt"]

    def step(ts, batch):
        key, step_key = jax.random.split(ts.key)
        loss, new_state, g = grads(ts.params, ts.state, *batch, step_key)
        updates, opt_state = opt.update(g, ts.opt_state, ts.params)
        return TrainState(optax.apply_updates(ts.params, updates), new_state, opt_state, ts.step + 1, key), loss

    fields = {k: shared[k] for k in ("network", "dataset", "lr", "agreement", "flow", "start", "names", "mesh")}
    return Setup(step=shared["on_mesh"](step), evaluate=shared["evaluate"]["auto" if mode == "auto" else "apply"],
                 **fields)


def setup_for(args, mode: str) -> Setup:
    """The cached :class:`Setup` of the parsed flags ``args`` in ``mode``."""
    return build(mode, args.model, args.size, args.data, args.context, args.optimizer, args.lr, args.weight_decay,
                 args.schedule, args.warmup, args.steps, args.seed, args.devices)


def global_batch(setup: Setup, position: int, batch_size: int):
    """Batch number ``position``, sharded over the mesh; each process supplies its own rows."""
    inputs, targets = setup.dataset.batch(position, batch_size)
    sharding = jax.sharding.NamedSharding(setup.mesh, jax.sharding.PartitionSpec("data"))
    share = lambda a: a.shape[0] // jax.process_count()
    mine = lambda a: a[jax.process_index() * share(a):(jax.process_index() + 1) * share(a)]
    return jax.tree_util.tree_map(lambda a: jax.make_array_from_process_local_data(sharding, mine(a), a.shape),
                                  (inputs, targets))
