"""The JSON-lines log of ``experiments/train.py --log FILE`` (its records: train.py's docstring)."""

from __future__ import annotations

import json
import os

import jax

__all__ = ["Log"]


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
