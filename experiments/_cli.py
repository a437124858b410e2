"""The command line of ``experiments/train.py``: its flags, the presets' defaults, the checks
between flags (``parse``), and the configuration a checkpoint stores (``config_of``)."""

from __future__ import annotations

import argparse
import textwrap

import jaxback as jb

import _checks
import data as datasets
from presets import ALIASES, FLAGS, PRESETS, resolve

__all__ = ["parser", "parse", "config_of", "config_changes", "OPTIMIZERS", "SCHEDULES"]

MODES = jb.MODES
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup-cosine")


# the command line -----------------------------------------------------------------------------------
def _preset_help(flag: str) -> str:
    return "Default per preset: " + ", ".join(f"{m} {p[flag]}" for m, p in PRESETS.items()) + "."


def parser(doc: str = "") -> argparse.ArgumentParser:
    """The command line (``--help`` prints ``doc``, train.py's docstring, then every flag)."""
    p = argparse.ArgumentParser(
        prog="experiments/train.py", description=textwrap.dedent(doc),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to train")
    what.add_argument("--model", choices=list(PRESETS) + list(ALIASES), default="mlp",
                      help="the preset (experiments/presets.py): its network, data and defaults; "
                           "transformer is lm's old name. Default: mlp.")
    what.add_argument("--size", choices=("small", "tiny"), default="small",
                      help="model width: small for results, tiny for quick checks and tests. Default: small.")
    what.add_argument("--data", metavar="{" + ",".join(sorted(datasets.DATASETS)) + "} or FILE.npz", default=None,
                      help="digits: scikit-learn's 8x8 digits, stratified 75/25 split; stdlib: bytes of the "
                           "Python standard library's source; copy: the copy task (experiments/data.py); "
                           "FILE.npz: your own classification data for mlp and cnn, arrays x, y and optionally "
                           "x_test, y_test (experiments/_npz.py). " + _preset_help("data"))
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
                          "(optax.add_decayed_weights: W <- W - lr (dW + wd W) for sgd); adamw "
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
    ck.add_argument("--allow-config-change", action="store_true",
                    help="with --resume: continue although the flags that fix the run (--lr, --steps, "
                         "--optimizer, --size...) differ from the checkpoint's; the changes are printed "
                         "and logged. Without it such a resume is refused, naming each change.")
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
                          "its own slice of every batch; CPU processes use gloo collectives). Default: off.")
    dev.add_argument("--coordinator", metavar="HOST:PORT", default=None,
                     help="with --distributed: the address of process 0, which all processes connect to. "
                          "Default: detected from the cluster environment (SLURM, TPU pods...).")
    dev.add_argument("--num-processes", metavar="N", type=int, default=None,
                     help="with --distributed: how many processes take part. Default: detected.")
    dev.add_argument("--process-id", metavar="I", type=int, default=None,
                     help="with --distributed: this process's index, 0 .. N-1 (0 writes the log and "
                          "plots). Default: detected.")
    out = p.add_argument_group("output")
    out.add_argument("--log", metavar="FILE", default=None, help="write JSON lines here (see above). Default: none.")
    out.add_argument("--log-every", metavar="K", type=int, default=50,
                     help="log the training loss every K steps (the final step always). Default: 50.")
    out.add_argument("--eval-every", metavar="K", type=int, default=None,
                     help="evaluate on the test / validation set every K steps (and at the end). "
                          + _preset_help("eval_every"))
    out.add_argument("--plots", metavar="DIR", default=None,
                     help="write PNGs here: training.png (loss and the evaluation metric per step), "
                          "backward_flow.png (|dL/dX| and |dL/dW| layer by layer, at the start and the end), "
                          "grad_agreement.png with --compare-modes. Default: none.")
    out.add_argument("--quiet", action="store_true", help="no progress bar. Default: off.")
    return p


def parse(argv=None, doc: str = "") -> argparse.Namespace:
    """Parse ``argv`` and fill the preset's defaults; check the flags against each other."""
    p = parser(doc)
    args = p.parse_args(argv)
    args.model = resolve(args.model)
    preset = PRESETS[args.model]
    for flag in FLAGS:
        if getattr(args, flag) is None:
            setattr(args, flag, preset[flag])
    if args.warmup is None:
        args.warmup = max(1, args.steps // 20)
    elif (problem := _checks.warmup(args)) is not None:
        p.error(problem)
    for flag in ("steps", "batch_size", "ckpt_every", "keep", "log_every", "eval_every", "devices", "context"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1; got {getattr(args, flag)}.")
    if args.stop_after is not None and args.stop_after < 1:
        p.error(f"--stop-after must be at least 1; got {args.stop_after}.")
    if args.compare_modes and (args.ckpt_dir or args.resume):
        p.error("--compare-modes trains three runs side by side and takes no checkpoints; drop --ckpt-dir/--resume.")
    if args.resume and not args.ckpt_dir:
        p.error("--resume needs --ckpt-dir.")
    if not args.distributed and any(v is not None for v in (args.coordinator, args.num_processes, args.process_id)):
        p.error("--coordinator, --num-processes and --process-id need --distributed.")
    for problem in (_checks.hyperparameters(args),
                    _checks.output_path("--ckpt-dir", args.ckpt_dir, directory=True),
                    _checks.output_path("--plots", args.plots, directory=True),
                    _checks.output_path("--log", args.log, directory=False)):
        if problem:
            p.error(problem)
    own = args.data.endswith(".npz")
    if own and preset["data"] != "digits":
        p.error(f"--data FILE.npz is for --model mlp or cnn; --model {args.model} trains on {preset['data']}.")
    if args.data not in datasets.DATASETS and not own:
        p.error(f"--data must be one of {', '.join(sorted(datasets.DATASETS))} or a FILE.npz; got {args.data!r}.")
    if args.data != preset["data"] and not own:
        p.error(f"--model {args.model} trains on --data {preset['data']}; got --data {args.data}.")
    if (problem := _checks.devices(args)) is not None:  # the count first: --batch-size's check needs it
        p.error(problem)
    if args.batch_size % args.devices:
        p.error(f"--batch-size {args.batch_size} must be a multiple of --devices {args.devices} "
                f"(each device takes an equal slice).")
    try:  # cached: the run reuses it
        dataset = datasets.load(args.data, seed=args.seed, context=args.context, **preset["data_options"])
    except ValueError as e:
        p.error(str(e))
    if args.batch_size > dataset.info.get("train", args.batch_size):
        p.error(f"--batch-size {args.batch_size} is larger than the {args.data} training set "
                f"({dataset.info['train']} examples).")
    return args


def config_of(args) -> dict:
    """The flags that fix what is trained (stored in checkpoints, written in the start record)."""
    keys = ("model", "size", "data", "context", "mode", "optimizer", "lr", "weight_decay", "schedule", "warmup",
            "batch_size", "steps", "seed")
    return {k: getattr(args, k) for k in keys}


def config_changes(saved: dict, args) -> list:
    """``["--lr 0.1 -> 0.05", ...]``: the flags of ``config_of`` that differ from a checkpoint's."""
    now = config_of(args)
    return [f"--{k.replace('_', '-')} {saved[k]} -> {now[k]}" for k in now if k in saved and saved[k] != now[k]]
