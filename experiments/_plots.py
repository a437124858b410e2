"""The pictures of ``experiments/train.py --plots DIR`` (matplotlib PNGs), drawn from its log records.

* ``training``: the loss per logged step (each batch's as a faint dot, their exponential moving
  average as a line) beside the evaluation loss, and the evaluation's headline metric: test
  accuracy (digits), validation perplexity per byte (stdlib, with the unigram and bigram baselines
  as lines) or the share of rows copied right (copy), one curve per mode.
* ``grad_agreement``: along the explicit run, the relative gradient difference of explicit and of
  vjp to auto (``train.relative_difference``: max|g - g_auto| / max|g_auto| over all weights) per
  logged step, log scale, with float32's epsilon for scale.
* ``backward_flow``: for one batch, the L2 norm of dL/dX at each layer's input and of each layer's
  dL/dW, layer by layer from the loss (left) back to the input (right), at the run's first and last
  step: ``backprop(..., record=True)``'s stored quantities. A line falling to the right is a
  vanishing gradient, one rising an exploding one. The dL/dW panel lists only the layers that
  have weights (its own axis: no line is drawn through a relu or a pooling layer).
"""

from __future__ import annotations

import os
import re

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["training", "grad_agreement", "backward_flow", "smooth"]


def _save(fig, path: str, what: str) -> None:
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"{what} written to {path}")


def _title(args) -> str:
    return f"{args.model} on {args.data}: {args.optimizer}, lr {args.lr:g}, {args.schedule}, batch {args.batch_size}"


def training(path: str, args, modes, records, info, metric: str) -> None:
    """Loss per step (left) and ``metric`` per evaluation (right), per mode."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = dict(zip(("explicit", "vjp", "auto"), ("-", "--", ":")))
    for m in modes:
        train = [r for r in records if r["event"] == "train" and r.get("mode") == m]
        evals = [r for r in records if r["event"] == "eval" and r.get("mode") == m]
        steps, losses = [r["step"] for r in train], [r["loss"] for r in train]
        raw = left.plot(steps, losses, ".", markersize=3, alpha=0.35, label=f"{m}: per-batch loss")[0]
        left.plot(steps, smooth(losses), styles[m], color=raw.get_color(), label=f"{m}: smoothed (EMA 0.9)")
        left.plot([r["step"] for r in evals], [r["loss"] for r in evals], styles[m], marker="o", color="black",
                  label=f"{m}: evaluation loss")
        scale = 1 if metric == "perplexity" else 100
        final = evals[-1][metric] * scale if evals else float("nan")
        right.plot([r["step"] for r in evals], [r[metric] * scale for r in evals], styles[m], marker="o",
                   label=f"{m} (final {final:.2f}{'' if metric == 'perplexity' else '%'})")
    left.set(xlabel="step", ylabel="loss (cross-entropy)", yscale="log", title="training and evaluation loss")
    if metric == "perplexity":
        for name, style in (("unigram", "-."), ("bigram", (0, (1, 3)))):
            right.axhline(info[f"{name}_perplexity"], color="grey", linestyle=style,
                          label=f"{name} baseline ({info[f'{name}_perplexity']:.2f})")
        right.set(yscale="log", ylabel="validation perplexity per byte", title="validation perplexity")
    else:
        what = "rows copied right" if metric == "sequence_accuracy" else "test accuracy"
        right.set(ylabel=f"{what} (%)", title=what, ylim=(max(0, right.get_ylim()[0]), 100))
    right.set(xlabel="step")
    left.legend()
    right.legend(loc="center right" if metric == "perplexity" else "lower right")
    fig.suptitle(_title(args))
    _save(fig, path, "training curves")
    return fig


def smooth(values, weight: float = 0.9) -> list:
    """The exponential moving average of ``values``, bias-corrected (TensorBoard's smoothing): the
    first points are not pulled towards 0."""
    out, average = [], 0.0
    for i, v in enumerate(values, 1):
        average = weight * average + (1 - weight) * v
        out.append(average / (1 - weight ** i))
    return out


def grad_agreement(path: str, args, records) -> None:
    """max relative |g - g_auto| of explicit and vjp per logged step (along the explicit run)."""
    rows = [r for r in records if r["event"] == "grad_agreement"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for key, style in (("explicit_vs_auto", "-o"), ("vjp_vs_auto", "--s")):
        ax.plot([r["step"] for r in rows], [max(r[key], 1e-30) for r in rows], style, markersize=3,
                label=key.replace("_vs_", " vs "))
    ax.axhline(float(np.finfo(np.float32).eps), color="grey", linestyle=":", label="float32 epsilon (2^-23)")
    ax.set(xlabel="step", ylabel="max|g - g_auto| / max|g_auto| (all weights)", yscale="log",
           title=f"gradient agreement along the explicit run\n{_title(args)}")
    ax.legend()
    _save(fig, path, "gradient agreement")
    return fig


def _short(path: str) -> str:
    """``serial[3].residual.serial[1].attention(causal=True, num_heads=4)`` -> ``[3].[1].attention``."""
    path = re.sub(r"\([^)]*\)", "", path)
    return re.sub(r"(serial|parallel|residual)\.?", "", path).lstrip(".")


def backward_flow(path: str, args, flows) -> None:
    """|dL/dX| (top) and |dL/dW| (bottom) per layer, from the loss back to the input."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(max(8, 0.55 * len(flows[0]["norms"]) + 3), 7.5))
    layers = list(flows[0]["norms"])[::-1]                       # loss first, input last
    weighted = [p for p in layers if all(f["norms"][p][1] == f["norms"][p][1] for f in flows)]  # NaN: no weights
    for flow, style in zip(flows, ("-o", "--s")):
        label = f"step {flow['step']}"
        top.plot(range(len(layers)), [flow["norms"][p][0] for p in layers], style, label=label)
        bottom.plot(range(len(weighted)), [flow["norms"][p][1] for p in weighted], style, label=label)
    top.set(ylabel="|dL/dX| at the layer's input", yscale="log",
            title=f"backward flow of one batch, loss (left) to input (right)\n{_title(args)}")
    bottom.set(ylabel="|dL/dW| of the layer's weights", yscale="log", xlabel="layers with weights (model path)")
    top.set_xticks(range(len(layers)), [_short(p) for p in layers], rotation=60, ha="right", fontsize=8)
    bottom.set_xticks(range(len(weighted)), [_short(p) for p in weighted], rotation=60, ha="right", fontsize=8)
    for ax in (top, bottom):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend()
    _save(fig, path, "backward flow")
    return fig
