"""The summary of a run, from its log records: per mode the final evaluation and the gradient
agreement with auto (``train.py`` prints it as text, ``results.py`` as markdown)."""

from __future__ import annotations

import math

__all__ = ["summary", "table", "LABELS"]


def summary(records, modes) -> dict:
    """Per mode, from the log records: the final eval record and the worst gradient agreement with
    auto along the explicit run (``None`` without --compare-modes); ``{}`` before any evaluation."""
    finals = {m: [r for r in records if r["event"] == "eval" and r["mode"] == m][-1:] for m in modes}
    if not all(finals.values()):
        return {}
    checks = [r for r in records if r["event"] == "grad_agreement"]
    worst = {m: max(checks, key=lambda r: r[f"{m}_vs_auto"], default=None) for m in modes if m != "auto"}
    return {m: dict(finals[m][0], agreement=worst[m] and worst[m][f"{m}_vs_auto"],
                    worst_step=worst[m] and worst[m]["step"], checks=len(checks)) if m in worst else
            dict(finals[m][0], agreement=None, worst_step=None, checks=len(checks)) for m in modes}


LABELS = {"sequence_accuracy": "rows right"}  # a copy row counts when all its symbols are right


def _cell(metric: str, value: float) -> str:
    return f"{value:.3f}" if metric == "perplexity" else f"{100 * value:.2f}%"


def table(rows: dict, metrics, info) -> list:
    """The summary as ``[header, row, ...]`` (strings): per mode its step, eval loss, metrics and
    gradient agreement; for text, the unigram and bigram baselines (perplexity per byte)."""
    lines = [["mode", "steps", "eval loss", *(LABELS.get(k, k) for k in metrics), "grad vs auto"]]
    for m, r in rows.items():
        agreement = "reference" if m == "auto" else ("" if r["agreement"] is None else f"{r['agreement']:.1e}")
        lines.append([m, str(r["step"]), f"{r['loss']:.4f}", *(_cell(k, r[k]) for k in metrics), agreement])
    for name in ("unigram", "bigram") if "perplexity" in metrics else ():
        ppl = info[f"{name}_perplexity"]
        lines.append([f"{name} baseline", "", f"{math.log(ppl):.4f}",
                      *(f"{ppl:.3f}" if k == "perplexity" else "" for k in metrics), ""])
    return lines
