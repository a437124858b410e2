"""run_checks: every generated check of a LayerInfo, without pytest, one example each."""

from __future__ import annotations

import dataclasses
import traceback

from ._generate import SeededChooser, generated_checks, require_x64
from ._registry import LayerInfo

__all__ = ["CheckReport", "run_checks"]


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What ``run_checks`` ran. ``passed``: check names; ``failed``: ``(name, message)``;
    ``skipped``: ``(name, reason)``."""

    layer: str
    passed: tuple
    failed: tuple
    skipped: tuple

    @property
    def ran(self) -> tuple:
        return self.passed + tuple(name for name, _ in self.failed)

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [f"run_checks({self.layer}): {len(self.passed)} passed, {len(self.failed)} failed, "
                 f"{len(self.skipped)} skipped"]
        lines += [f"  FAILED {name}: {message}" for name, message in self.failed]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def _selected(name, only):
    return only is None or name in only or name.split("[", 1)[0] in only


def _failure(check, chooser, err):
    drawn = ", ".join(f"{label}={value!r}" for label, value in chooser.drawn)
    message = str(err) if isinstance(err, AssertionError) else "".join(
        traceback.format_exception_only(type(err), err)).strip()
    return message + (f"\n    (drawn: {drawn})" if drawn else "")


def run_checks(info: LayerInfo, *, seed: int = 0, only=None, raise_on_failure: bool = True) -> CheckReport:
    """Run every check generated for ``info`` (``jaxback.testing._generate``), one example each.

    Args:
      info: a :class:`LayerInfo` (registered or not).
      seed: seeds the examples drawn (shape, setting, value kind, values); the report of a failure
        names what was drawn.
      only: check names or families to run (``"float64"``, ``"mutant"``, ``"dtype[bfloat16]"``...);
        default all.
      raise_on_failure: raise ``AssertionError`` listing the failed checks (default); else return
        the report.

    Returns:
      a :class:`CheckReport`: which checks passed, failed (an error other than AssertionError
      counts as a failure too, reported with its type) and were skipped (unsupported flags/dtypes).

    Raises:
      RuntimeError: before running anything, if ``jax_enable_x64`` is off (the float64 checks
        would run in float32 and fail correct layers); enable it at start-up.
    """
    require_x64(f"run_checks({info.name})")
    passed, failed, skipped = [], [], []
    for check in generated_checks(info):
        if not _selected(check.name, only):
            continue
        if check.skip:
            skipped.append((check.name, check.skip))
            continue
        chooser = SeededChooser(seed)
        try:
            check.run(chooser)
        except Exception as err:  # noqa: BLE001  (every failure is reported, none stops the run)
            failed.append((check.name, _failure(check, chooser, err)))
        else:
            passed.append(check.name)
    report = CheckReport(info.name, tuple(passed), tuple(failed), tuple(skipped))
    if failed and raise_on_failure:
        raise AssertionError(str(report))
    return report
