"""Checkpoints of a training run with orbax-checkpoint, checked before anything is trusted.

One directory per saved step under the checkpoint directory (``<dir>/<step>/``), written by
``orbax.checkpoint.CheckpointManager``: orbax writes into a temporary name and renames it when the
write is complete, so a crash mid-write leaves no directory that looks like a checkpoint, and it
keeps the last ``keep`` steps. Each step holds two items:

* ``state``: the training state pytree (params, model state, optimiser state, step, PRNG key), by
  orbax's ``StandardSave``;
* ``meta``: JSON with the data position, the run's configuration and the *spec* of the state: one
  ``[path, shape, dtype, sha256]`` per leaf, in flatten order.

Restoring (``restore_latest``) trusts neither the tree nor the bytes:

1. the spec is compared with the state this run would start from, path by path: another model,
   shape, dtype or tree structure raises :class:`CheckpointMismatch` naming the first differing
   path (orbax itself would cast a float64 leaf to a float32 target without a word);
2. the arrays are restored and each leaf's sha256 compared with the spec: a truncated or corrupted
   checkpoint (or one whose meta is unreadable) is skipped with a warning naming it, and the next
   older one is tried; if none is good, :class:`CheckpointError` names every one tried. Once one
   restores, the damaged newer ones are renamed ``<step>.damaged`` (orbax would otherwise refuse
   to write those steps again, and ignore them: they are not step numbers).
"""

from __future__ import annotations

import hashlib
import os
import warnings

import jax
import numpy as np
import orbax.checkpoint as ocp

__all__ = ["CheckpointError", "CheckpointMismatch", "Checkpoints", "spec_of"]


class CheckpointError(RuntimeError):
    """No usable checkpoint: all were unreadable or corrupt."""


class CheckpointMismatch(ValueError):
    """A checkpoint of another model, shape, dtype or tree structure than this run's."""


def _digest(leaf) -> str:
    a = np.asarray(jax.device_get(leaf))
    return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes()).hexdigest()


def spec_of(tree, names, with_digest: bool = False) -> list:
    """``[[path, shape, dtype(, sha256)]]`` per leaf of ``tree``; ``names``: one path per leaf."""
    leaves = jax.tree_util.tree_leaves(tree)
    if len(names) != len(leaves):
        raise ValueError(f"spec_of: {len(names)} names for {len(leaves)} leaves.")
    return [[n, list(np.shape(l)), str(np.asarray(l).dtype if not hasattr(l, "dtype") else l.dtype)]
            + ([_digest(l)] if with_digest else []) for n, l in zip(names, leaves)]


def first_mismatch(saved: list, expected: list):
    """The first difference between a saved spec and this run's (``None`` if they agree)."""
    for i, (s, e) in enumerate(zip(saved, expected)):
        if s[0] != e[0]:
            return f"the tree differs at leaf {i}: the checkpoint has {s[0]}, this run has {e[0]}"
        if list(s[1]) != list(e[1]):
            return f"{e[0]}: the checkpoint has shape {tuple(s[1])}, this run expects {tuple(e[1])}"
        if s[2] != e[2]:
            return f"{e[0]}: the checkpoint has dtype {s[2]}, this run expects {e[2]}"
    if len(saved) != len(expected):
        shorter, longer, who = (saved, expected, "this run") if len(saved) < len(expected) else (expected, saved, "the checkpoint")
        return f"the tree differs: {who} has more leaves, the first extra one is {longer[len(shorter)][0]}"
    return None


class Checkpoints:
    """Save and restore a training state under ``directory``, keeping the last ``keep`` steps."""

    def __init__(self, directory: str, keep: int):
        self.directory = os.path.abspath(directory)
        self.manager = ocp.CheckpointManager(
            self.directory, options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True),
            item_names=("state", "meta"))

    def path(self, step: int) -> str:
        return os.path.join(self.directory, str(step))

    def save(self, step: int, tree, names, meta: dict) -> None:
        """Write ``tree`` and ``meta`` (JSON-able) as checkpoint ``step`` (asynchronously)."""
        meta = dict(meta, spec=spec_of(tree, names, with_digest=True))
        written = self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(tree),
                                                                  meta=ocp.args.JsonSave(meta)))
        if not written:  # orbax declines a step at or below its newest one
            raise CheckpointError(f"orbax did not write checkpoint {self.path(step)} (newest: step "
                                  f"{self.manager.latest_step()}).")

    def restore_latest(self, template, names):
        """``(tree, meta)`` of the newest good checkpoint, shaped like ``template``; None if none.

        ``template``: the state this run would start from (its arrays give shapes, dtypes and
        shardings). Raises :class:`CheckpointMismatch` or :class:`CheckpointError` (module docstring).
        """
        self.manager.reload()
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        expected, tried = spec_of(template, names), []
        for step in steps:
            try:
                meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
                saved = meta["spec"]
            except Exception as e:  # unreadable meta: a damaged checkpoint
                tried.append(self._skip(step, f"its meta is unreadable ({type(e).__name__}: {e})"))
                continue
            mismatch = first_mismatch(saved, expected)
            if mismatch is not None:
                raise CheckpointMismatch(f"checkpoint {self.path(step)} does not fit this run: {mismatch}. "
                                         f"Use another --ckpt-dir, or the flags it was written with.")
            try:
                tree = self._restore_state(step, template)
            except Exception as e:
                tried.append(self._skip(step, f"its arrays are unreadable ({type(e).__name__}: {str(e)[:200]})"))
                continue
            bad = next((s[0] for s, d in zip(saved, jax.tree_util.tree_leaves(tree)) if _digest(d) != s[3]), None)
            if bad is not None:
                tried.append(self._skip(step, f"{bad} does not match the checksum written with it"))
                continue
            self._set_aside(steps[:steps.index(step)])
            return tree, meta
        raise CheckpointError("no usable checkpoint under " + self.directory + ": " + "; ".join(tried))

    def _restore_state(self, step: int, template):
        abstract = jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, template)
        return self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state

    def _set_aside(self, damaged) -> None:
        """Rename the damaged steps newer than the restored one to ``<step>.damaged`` (kept for a
        look, invisible to orbax), so this run can write those steps again."""
        for step in damaged:
            os.replace(self.path(step), self.path(step) + ".damaged")
        if damaged:
            self.manager.reload()

    def _skip(self, step: int, why: str) -> str:
        message = f"checkpoint {self.path(step)} is damaged: {why}"
        warnings.warn(message + "; trying the previous one.", RuntimeWarning, stacklevel=3)
        return message

    def close(self) -> None:
        """Wait for pending writes, then release the manager."""
        self.manager.wait_until_finished()
        self.manager.close()
