"""The data ``experiments/train.py`` trains on, and the order its batches come in.

Two data sets, both on this machine already (nothing is downloaded):

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, 10 classes), the stratified 75/25
  split of ``experiments/_common.load_digits_split`` (1347 train, 450 test; features standardised
  on the train set), flat (N, 64) for the MLP or NHWC (N, 8, 8, 1) for the CNN.
* ``stdlib``: bytes of Python standard-library source files, read from the running interpreter's
  own installation (``sysconfig.get_paths()["stdlib"]``), a fixed list of modules (``STDLIB_FILES``),
  every ``VALIDATION_EVERY``-th of them (in list order) held out for validation. Byte level:
  vocabulary 256, a training example is a window of ``context + 1`` consecutive bytes of one split
  (inputs its first ``context``, targets its last ``context``). Files missing from this Python
  version are skipped and named in ``Dataset.info["files"]``: the text differs a little between
  Python versions, so compare perplexities measured on one interpreter (the baselines below are).

Batch order is a pure function of ``(seed, batch number)``, so the *data position* that a
checkpoint stores is one integer, the number of batches drawn so far:

* digits: epoch ``e = position // batches_per_epoch`` shuffles the train set with
  ``default_rng([seed, e])`` and batch ``position % batches_per_epoch`` is the next ``batch_size``
  of that order (the remainder of each epoch is dropped);
* stdlib: batch ``position`` draws ``batch_size`` window starts with ``default_rng([seed, position])``.

Baselines for the text (``byte_baselines``): a unigram and a bigram byte model estimated on the
train split and scored on the very bytes the transformer predicts on the validation split.
"""

from __future__ import annotations

import math
import os
import sysconfig
from typing import Callable, NamedTuple

import numpy as np

__all__ = ["Dataset", "DATASETS", "load", "STDLIB_FILES", "byte_baselines"]

# A fixed list of pure-Python stdlib modules present in CPython 3.10-3.13 (paths under stdlib).
STDLIB_FILES = tuple(f"{m}.py" for m in (
    "abc argparse ast base64 bisect calendar cmd code codecs colorsys configparser contextlib copy "
    "csv dataclasses difflib dis enum fileinput fnmatch fractions functools getopt gettext glob gzip "
    "heapq hmac imaplib inspect ipaddress keyword linecache locale mailbox netrc numbers operator "
    "optparse pathlib pickle pprint queue random reprlib sched secrets selectors shlex shutil "
    "smtplib socket statistics string subprocess tarfile tempfile textwrap threading timeit token "
    "tokenize trace traceback types typing uuid warnings wave weakref zipfile").split())
VALIDATION_EVERY = 8


class Dataset(NamedTuple):
    """What the trainer needs of a data set.

    ``kind``: ``"classification"`` (accuracy) or ``"language"`` (perplexity).
    ``batch(position, batch_size) -> (inputs, targets)``: numpy arrays, batch number ``position``.
    ``evaluation``: ``(inputs, targets)`` of the whole test / validation set (numpy).
    ``example``: one batch's inputs (for ``model.init``); ``info``: sizes and provenance (JSON-able).
    """

    kind: str
    batch: Callable
    evaluation: tuple
    example: object
    info: dict


def load_digits(seed: int, model: str) -> Dataset:
    """Digits for ``model`` (``"cnn"``: NHWC images, else flat features), split by ``seed``."""
    from _common import load_digits_split

    shape = (8, 8, 1) if model == "cnn" else None
    x_train, y_train, x_test, y_test = (np.asarray(a) for a in load_digits_split(seed, shape))

    def batch(position: int, batch_size: int):
        per_epoch = len(x_train) // batch_size
        if per_epoch == 0:
            raise ValueError(f"--batch-size {batch_size} is larger than the digits train set ({len(x_train)}).")
        epoch, index = divmod(position, per_epoch)
        take = np.random.default_rng([seed, epoch]).permutation(len(x_train))[index * batch_size:(index + 1) * batch_size]
        return x_train[take], y_train[take]

    info = dict(data="digits", train=len(x_train), test=len(x_test), classes=10, split="stratified 75/25",
                split_seed=seed)
    return Dataset("classification", batch, (x_test, y_test), x_train[:2], info)


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
    """``((ids, positions), targets)`` for windows of ``text`` beginning at ``starts``: each (N, T)."""
    rows = text[starts[:, None] + np.arange(context + 1)].astype(np.int32)
    positions = np.broadcast_to(np.arange(context, dtype=np.int32), (len(starts), context)).copy()
    return (rows[:, :-1], positions), rows[:, 1:].reshape(-1)


def load_stdlib(seed: int, context: int, eval_windows: int = 256) -> Dataset:
    """Byte windows of the stdlib text; validation: ``eval_windows`` evenly spaced windows."""
    train, validation, files = stdlib_bytes()
    if len(validation) < eval_windows * (context + 1):
        raise ValueError(f"the validation text ({len(validation)} bytes) is too short for {eval_windows} windows "
                         f"of {context + 1} bytes; lower --context.")

    def batch(position: int, batch_size: int):
        starts = np.random.default_rng([seed, position]).integers(0, len(train) - context - 1, batch_size)
        return windows(train, starts, context)

    starts = np.linspace(0, len(validation) - context - 1, eval_windows).astype(np.int64)
    (ids, positions), targets = windows(validation, starts, context)
    baselines = byte_baselines(train, validation, starts, context)
    info = dict(data="stdlib", vocab=256, context=context, train_bytes=len(train),
                validation_bytes=len(validation), validation_tokens=int(targets.size), files=files, **baselines)
    return Dataset("language", batch, ((ids, positions), targets), windows(train, np.zeros(2, np.int64), context)[0],
                   info)


def byte_baselines(train: np.ndarray, validation: np.ndarray, starts: np.ndarray, context: int) -> dict:
    """Validation perplexity of a unigram and a bigram byte model, on the transformer's targets.

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


def load(name: str, *, seed: int, model: str, context: int) -> Dataset:
    """The data set ``name`` (``DATASETS``) shaped for ``model``."""
    if name == "digits":
        return load_digits(seed, model)
    if name == "stdlib":
        return load_stdlib(seed, context)
    raise ValueError(f"--data must be one of {sorted(DATASETS)}; got {name!r}.")


DATASETS = {"digits": "scikit-learn's bundled 8x8 digits (classification)",
            "stdlib": "bytes of the Python standard library's own source (language modelling)"}
