"""Train a jaxback model: presets, one jit-compiled step, checkpoints, bit-exact resume, devices.

    python experiments/train.py --model mlp --compare-modes      # digits MLP in the three modes
    python experiments/train.py --model cnn                      # digits CNN, explicit mode
    python experiments/train.py --model lm --steps 3000          # byte-level stdlib transformer
    python experiments/train.py --model copy-lstm                # the copy task, an LSTM
    python experiments/train.py --model cnn --ckpt-dir ck --resume   # continue where ck left off
    XLA_FLAGS=--xla_force_host_platform_device_count=4 \\
        python experiments/train.py --model cnn --devices 4      # the batch over 4 devices

Presets (``experiments/presets.py``: the network of ``experiments/models.py``, the data of
``experiments/data.py``, the optimisation defaults): mlp and cnn (digits), lm (stdlib bytes;
``transformer`` is its old name), copy-attention and copy-lstm (the copy task).

What one step does (all of it inside a single ``jax.jit``): split the run's PRNG key, compute the
loss and the gradients in the chosen ``--mode`` (``jb.value_and_grad(model, loss, mode=...)``),
update with optax, return the new training state ``{params, state (batch-norm statistics),
opt_state, step, key}`` and the loss.

Modes (the same model, the same numbers up to rounding):
  explicit  ``jb.backprop``: each layer's hand-written ``fwd`` forward, then each ``bwd`` back from
            the loss; no ``jax.grad`` anywhere on the path.
  vjp       ``jax.value_and_grad`` through the model's ``apply``: JAX chains our hand rules.
  auto      ``jax.value_and_grad`` through ``model.auto`` and ``loss.auto``: plain JAX autodiff.
``--compare-modes`` trains all three from the same start over the same batches and, along the
explicit run, compares their gradients at the same parameters and batch: max|g - g_auto| /
max|g_auto| over all weights (``_setup.relative_difference``).

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
  {"event": "eval", "mode", "step", "loss", metrics...}  every --eval-every steps and the final
                                                   step, on the test / validation set; metrics:
                                                   accuracy, perplexity or sequence_accuracy
  {"event": "grad_agreement", "step", "explicit_vs_auto", "vjp_vs_auto"}  with --compare-modes
  {"event": "resume", "step", "checkpoint", "changed"}  where a run continued from a checkpoint
                                                   (changed: the flags --allow-config-change let differ)
"""

from __future__ import annotations

import math
import os
import sys

import jax
import jax.numpy as jnp

import jaxback as jb

import _cli
import _stop
from _log import Log
from _setup import Setup, global_batch, setup_for
from _summary import summary, table

__all__ = ["main", "parse", "train", "summary", "table", "global_batch", "setup_for", "MODES"]

MODES = jb.MODES


def parse(argv=None):
    """The parsed command line, the preset's defaults filled in (``_cli.parse``)."""
    return _cli.parse(argv, __doc__)


# one run ---------------------------------------------------------------------------------------------
def evaluation(setup: Setup, ts, mode: str, step: int) -> dict:
    """The eval record: loss and the data set's metrics on the test / validation set
    (perplexity per byte is exp of the loss; accuracy per target; sequence_accuracy per row)."""
    inputs, targets = setup.dataset.evaluation
    values = {k: float(v) for k, v in setup.evaluate(ts.params, ts.state, inputs, targets).items()}
    values["perplexity"] = math.exp(values["loss"])
    return dict(event="eval", mode=mode, step=step, loss=values["loss"],
                **{m: values[m] for m in setup.dataset.metrics})


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
    recent = []
    with _stop.requests() as stop:
        for i in bar:
            batch = global_batch(setup, position, args.batch_size)
            if args.compare_modes and mode == MODES[0] and _due(i + 1, args.log_every, args.steps):
                e, v = setup.agreement(ts, batch)
                log.write(event="grad_agreement", step=i + 1, explicit_vs_auto=float(e), vjp_vs_auto=float(v))
            recent, saved = (recent + [(ts, position)])[-2:], None  # for a non-finite loss: what to save
            ts, loss = setup.step(ts, batch)
            position += 1
            step, stopping, value = i + 1, stop.signum is not None, float(loss)
            if _due(step, args.log_every, args.steps) or step == last or stopping or not math.isfinite(value):
                log.write(event="train", mode=mode, step=step, loss=value, lr=float(setup.lr(i)))
                bar.set_postfix(loss=f"{value:.4f}")
            if not math.isfinite(value):
                bar.close()
                raise _non_finite(ckpt, args, setup, recent, first, step, value)
            if _due(step, args.eval_every, args.steps):
                log.write(**evaluation(setup, ts, mode, step))
            if ckpt is not None and (step % args.ckpt_every == 0 or step == last or stopping):
                saved = _save(ckpt, args, setup, ts, position)
            if stopping:
                bar.close()
                raise _stop.Interrupted(stop.signum, step, saved)
    bar.close()
    if first == last and first == args.steps:  # resumed a finished run: say where it stands
        log.write(**evaluation(setup, ts, mode, first))
    flows = (flow_start, flow_norms(setup, ts, args)) if args.plots else None
    return dict(state=ts, flows=flows, setup=setup)


def _save(ckpt, args, setup: Setup, ts, position: int) -> str:
    """Checkpoint ``ts`` (at data position ``position``); returns its path."""
    ckpt.save(int(ts.step), ts, setup.names, dict(data_position=position, config=_cli.config_of(args)))
    return ckpt.path(int(ts.step))


def _non_finite(ckpt, args, setup: Setup, recent, first: int, step: int, value: float) -> _stop.NonFiniteLoss:
    """The error to raise when the loss of ``step`` is ``value`` (not finite), after saving the newest
    of the ``recent`` (state, data position) pairs whose parameters are all finite: the update that
    gave the last finite loss may itself have overflowed."""
    finite = lambda tree: all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(tree))
    good = next(((ts, position) for ts, position in reversed(recent) if finite(ts.params)), None)
    at = None if good is None else int(good[0].step)
    saved = None
    if ckpt is not None and at:  # on disk already: the restored step and the --ckpt-every ones
        saved = ckpt.path(at) if at == first or at % args.ckpt_every == 0 else _save(ckpt, args, setup, *good)
    return _stop.NonFiniteLoss(step, at, saved, value, float(setup.lr(step - 1)))


def _due(step: int, every: int, total: int) -> bool:
    return step % every == 0 or step == total


def flow_norms(setup: Setup, ts, args) -> dict:
    """``{path: (|dL/dX|, |dL/dW|)}`` for batch 0 at ``ts``'s parameters (explicit mode's record)."""
    batch = global_batch(setup, 0, args.batch_size)
    flow, order = setup.flow
    norms = flow(ts.params, ts.state, batch, jax.random.PRNGKey(args.seed))
    return dict(step=int(ts.step), norms={p: tuple(float(v) for v in n) for p, n in zip(order, norms)})


def main(argv=None) -> dict:
    """Run the command line; returns ``{mode: result}`` (used by the tests)."""
    args = parse(argv)
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
    changed = _cli.config_changes(resumed[1].get("config", {}), args) if resumed else []
    if changed and not args.allow_config_change:
        ckpt.close()
        raise SystemExit(f"checkpoint {ckpt.path(at)} was written with other flags: {', '.join(changed)}. "
                         f"Resume with its flags, or pass --allow-config-change to continue with the new ones.")
    log = Log(args.log, keep_until=at)
    if resumed is None:
        log.write(event="start", config=_cli.config_of(args), devices=args.devices,
                  data=setup_for(args, modes[0]).dataset.info)
    else:
        log.write(event="resume", step=at, checkpoint=ckpt.path(at), changed=changed)
        print(f"resumed from {ckpt.path(at)}" + (" with changed flags: " + ", ".join(changed) if changed else ""))
    try:
        results = {m: train(args, m, log, ckpt, resumed) for m in modes}
    except _stop.Stopped as stop:  # the checkpoint is written (close waits for it): say so, exit
        stopped = stop
    else:
        stopped = None
    finally:
        if ckpt is not None:
            ckpt.close()
    if stopped is not None:
        print(stopped.report(sys.argv[1:] if argv is None else argv), file=sys.stderr)
        raise SystemExit(stopped.code)
    summarise(args, modes, log, results)
    return dict(results=results, records=log.records)


def summarise(args, modes, log: Log, results) -> None:
    """Print the final evaluation per mode (and the text baselines); draw the plots."""
    setup = results[modes[0]]["setup"]
    rows = summary(log.records, modes)
    if not rows:  # stopped (--stop-after) before the first evaluation
        print(f"stopped at step {int(results[modes[0]]['state'].step)} of {args.steps}; continue with --resume.")
        return
    lines = table(rows, setup.dataset.metrics, setup.dataset.info)
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    print(f"\n{args.model} on {args.data}: {args.steps} steps of {args.optimizer} (lr {args.lr:g}, {args.schedule}), "
          f"batch {args.batch_size}, seed {args.seed}")
    for line in lines:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    if args.compare_modes:
        print(f"grad vs auto: max|g - g_auto| / max|g_auto| over all weights, the worst of "
              f"{rows[modes[0]]['checks']} checks along the explicit run (the same parameters and batch)")
    if args.plots and jax.process_index() == 0:
        import _plots
        _plots.training(os.path.join(args.plots, "training.png"), args, modes, log.records, setup.dataset.info,
                        setup.dataset.metrics[0])
        _plots.backward_flow(os.path.join(args.plots, "backward_flow.png"), args, results[modes[0]]["flows"])
        if args.compare_modes:
            _plots.grad_agreement(os.path.join(args.plots, "grad_agreement.png"), args, log.records)


if __name__ == "__main__":
    main()
