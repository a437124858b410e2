"""Your own classification data for ``train.py --model mlp|cnn --data FILE.npz``.

The file (``numpy.savez``) holds ``x`` and ``y``, and optionally ``x_test`` and ``y_test``:

* ``x``: real numbers (any float or integer dtype; trained as float32), ``(N, D)`` for mlp,
  ``(N, H, W, C)`` (NHWC) for cnn; all finite. No scaling is applied: standardise it yourself.
* ``y``: integer class ids ``0 .. K-1``, shape ``(N,)``; K = the largest id + 1.
* ``x_test``, ``y_test``: the same per-example shapes and dtypes; every test class must occur in
  ``y``. Without them, a seeded random quarter of the rows is held out (``default_rng([seed, 1])``).

Batches come as digits' do (``data.epoch_batches``: epochs shuffled by ``(seed, epoch)``), so
checkpoints and resume work the same. Every problem is reported naming the file, the array, what
was expected and what came (``_cli.parse`` shows it at start-up).
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_npz"]

ARRAYS = ("x", "y", "x_test", "y_test")


def _error(path: str, message: str):
    return ValueError(f"--data {path}: {message}")


def _read(path: str) -> dict:
    if not os.path.isfile(path):
        raise _error(path, "no such file.")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except Exception as e:  # not an npz, or object arrays (which would need pickle)
        raise _error(path, f"cannot be read as an .npz of numeric arrays ({type(e).__name__}: {e}).") from None
    unknown = sorted(set(arrays) - set(ARRAYS))
    missing = [k for k in ("x", "y") if k not in arrays]
    if unknown or missing:
        raise _error(path, "expected the arrays x, y (and optionally x_test, y_test); "
                           + (f"missing {', '.join(missing)}" if missing else "")
                           + ("; " if unknown and missing else "") + (f"unknown {', '.join(unknown)}" if unknown else "")
                           + f" (the file has {', '.join(sorted(arrays)) or 'none'}).")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise _error(path, "x_test and y_test come together; the file has only one of them.")
    return arrays


def _inputs(path: str, name: str, x, images: bool, like=None):
    rank, what = (4, "(N, H, W, C) images (NHWC) for --model cnn") if images else (2, "(N, D) rows for --model mlp")
    if x.ndim != rank:
        raise _error(path, f"{name} must be {what}; got shape {x.shape}.")
    if like is not None and x.shape[1:] != like.shape[1:]:
        raise _error(path, f"{name} must have x's per-example shape {like.shape[1:]}; got {x.shape[1:]}.")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)) or x.dtype == bool:
        raise _error(path, f"{name} must hold real numbers (a float or integer dtype); got dtype {x.dtype}.")
    if len(x) == 0:
        raise _error(path, f"{name} has no rows.")
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise _error(path, f"{name} has {int((~np.isfinite(x)).sum())} non-finite values (NaN or inf) in float32.")
    return x


def _labels(path: str, name: str, y, rows: int):
    if not np.issubdtype(y.dtype, np.integer):
        raise _error(path, f"{name} must hold integer class ids; got dtype {y.dtype}.")
    if y.shape != (rows,):
        raise _error(path, f"{name} must have shape ({rows},), one class id per row of x{name[1:]}; got {y.shape}.")
    if y.min() < 0:
        raise _error(path, f"{name} must hold class ids >= 0; got {y.min()}.")
    return y.astype(np.int32)


def load_npz(path: str, seed: int, images: bool = False):
    """The :class:`data.Dataset` of the file ``path`` (module docstring); ValueError on bad content."""
    from data import Dataset, epoch_batches

    arrays = _read(path)
    x = _inputs(path, "x", arrays["x"], images)
    y = _labels(path, "y", arrays["y"], len(x))
    classes = int(y.max()) + 1
    if "x_test" in arrays:
        x_test = _inputs(path, "x_test", arrays["x_test"], images, like=x)
        y_test = _labels(path, "y_test", arrays["y_test"], len(x_test))
        if y_test.max() >= classes:
            raise _error(path, f"y_test has class {y_test.max()}, but y's classes are 0 .. {classes - 1}.")
        split = "given"
    else:
        if len(x) < 2:
            raise _error(path, f"without x_test, y_test a quarter of x is held out; x has only {len(x)} row(s).")
        order = np.random.default_rng([seed, 1]).permutation(len(x))
        test, keep = order[:max(1, len(x) // 4)], order[max(1, len(x) // 4):]
        x, y, x_test, y_test = x[keep], y[keep], x[test], y[test]
        split = "random 75/25"
    if classes < 2:
        raise _error(path, f"y has a single class ({classes - 1}); a classifier needs at least two.")
    info = dict(data=path, train=len(x), test=len(x_test), classes=classes, split=split, split_seed=seed)
    return Dataset(epoch_batches(x, y, seed, path), (x_test, y_test), x[:2], info, ("accuracy",))
