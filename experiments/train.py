"""Train a jaxback model: one jit-compiled step, checkpoints, bit-exact resume, data parallelism.

    python experiments/train.py --model cnn                      # digits CNN, explicit mode
    python experiments/train.py --model transformer --steps 3000 # byte-level stdlib transformer
    python experiments/train.py --model cnn --ckpt-dir ck --resume   # continue where ck left off
    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python experiments/train.py --model cnn --devices 4      # the batch over 4 devices

What one step does (all of it inside a single ``jax.jit``): split the run's PRNG key, compute the
loss and the gradients in the chosen ``--mode``, update with optax, return the new training state
``{params, state (batch-norm statistics), opt_state, step, key}`` and the loss.

Modes (the same model, the same numbers up to rounding):
  explicit  ``jb.backprop``: each layer's hand-written ``fwd`` forward, then each ``bwd`` back from
            the loss; no ``jax.grad`` anywhere on the path.
  vjp       ``jax.value_and_grad`` through the model's ``apply``: JAX chains our hand rules.
  auto      ``jax.value_and_grad`` through ``model.auto`` and ``loss.auto``: plain JAX autodiff.

Batches, keys and resume: batch number ``k`` is a pure function of ``(--seed, k)`` (see
``experiments/data.py``) and the dropout key of step ``k`` comes from the key in the state, so a
checkpoint (params, model state, optimiser state, step, key and the data position) is all a run
needs to continue: training N steps straight, or N/2, save, restore and N/2 more gives bit-identical
parameters on CPU. ``--resume`` takes the newest good checkpoint; one of another model, shape, dtype
or tree structure is refused naming the first differing path, a damaged one is skipped with a
warning (``experiments/_checkpoint.py``).

Data parallelism: ``--devices N`` builds a ``jax.sharding.Mesh`` of N devices with one axis
``data``; every batch is split along its first axis over it, the training state is replicated.
The step itself is unchanged: XLA inserts the cross-device sums (batch-norm statistics, the loss
mean, the gradients), so the hand rules and the explicit mode run as they are. On several hosts,
start the same command on every host with ``--distributed`` (``jax.distributed.initialize()``).

The log (``--log FILE``, JSON lines; rewritten up to the restored step on ``--resume``):
  {"event": "start", ...}                          the configuration and the data set
  {"event": "train", "mode", "step", "loss", "lr"} every --log-every steps and the final step;
                                                   ``loss``: the float32 loss of that step as
                                                   computed (a Python float holds it exactly)
  {"event": "eval", "mode", "step", "loss", "accuracy" | "perplexity"}   every --eval-every steps
                                                   and the final step, on the test / validation set
  {"event": "grad_agreement", "step", "explicit_vs_auto", "vjp_vs_auto"}  with --compare-modes
  {"event": "resume", "step", "checkpoint"}        where a run continued from a checkpoint
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import textwrap
from typing import NamedTuple

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxback as jb

import data as datasets
from models import MODELS

MODES = ("explicit", "vjp", "auto")
LOSS = jb.softmax_cross_entropy
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup-cosine")

# Per model: the data it trains on and the flags' defaults (the CNN's reach >= 99.3 % test accuracy).
PRESETS = {
    "mlp": dict(data="digits", optimizer="sgd", lr=0.1, weight_decay=1e-4, schedule="constant", steps=2000,
                batch_size=32),
    "cnn": dict(data="digits", optimizer="momentum", lr=0.1, weight_decay=2e-3, schedule="cosine", steps=4000,
                batch_size=32),
    "transformer": dict(data="stdlib", optimizer="adamw", lr=3e-3, weight_decay=0.01, schedule="warmup-cosine",
                        steps=3000, batch_size=32),
}


# the command line -----------------------------------------------------------------------------------
def _preset_help(flag: str) -> str:
    return "Default per model: " + ", ".join(f"{m} {p[flag]}" for m, p in PRESETS.items())


def parser() -> argparse.ArgumentParser:
    """The command line (``--help`` prints the module docstring, then every flag)."""
    p = argparse.ArgumentParser(
        prog="experiments/train.py", description=textwrap.dedent(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to train")
    what.add_argument("--model", choices=sorted(MODELS), default="cnn",
                      help="the network (experiments/models.py). Default: cnn.")
    what.add_argument("--size", choices=("small", "tiny"), default="small",
                      help="model width: small for results, tiny for quick checks and tests. Default: small.")
    what.add_argument("--data", choices=sorted(datasets.DATASETS), default=None,
                      help="digits: scikit-learn's 8x8 digits, stratified 75/25 split; stdlib: bytes of the "
                           "Python standard library's source (experiments/data.py). " + _preset_help("data"))
    what.add_argument("--context", metavar="T", type=int, default=64,
                      help="stdlib only: bytes of context per training window. Default: 64.")
    what.add_argument("--mode", choices=MODES, default="explicit",
                      help="how gradients are computed: explicit (jb.backprop, the hand rules walked back "
                           "by hand), vjp (jax.value_and_grad chaining the hand rules), auto (plain "
                           "autodiff of model.auto). Default: explicit.")
    what.add_argument("--compare-modes", action="store_true",
                      help="train once per mode from the same start over the same batches, log each "
                           "(records carry 'mode'), and along the explicit run log the gradient agreement "
                           "of explicit and vjp with auto at every logged step. No checkpoints.")
    how = p.add_argument_group("optimisation")
    how.add_argument("--optimizer", choices=OPTIMIZERS, default=None,
                     help="optax: sgd and momentum (0.9) and adam add weight decay to the gradient "
                          "(optax.add_decayed_weights, the seed's W <- W - lr (dW + wd W)); adamw "
                          "decouples it. " + _preset_help("optimizer"))
    how.add_argument("--lr", metavar="LR", type=float, default=None, help="peak learning rate. " + _preset_help("lr"))
    how.add_argument("--weight-decay", metavar="WD", type=float, default=None,
                     help="weight decay on every parameter. " + _preset_help("weight_decay"))
    how.add_argument("--schedule", choices=SCHEDULES, default=None,
                     help="learning rate over the run: constant, cosine decay to 0 over --steps, or linear "
                          "warm-up over --warmup steps then cosine decay. " + _preset_help("schedule"))
    how.add_argument("--warmup", metavar="K", type=int, default=None,
                     help="warm-up steps of warmup-cosine. Default: 5%% of --steps.")
    how.add_argument("--batch-size", metavar="N", type=int, default=None,
                     help="global batch size (split over --devices). " + _preset_help("batch_size"))
    how.add_argument("--steps", metavar="N", type=int, default=None,
                     help="total optimiser steps of the run (the schedules span them). " + _preset_help("steps"))
    how.add_argument("--seed", metavar="S", type=int, default=0,
                     help="seeds the initialisation, the dropout keys, the batch order and the digits "
                          "split. Default: 0.")
    ck = p.add_argument_group("checkpoints")
    ck.add_argument("--ckpt-dir", metavar="DIR", default=None,
                    help="save checkpoints here with orbax (one directory per step). Default: none.")
    ck.add_argument("--ckpt-every", metavar="K", type=int, default=500,
                    help="save every K steps (and always at the end of the invocation). Default: 500.")
    ck.add_argument("--keep", metavar="K", type=int, default=3, help="keep the last K checkpoints. Default: 3.")
    ck.add_argument("--resume", action="store_true",
                    help="continue from the newest good checkpoint in --ckpt-dir (start afresh if there "
                         "is none). Without it, a --ckpt-dir that holds checkpoints is an error.")
    ck.add_argument("--stop-after", metavar="K", type=int, default=None,
                    help="train at most K steps in this invocation, save, and exit (for time-limited "
                         "jobs; continue with --resume). Default: run to --steps.")
    dev = p.add_argument_group("devices")
    dev.add_argument("--devices", metavar="N", type=int, default=1,
                     help="shard each batch over the first N devices (jax.sharding.Mesh, axis 'data'); "
                          "the training state is replicated. On CPU, simulate devices with "
                          "XLA_FLAGS=--xla_force_host_platform_device_count=N. Default: 1.")
    dev.add_argument("--distributed", action="store_true",
                     help="call jax.distributed.initialize() first (one process per host; each loads "
                          "its own slice of every batch). Default: off.")
    out = p.add_argument_group("output")
    out.add_argument("--log", metavar="FILE", default=None, help="write JSON lines here (see above). Default: none.")
    out.add_argument("--log-every", metavar="K", type=int, default=50,
                     help="log the training loss every K steps (the final step always). Default: 50.")
    out.add_argument("--eval-every", metavar="K", type=int, default=500,
                     help="evaluate on the test / validation set every K steps (and at the end). Default: 500.")
    out.add_argument("--plots", metavar="DIR", default=None,
                     help="write PNGs here: training.png (loss and accuracy or perplexity per step), "
                          "backward_flow.png (|dL/dX| and |dL/dW| layer by layer, at the start and the end), "
                          "grad_agreement.png with --compare-modes. Default: none.")
    out.add_argument("--quiet", action="store_true", help="no progress bar. Default: off.")
    return p


def parse(argv=None) -> argparse.Namespace:
    """Parse ``argv`` and fill the per-model defaults; check the flags against each other."""
    p = parser()
    args = p.parse_args(argv)
    for flag, value in PRESETS[args.model].items():
        if getattr(args, flag) is None:
            setattr(args, flag, value)
    if args.warmup is None:
        args.warmup = max(1, args.steps // 20)
    for flag in ("steps", "batch_size", "ckpt_every", "keep", "log_every", "eval_every", "devices"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1; got {getattr(args, flag)}.")
    if args.batch_size % args.devices:
        p.error(f"--batch-size {args.batch_size} must be a multiple of --devices {args.devices} "
                f"(each device takes an equal slice).")
    if args.compare_modes and (args.ckpt_dir or args.resume):
        p.error("--compare-modes trains three runs side by side and takes no checkpoints; drop --ckpt-dir/--resume.")
    if args.resume and not args.ckpt_dir:
        p.error("--resume needs --ckpt-dir.")
    wants = {"mlp": "digits", "cnn": "digits", "transformer": "stdlib"}[args.model]
    if args.data != wants:
        p.error(f"--model {args.model} trains on --data {wants}; got --data {args.data}.")
    return args


# the pieces of a run ---------------------------------------------------------------------------------
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


def loss_and_grads(model, mode: str):
    """``f(params, state, inputs, targets, key) -> (loss, new_state, grads)`` in ``mode``."""
    stateful = model.has_state

    def forward(method, loss_method, params, state, inputs, targets, key):
        out = method(params, inputs, state, key=key, training=True)
        logits, new_state = out if stateful else (out, None)
        return loss_method(logits, targets), new_state

    def f(params, state, inputs, targets, key):
        if mode == "explicit":
            out, grads = jb.backprop(model, LOSS, params, inputs, targets, state=state, key=key, training=True)
            loss, new_state = out if stateful else (out, None)
            return loss, new_state, grads
        method, loss_method = (model, LOSS) if mode == "vjp" else (model.auto, LOSS.auto)
        (loss, new_state), grads = jax.value_and_grad(
            functools.partial(forward, method, loss_method), has_aux=True)(params, state, inputs, targets, key)
        return loss, new_state, grads
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


class TrainState(NamedTuple):
    """What a step carries and a checkpoint stores (with the data position, in its meta)."""

    params: object     # the model's parameters (a tuple per serial, the layers' records)
    state: object      # the model's state (batch-norm running statistics), None without one
    opt_state: object  # optax's state (momentum, Adam moments, step count)
    step: object       # int32 scalar: updates done
    key: object        # uint32[2]: the PRNG key the next step splits


class Setup(NamedTuple):
    """Everything a run compiles once: the model, the data, the jitted functions and the start."""

    model: jb.Model
    dataset: datasets.Dataset
    lr: object
    step: object          # jitted (train_state, batch) -> (train_state, loss), in the run's mode
    evaluate: object      # jitted (params, state, inputs, targets) -> (loss, accuracy), training=False
    agreement: object     # jitted (train_state, batch) -> (explicit_vs_auto, vjp_vs_auto)
    flow: tuple           # (jitted (params, state, batch, key) -> [(|x_bar|, |params_bar|)], their paths)
    start: TrainState     # the initial training state (replicated over the mesh)
    names: list           # one path per leaf of the training state
    mesh: object


def mesh_for(n: int):
    """A 1-axis ``data`` mesh of the first ``n`` devices."""
    devices = jax.devices()
    if n > len(devices):
        raise SystemExit(f"--devices {n}: only {len(devices)} device(s) visible ({devices[0].platform}). On CPU, "
                         f"set XLA_FLAGS=--xla_force_host_platform_device_count={n} before starting Python.")
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


@functools.lru_cache(maxsize=None)
def prepare(model_name, size, data_name, context, optimizer_name, lr, weight_decay, schedule_name, warmup, steps,
            seed, devices) -> dict:
    """What every mode of one configuration shares (cached: the modes and a resumed run reuse it)."""
    args = argparse.Namespace(model=model_name, optimizer=optimizer_name, lr=lr, weight_decay=weight_decay,
                              schedule=schedule_name, warmup=warmup, steps=steps)
    dataset = datasets.load(data_name, seed=seed, model=model_name, context=context)
    facts = dict(classes=dataset.info.get("classes"), vocab=dataset.info.get("vocab"), context=context)
    model = MODELS[model_name](size=size, **facts)
    lr_fn = schedule(args)
    opt = optimizer(args, lr_fn)
    example = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), dataset.example)

    @jax.jit  # one compiled program for the whole initialisation (eagerly, every op compiles alone)
    def initial(seed_key):
        init_key, train_key = jax.random.split(seed_key)
        params, state = model.init(init_key, example)
        return TrainState(params, state, opt.init(params), jnp.zeros((), jnp.int32), train_key)

    start = initial(jax.random.PRNGKey(seed))
    mesh = mesh_for(devices)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    sharded = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    grads_of = {m: loss_and_grads(model, m) for m in MODES}

    def evaluate(forward, loss_fn, params, state, inputs, targets):
        out = forward(params, inputs, state, training=False)
        logits = out[0] if model.has_state else out
        return loss_fn(logits, targets), jnp.mean(jnp.argmax(logits, -1) == targets)

    def agreement(ts, batch):
        key = jax.random.split(ts.key)[1]
        grads = {m: grads_of[m](ts.params, ts.state, *batch, key)[2] for m in MODES}
        return relative_difference(grads["explicit"], grads["auto"]), relative_difference(grads["vjp"], grads["auto"])

    layer_order = []  # the record's paths in forward order, filled while tracing (jit sorts dict keys)

    def flow(params, state, batch, key):
        *_, record = jb.backprop(model, LOSS, params, *batch, state=state, key=key, training=True, record=True)
        layer_order[:] = list(record)
        return [(_norm(r["x_bar"]), _norm(r["params_bar"])) for r in record.values()]

    on_mesh = lambda f: jax.jit(f, in_shardings=(replicated, sharded), out_shardings=replicated)
    return dict(
        model=model, dataset=dataset, lr=lr_fn, opt=opt, grads_of=grads_of, on_mesh=on_mesh, mesh=mesh,
        evaluate={"apply": jax.jit(functools.partial(evaluate, model, LOSS)),
                  "auto": jax.jit(functools.partial(evaluate, model.auto, LOSS.auto))},
        agreement=on_mesh(agreement), flow=(jax.jit(flow), layer_order),
        start=jax.device_put(start, replicated), names=state_names(model, start))


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

    fields = {k: shared[k] for k in ("model", "dataset", "lr", "agreement", "flow", "start", "names", "mesh")}
    return Setup(step=shared["on_mesh"](step), evaluate=shared["evaluate"]["auto" if mode == "auto" else "apply"],
                 **fields)


def _norm(tree):
    """The L2 norm over every float leaf of ``tree``; NaN when there is none (integer inputs)."""
    leaves = [l for l in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(l.dtype, jnp.floating)]
    if not leaves:
        return jnp.float32(jnp.nan)
    return jnp.sqrt(sum(jnp.sum(jnp.square(l.astype(jnp.float32))) for l in leaves))


def setup_for(args, mode: str) -> Setup:
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


# one run ---------------------------------------------------------------------------------------------
class Log:
    """The JSON-lines log (``--log``), also kept in memory (``records``) for the plots."""

    def __init__(self, path, keep_until=None):
        self.path, self.records = path, []
        if path and keep_until is not None and os.path.exists(path):
            with open(path) as f:
                self.records = [r for r in map(json.loads, f) if r.get("step", 0) <= keep_until]
        if path and jax.process_index() == 0:  # one writer on several hosts
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in self.records)

    def write(self, **record):
        self.records.append(record)
        if self.path and jax.process_index() == 0:
            with open(self.path, "a") as f:
                f.write(json.dumps(record) + "\n")


def evaluation(setup: Setup, kind: str, ts, mode: str, step: int) -> dict:
    """The eval record: test loss and accuracy, or validation loss and perplexity (per byte)."""
    inputs, targets = setup.dataset.evaluation
    loss, accuracy = setup.evaluate(ts.params, ts.state, inputs, targets)
    record = dict(event="eval", mode=mode, step=step, loss=float(loss))
    if kind == "classification":
        record["accuracy"] = float(accuracy)
    else:
        record["perplexity"] = math.exp(float(loss))
    return record


def train(args, mode: str, log: Log, ckpt=None, resumed=None) -> dict:
    """Train ``mode`` from the start (or ``resumed``: a restored training state and its meta)."""
    from tqdm import tqdm

    setup = setup_for(args, mode)
    ts, position = setup.start, 0
    if resumed is not None:
        ts, meta = resumed
        position = meta["data_position"]
    first = int(ts.step)
    last = args.steps if args.stop_after is None else min(args.steps, first + args.stop_after)
    flow_start = flow_norms(setup, ts, args) if args.plots else None
    bar = tqdm(range(first, last), initial=first, total=args.steps, desc=mode, disable=args.quiet,
               dynamic_ncols=True)
    for i in bar:
        batch = global_batch(setup, position, args.batch_size)
        if args.compare_modes and mode == MODES[0] and _due(i + 1, args.log_every, args.steps):
            e, v = setup.agreement(ts, batch)
            log.write(event="grad_agreement", step=i + 1, explicit_vs_auto=float(e), vjp_vs_auto=float(v))
        ts, loss = setup.step(ts, batch)
        position += 1
        step = i + 1
        if _due(step, args.log_every, args.steps) or step == last:
            log.write(event="train", mode=mode, step=step, loss=float(loss), lr=float(setup.lr(i)))
            bar.set_postfix(loss=f"{float(loss):.4f}")
        if _due(step, args.eval_every, args.steps):
            log.write(**evaluation(setup, setup.dataset.kind, ts, mode, step))
        if ckpt is not None and (step % args.ckpt_every == 0 or step == last):
            ckpt.save(step, ts, setup.names, dict(data_position=position, config=config_of(args)))
    bar.close()
    if first == last and first == args.steps:  # resumed a finished run: say where it stands
        log.write(**evaluation(setup, setup.dataset.kind, ts, mode, first))
    flows = (flow_start, flow_norms(setup, ts, args)) if args.plots else None
    return dict(state=ts, flows=flows, setup=setup)


def _due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def flow_norms(setup: Setup, ts, args) -> dict:
    """``{path: (|dL/dX|, |dL/dW|)}`` for batch 0 at ``ts``'s parameters (explicit mode's record)."""
    batch = global_batch(setup, 0, args.batch_size)
    flow, order = setup.flow
    norms = flow(ts.params, ts.state, batch, jax.random.PRNGKey(args.seed))
    return dict(step=int(ts.step), norms={p: tuple(float(v) for v in n) for p, n in zip(order, norms)})


def config_of(args) -> dict:
    """The flags that fix what is trained (stored in checkpoints, written in the start record)."""
    keys = ("model", "size", "data", "context", "mode", "optimizer", "lr", "weight_decay", "schedule", "warmup",
            "batch_size", "steps", "seed")
    return {k: getattr(args, k) for k in keys}


def main(argv=None) -> dict:
    """Run the command line; returns ``{mode: result}`` (used by the tests)."""
    args = parse(argv)
    if args.distributed:
        jax.distributed.initialize()
    modes = MODES if args.compare_modes else (args.mode,)
    ckpt, resumed = None, None
    if args.ckpt_dir:
        from _checkpoint import Checkpoints
        ckpt = Checkpoints(args.ckpt_dir, args.keep)
        if ckpt.manager.latest_step() is not None and not args.resume:
            raise SystemExit(f"{ckpt.directory} already holds checkpoints (newest: step "
                             f"{ckpt.manager.latest_step()}); pass --resume to continue, or use another --ckpt-dir.")
        if args.resume:
            setup = setup_for(args, args.mode)
            resumed = ckpt.restore_latest(setup.start, setup.names)
    at = int(resumed[0].step) if resumed else None
    log = Log(args.log, keep_until=at)
    if resumed is None:
        log.write(event="start", config=config_of(args), devices=args.devices,
                  data=setup_for(args, modes[0]).dataset.info)
    else:
        log.write(event="resume", step=at, checkpoint=ckpt.path(at))
        print(f"resumed from {ckpt.path(at)}")
    try:
        results = {m: train(args, m, log, ckpt, resumed) for m in modes}
    finally:
        if ckpt is not None:
            ckpt.close()
    summarise(args, modes, log, results)
    return dict(results=results, records=log.records)


def summarise(args, modes, log: Log, results) -> None:
    """Print the final evaluation per mode (and the text baselines); draw the plots."""
    info = results[modes[0]]["setup"].dataset.info
    finals = {m: [r for r in log.records if r["event"] == "eval" and r["mode"] == m][-1:] for m in modes}
    if not all(finals.values()):  # stopped (--stop-after) before the first evaluation
        print(f"stopped at step {int(results[modes[0]]['state'].step)} of {args.steps}; continue with --resume.")
        return
    finals = {m: r[0] for m, r in finals.items()}
    metric = "accuracy" if "accuracy" in finals[modes[0]] else "perplexity"
    print(f"\n{'mode':<9} {'step':>6} {'eval loss':>10} {metric:>11}")
    for m in modes:
        r = finals[m]
        value = f"{100 * r[metric]:10.2f}%" if metric == "accuracy" else f"{r[metric]:11.3f}"
        print(f"{m:<9} {r['step']:>6} {r['loss']:>10.4f} {value}")
    if metric == "perplexity":
        for name in ("unigram", "bigram"):
            ppl = info[f"{name}_perplexity"]
            print(f"{name:<9} {'':>6} {math.log(ppl):>10.4f} {ppl:11.3f}")
    if args.plots and jax.process_index() == 0:
        import _plots
        _plots.training(os.path.join(args.plots, "training.png"), args, modes, log.records, info)
        _plots.backward_flow(os.path.join(args.plots, "backward_flow.png"), args, results[modes[0]]["flows"])
        if args.compare_modes:
            _plots.grad_agreement(os.path.join(args.plots, "grad_agreement.png"), args, log.records)


if __name__ == "__main__":
    main()
