"""Mutation score: how many of each jaxback layer's registered wrong rules the checks reject.

    python -m jaxback.testing.mutation_score

A mutant is a deliberately wrong ``bwd`` (dropped term, sign flip, transposed product, sum<->mean,
missing reduction, off-by-scale, wrong dtype...). It is killed when ``check_vjp`` raises an
AssertionError at one of the layer's float64 samples (every shape x hyperparameter setting, seed 0).
Exits non-zero if any mutant survives.
"""

from __future__ import annotations

import sys

import jax


def score(info):
    """``(killed names, surviving names)`` for one registry entry."""
    from ._checks import mutant_is_killed

    samples = [(info.args(0, shape=s), h) for s in info.shapes for h in info.hypers]
    killed, survived = [], []
    for mutant in info.mutants:
        (killed if mutant_is_killed(info, mutant, samples) else survived).append(mutant.name)
    return killed, survived


def main() -> int:
    jax.config.update("jax_enable_x64", True)
    from . import builtin_registry

    total_killed = total = 0
    print(f"{'layer':<34} {'killed':>7}  score   survivors")
    for info in builtin_registry().registered():
        killed, survived = score(info)
        n = len(killed) + len(survived)
        total_killed, total = total_killed + len(killed), total + n
        pct = 100.0 * len(killed) / n if n else float("nan")
        print(f"{info.name:<34} {len(killed):>3}/{n:<3}  {pct:5.1f}%  {', '.join(survived) or '-'}")
    print(f"{'all layers':<34} {total_killed:>3}/{total:<3}  {100.0 * total_killed / max(total, 1):5.1f}%")
    return 0 if total_killed == total else 1


if __name__ == "__main__":
    sys.exit(main())
