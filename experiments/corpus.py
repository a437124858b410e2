"""Text that needs no download: the Python standard library's own source files.

Every Python installation carries a few megabytes of real, varied, human-written text (code,
comments, docstrings) in ``sysconfig.get_paths()["stdlib"]``. We read the top-level ``*.py``
modules in sorted order as bytes (a 256-symbol vocabulary: no tokenizer to ship or train), and
split by *file*: every tenth file is validation, so no validation text is seen in training, not
even as an overlapping window. The text depends on the interpreter's version; the script prints
the file and byte counts so a run can be matched.
"""

from __future__ import annotations

import glob
import os
import sysconfig

import numpy as np

__all__ = ["stdlib_bytes", "windows", "ngram_perplexities"]

VOCAB = 256


def stdlib_bytes(max_bytes: int = 2_000_000, every: int = 10):
    """``(train, validation, n_files)``: uint8 arrays of the concatenated files."""
    files = sorted(glob.glob(os.path.join(sysconfig.get_paths()["stdlib"], "*.py")))
    train, valid, total = [], [], 0
    for i, path in enumerate(files):
        with open(path, "rb") as f:
            data = np.frombuffer(f.read(), np.uint8)
        (valid if i % every == every - 1 else train).append(data)
        total += data.size
        if total >= max_bytes:
            break
    return np.concatenate(train), np.concatenate(valid), i + 1


def windows(data, length: int, starts):
    """``(inputs, targets)`` int32 (len(starts), length): next-byte prediction at every position."""
    idx = np.asarray(starts)[:, None] + np.arange(length + 1)[None, :]
    chunk = data[idx].astype(np.int32)
    return chunk[:, :-1], chunk[:, 1:]


def ngram_perplexities(train, valid):
    """Validation perplexity of add-one-smoothed unigram and bigram byte models fit on ``train``."""
    unigram = np.bincount(train, minlength=VOCAB) + 1.0
    unigram /= unigram.sum()
    pairs = np.zeros((VOCAB, VOCAB))
    np.add.at(pairs, (train[:-1], train[1:]), 1.0)
    bigram = (pairs + 1.0) / (pairs + 1.0).sum(1, keepdims=True)
    return (float(np.exp(-np.mean(np.log(unigram[valid])))),
            float(np.exp(-np.mean(np.log(bigram[valid[:-1], valid[1:]])))))
