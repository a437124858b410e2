"""Ctrl-C (SIGINT) and SIGTERM during training: finish the step under way, save, say how to resume.

Python's default SIGINT raises ``KeyboardInterrupt`` wherever the interpreter happens to be (in
the middle of an optax update, an orbax write...), and SIGTERM kills the process outright: either
way the steps since the last ``--ckpt-every`` were lost. :func:`requests` instead records the
signal; the training loop looks at it after each step, saves a checkpoint of that step and raises
:class:`Interrupted`. A second signal while the first is handled stops at once (the default).
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading

__all__ = ["requests", "Interrupted", "resume_hint"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Training stopped by ``signum`` after ``step`` steps (saved when ``saved`` is a path)."""

    def __init__(self, signum: int, step: int, saved):
        super().__init__(f"{signal.Signals(signum).name} after step {step}")
        self.signum, self.step, self.saved = signum, step, saved


class _Requests:
    signum = None


@contextlib.contextmanager
def requests():
    """Within the block, SIGINT and SIGTERM set ``.signum`` instead of stopping the process."""
    flag = _Requests()
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield flag
        return

    def handler(signum, frame):
        flag.signum = signum
        for s in SIGNALS:  # the next one stops at once
            signal.signal(s, signal.SIG_DFL if s == signal.SIGTERM else signal.default_int_handler)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def resume_hint(argv, stop: Interrupted) -> str:
    """What to print after an interrupted run: where it stopped and the command that continues it."""
    name = signal.Signals(stop.signum).name
    if stop.saved is None:
        return f"{name}: stopped after step {stop.step}; nothing is saved (no --ckpt-dir)."
    again = list(argv) + ([] if "--resume" in argv else ["--resume"])
    return (f"{name}: stopped after step {stop.step}, saved to {stop.saved}. Continue with:\n"
            f"  {shlex.join(['python', 'experiments/train.py', *again])}")
