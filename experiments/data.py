"""The data ``experiments/train.py`` trains on, and the order its batches come in.

Three data sets, all made on this machine (nothing is downloaded):

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 10 classes), a stratified 75/25
  split by ``seed`` (1347 train, 450 test; features standardised on the train set), flat (N, 64)
  or, with ``images=True``, NHWC (N, 8, 8, 1). Metric: test accuracy.
* ``stdlib``: bytes of Python standard-library source files, read from the running interpreter's
  own installation (``sysconfig.get_paths()["stdlib"]``), a fixed list of modules (``STDLIB_FILES``),
  every ``VALIDATION_EVERY``-th of them (in list order) held out for validation, so no validation
  text is seen in training, not even in an overlapping window. Byte level: vocabulary 256; an
  example is a window of ``context + 1`` consecutive bytes of one split (inputs its first
  ``context``, targets its last ``context``, flattened to (N*T,)). Files missing from this Python
  version are skipped and named in ``Dataset.info["files"]``: compare perplexities measured on
  one interpreter (the baselines below are). Metrics: validation perplexity per byte, accuracy.
* ``copy``: rows of ``k`` random symbols, a delimiter, then ``k`` blanks; the targets are the
  ``k`` symbols (the model must reproduce them after the delimiter, so it needs memory).
  Vocabulary ``symbols + 2`` (blank 0, delimiter 1). Metrics: per-symbol and per-row accuracy on
  2000 fresh rows.

Batch order is a pure function of ``(seed, batch number)``, so the *data position* that a
checkpoint stores is one integer, the number of batches drawn so far:

* digits: epoch ``e = position // batches_per_epoch`` shuffles the train set with
  ``default_rng([seed, e])`` and batch ``position % batches_per_epoch`` is the next ``batch_size``
  of that order (the remainder of each epoch is dropped);
* stdlib and copy: batch ``position`` is drawn with ``default_rng([seed, position])``.
"""

from __future__ import annotations

import functools
import math
import os
import sysconfig
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Dataset", "DATASETS", "load", "STDLIB_FILES", "byte_baselines", "copy_rows", "BLANK", "DELIMITER"]

# A fixed list of pure-Python stdlib modules present in CPython 3.10-3.13 (paths under stdlib).
STDLIB_FILES = tuple(f"{m}.py" for m in (
    "abc argparse ast base64 bisect calendar cmd code codecs colorsys configparser contextlib copy "
    "csv dataclasses difflib dis enum fileinput fnmatch fractions functools getopt gettext glob gzip "
    "heapq hmac imaplib inspect ipaddress keyword linecache locale mailbox netrc numbers operator "
    "optparse pathlib pickle pprint queue random reprlib sched secrets selectors shlex shutil "
    "smtplib socket statistics string subprocess tarfile tempfile textwrap threading timeit token "
    "tokenize trace traceback types typing uuid warnings wave weakref zipfile").split())
VALIDATION_EVERY = 8
BLANK, DELIMITER = 0, 1  # the copy task's two reserved ids; symbols are 2 .. symbols + 1
EVAL_STREAM = 2**32 - 1  # the copy task's test rows: a stream no batch number reaches


class Dataset(NamedTuple):
    """What the trainer needs of a data set.

    ``batch(position, batch_size) -> (inputs, targets)``: numpy arrays, batch number ``position``.
    ``evaluation``: ``(inputs, targets)`` of the whole test / validation set (numpy).
    ``example``: one batch's inputs (for ``model.init``); ``info``: sizes and provenance (JSON-able),
    with the facts a model is built from (``classes`` or ``vocab``, ``length``).
    ``metrics``: the evaluation's metrics beyond the loss, the first one the headline
    (``accuracy``, ``perplexity``, ``sequence_accuracy``; see ``train.evaluation``).
    """

    batch: Callable
    evaluation: tuple
    example: object
    info: dict
    metrics: tuple


# digits -------------------------------------------------------------------------------------------
def digits_split(seed: int, images: bool = False):
    """``(x_train, y_train, x_test, y_test)``: x float32 (N, 64) or NHWC (N, 8, 8, 1), y int32."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, stratify=y, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    shape = (-1, 8, 8, 1) if images else (-1, x.shape[1])
    as_x = lambda a: scaler.transform(a).reshape(shape).astype(np.float32)
    return as_x(x_train), y_train.astype(np.int32), as_x(x_test), y_test.astype(np.int32)


def epoch_batches(x, y, seed: int, what: str) -> Callable:
    """``batch(position, batch_size)``: epochs of ``(x, y)`` shuffled by ``(seed, epoch)``."""
    def batch(position: int, batch_size: int):
        per_epoch = len(x) // batch_size
        if per_epoch == 0:
            raise ValueError(f"--batch-size {batch_size} is larger than the {what} train set ({len(x)}).")
        epoch, index = divmod(position, per_epoch)
        take = np.random.default_rng([seed, epoch]).permutation(len(x))[index * batch_size:(index + 1) * batch_size]
        return x[take], y[take]
    return batch


def load_digits(seed: int, images: bool = False) -> Dataset:
    x_train, y_train, x_test, y_test = digits_split(seed, images)
    info = dict(data="digits", train=len(x_train), test=len(x_test), classes=10, split="stratified 75/25",
                split_seed=seed)
    return Dataset(epoch_batches(x_train, y_train, seed, "digits"), (x_test, y_test), x_train[:2], info,
                   ("accuracy",))


# stdlib bytes ---------------------------------------------------------------------------------------
def stdlib_bytes(files=STDLIB_FILES):
    """``(train bytes, validation bytes, files used)``: uint8 arrays from the interpreter's stdlib."""
    root = sysconfig.get_paths()["stdlib"]
    present = [f for f in files if os.path.isfile(os.path.join(root, f))]
    read = lambda names: np.frombuffer(b"".join(open(os.path.join(root, f), "rb").read() for f in names), np.uint8)
    validation = present[::VALIDATION_EVERY]
    train = [f for f in present if f not in validation]
    return read(train), read(validation), dict(root=root, train_files=train, validation_files=validation,
                                                missing=[f for f in files if f not in present])


def windows(text: np.ndarray, starts: np.ndarray, context: int):
    """``(ids (N, T), next ids (N*T,))`` int32 for windows of ``text`` beginning at ``starts``."""
    rows = text[starts[:, None] + np.arange(context + 1)].astype(np.int32)
    return rows[:, :-1], rows[:, 1:].reshape(-1)


def load_stdlib(seed: int, context: int, eval_windows: int = 256) -> Dataset:
    """Byte windows of the stdlib text; validation: ``eval_windows`` evenly spaced windows."""
    if context < 1:
        raise ValueError(f"--context must be at least 1 byte; got {context}.")
    train, validation, files = stdlib_bytes()
    if len(validation) < eval_windows * (context + 1):
        raise ValueError(f"the validation text ({len(validation)} bytes) is too short for {eval_windows} windows "
                         f"of {context + 1} bytes; lower --context.")

    def batch(position: int, batch_size: int):
        starts = np.random.default_rng([seed, position]).integers(0, len(train) - context - 1, batch_size)
        return windows(train, starts, context)

    starts = np.linspace(0, len(validation) - context - 1, eval_windows).astype(np.int64)
    ids, targets = windows(validation, starts, context)
    info = dict(data="stdlib", vocab=256, length=context, train_bytes=len(train), validation_bytes=len(validation),
                validation_tokens=int(targets.size), files=files,
                **byte_baselines(train, validation, starts, context))
    return Dataset(batch, (ids, targets), windows(train, np.zeros(2, np.int64), context)[0], info,
                   ("perplexity", "accuracy"))


def byte_baselines(train: np.ndarray, validation: np.ndarray, starts: np.ndarray, context: int) -> dict:
    """Validation perplexity of a unigram and a bigram byte model, on the very bytes the model
    predicts (the targets of the validation windows).

    unigram: ``p(b) = (count(b) + 1) / (n + 256)`` (add-one);
    bigram:  ``p(b | a) = (count(a, b) + 256 p(b)) / (count(a) + 256)`` (a Dirichlet prior towards
    the unigram, so unseen pairs keep the unigram's probability). The bigram conditions on the byte
    before each target, which for a window's first target lies just before the window.
    Perplexity = exp(mean negative log-likelihood per byte).
    """
    unigram_counts = np.bincount(train, minlength=256).astype(np.float64)
    p_uni = (unigram_counts + 1) / (unigram_counts.sum() + 256)
    pair_counts = np.zeros((256, 256))
    np.add.at(pair_counts, (train[:-1], train[1:]), 1)
    p_bi = (pair_counts + 256 * p_uni) / (pair_counts.sum(1, keepdims=True) + 256)
    targets = validation[starts[:, None] + 1 + np.arange(context)].reshape(-1)
    previous = validation[starts[:, None] + np.arange(context)].reshape(-1)
    return dict(unigram_perplexity=float(math.exp(-np.mean(np.log(p_uni[targets])))),
                bigram_perplexity=float(math.exp(-np.mean(np.log(p_bi[previous, targets])))))


# the copy task ------------------------------------------------------------------------------------
def copy_rows(rng, n: int, k: int, symbols: int):
    """``(inputs (n, 2k+1), targets (n, k))`` int32: ``[a_1..a_k, DELIMITER, BLANK x k]`` -> ``a_1..a_k``."""
    targets = rng.integers(DELIMITER + 1, DELIMITER + 1 + symbols, (n, k)).astype(np.int32)
    inputs = np.concatenate([targets, np.full((n, 1), DELIMITER, np.int32), np.full((n, k), BLANK, np.int32)], 1)
    return inputs, targets


def load_copy(seed: int, k: int = 6, symbols: int = 8, test_rows: int = 2000) -> Dataset:
    batch = lambda position, batch_size: copy_rows(np.random.default_rng([seed, position]), batch_size, k, symbols)
    test = copy_rows(np.random.default_rng([seed, EVAL_STREAM]), test_rows, k, symbols)
    info = dict(data="copy", k=k, symbols=symbols, vocab=symbols + 2, length=2 * k + 1, test_rows=test_rows)
    return Dataset(batch, test, test[0][:2], info, ("sequence_accuracy", "accuracy"))


@functools.lru_cache(maxsize=8)  # train.py's start-up checks load it, the run reuses it
def load(name: str, *, seed: int, context: int = 64, **options) -> Dataset:
    """The data set ``name`` (``DATASETS``, or a path ending in ``.npz``: ``_npz.load_npz``);
    ``options``: a preset's (``images=True``, ``k=...``)."""
    if name == "digits":
        return load_digits(seed, **options)
    if name == "stdlib":
        return load_stdlib(seed, context, **options)
    if name == "copy":
        return load_copy(seed, **options)
    if name.endswith(".npz"):  # your own classification data (experiments/_npz.py)
        from _npz import load_npz
        return load_npz(name, seed, images=options.get("images", False))
    raise ValueError(f"--data must be one of {', '.join(sorted(DATASETS))} or a FILE.npz; got {name!r}.")


DATASETS = {"digits": "scikit-learn's bundled 8x8 digits (classification)",
            "stdlib": "bytes of the Python standard library's own source (language modelling)",
            "copy": "the copy task: reproduce k random symbols after a delimiter (memory)"}
