"""Why training stops before ``--steps``, saving what it can: a signal, or a loss that is not finite.

Ctrl-C (SIGINT) and SIGTERM: finish the step under way, save it, say how to resume.

Python's default SIGINT raises ``KeyboardInterrupt`` wherever the interpreter happens to be (in
the middle of an optax update, an orbax write...), and SIGTERM kills the process outright: either
way the steps since the last ``--ckpt-every`` were lost. :func:`requests` instead records the
signal; the training loop looks at it after each step, saves a checkpoint of that step and raises
:class:`Interrupted`. A second signal while the first is handled stops at once (the default).

A non-finite loss (a learning rate too large, an overflow): every later step would be NaN too, so
the loop raises :class:`NonFiniteLoss` at once, after saving the state of the last step whose loss
was finite (the parameters that went into the failing step), instead of training on to the end.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import threading

__all__ = ["requests", "Stopped", "Interrupted", "NonFiniteLoss", "resume_hint"]

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """Training stopped early after ``step`` steps; ``saved``: the checkpoint written, or None."""

    code = 1

    def __init__(self, step: int, saved):
        super().__init__(f"stopped after step {step}")
        self.step, self.saved = step, saved


class Interrupted(Stopped):
    """Stopped by the signal ``signum`` (exit status 128 + signum, as the shell reports a kill)."""

    def __init__(self, signum: int, step: int, saved):
        super().__init__(step, saved)
        self.signum, self.code = signum, 128 + signum

    def report(self, argv) -> str:
        return resume_hint(argv, self)


class NonFiniteLoss(Stopped):
    """The loss of step ``bad`` is ``loss`` (NaN or infinite); ``saved`` holds step ``good``, the newest
    state with finite parameters (None: none of the recent ones; 0: the starting state, not saved)."""

    def __init__(self, bad: int, good, saved, loss: float, lr: float):
        super().__init__(good or 0, saved)
        self.bad, self.good, self.loss, self.lr = bad, good, loss, lr

    def report(self, argv) -> str:
        if self.saved:
            where = f"saved the state after step {self.good}, the newest with finite parameters, to {self.saved}"
        elif self.good is None:
            where = "the recent states have non-finite parameters: nothing is saved"
        else:
            where = "nothing is saved (" + ("no --ckpt-dir)" if self.good else "the start is the newest finite state)")
        return (f"the loss of step {self.bad} is {self.loss} (learning rate {self.lr:g}): training stopped, every "
                f"later step would be {self.loss} too; {where}. Lower --lr (or raise --warmup); to continue "
                f"from a checkpoint with other flags, add --resume --allow-config-change.")


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
