"""The start-up checks of ``experiments/train.py`` that look beyond the flags themselves: output
paths, hyperparameter values. ``_cli.parse`` calls them before anything is compiled or trained, so
a bad flag costs a second, not a run (``--ckpt-dir`` naming a file used to train every step and
then hang in orbax). Each returns an error message, or None when all is well.
"""

from __future__ import annotations

import math
import os

__all__ = ["output_path", "hyperparameters", "warmup", "devices"]


def _nearest_existing(path: str) -> str:
    """``path`` itself or its nearest ancestor that exists (what ``makedirs`` would build on)."""
    path = os.path.abspath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def output_path(flag: str, path: str, directory: bool):
    """Why ``path`` (a directory to create or fill, or a file to write) cannot be written, or None."""
    if path is None:
        return None
    if path == "":
        return f"{flag}: an empty path."
    kind = "directory" if directory else "file"
    if os.path.exists(path):
        if directory and not os.path.isdir(path):
            return f"{flag} {path}: is a file, not a directory; give a directory (it is created if missing)."
        if not directory and os.path.isdir(path):
            return f"{flag} {path}: is a directory; give a file name."
        if not os.access(path, os.W_OK | (os.X_OK if directory else 0)):
            return f"{flag} {path}: the {kind} is not writable."
        return None
    base = _nearest_existing(os.path.dirname(os.path.abspath(path)))
    if not os.path.isdir(base):
        return f"{flag} {path}: cannot create the {kind}: {base} is a file, not a directory."
    if not os.access(base, os.W_OK | os.X_OK):
        return f"{flag} {path}: cannot create the {kind}: {base} is not writable."
    return None


def hyperparameters(args):
    """Why the optimisation flags cannot train (a non-positive or non-finite rate...), or None."""
    if not (math.isfinite(args.lr) and args.lr > 0):
        return f"--lr must be a positive finite number; got {args.lr}."
    if not (math.isfinite(args.weight_decay) and args.weight_decay >= 0):
        return f"--weight-decay must be a finite number >= 0; got {args.weight_decay}."
    if args.seed < 0:
        return f"--seed must be >= 0 (numpy's generators take no negative seed); got {args.seed}."
    return None


def warmup(args):
    """Why a ``--warmup`` given on the command line is wrong, or None."""
    if args.schedule != "warmup-cosine":
        return (f"--warmup applies to --schedule warmup-cosine only; this run's schedule is {args.schedule}. "
                f"Drop --warmup or pass --schedule warmup-cosine.")
    if not 0 <= args.warmup < args.steps:
        return f"--warmup must be in [0, --steps {args.steps}); got {args.warmup}."
    return None


def devices(args):
    """Why ``--devices`` exceeds the devices visible (all processes' with ``--distributed``, which
    joins the other processes first: JAX sees their devices only then), or None."""
    import jax

    if getattr(args, "distributed", False) and not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU processes' collectives
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    visible = jax.devices()
    if args.devices <= len(visible):
        return None
    return (f"--devices {args.devices}: only {len(visible)} device(s) visible ({visible[0].platform}). On CPU, set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={args.devices} before starting Python.")
