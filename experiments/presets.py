"""The presets of ``experiments/train.py --model NAME``: one small config per network.

A preset names its network (``models.NETWORKS``), its data (``data.load``, with the options it
needs) and the defaults of the optimisation flags; every flag given on the command line wins.
``ALIASES`` keeps older names working (``transformer`` was the lm's name).

Why these numbers:
* mlp: plain SGD with weight decay added to the gradient (``W <- W - lr (dW + wd W)``): the update is linear
  in the gradient, so the three modes' runs stay within rounding of each other; 1000 steps (24
  epochs) reach ~97 % test accuracy in seconds, the README's main job.
* cnn: momentum and a cosine decay to 0, so the final accuracy does not ride on the last noisy
  steps (>= 99 % test accuracy).
* lm, copy-*: Adam(W) with warm-up, the usual choice for attention and LSTMs.
"""

from __future__ import annotations

__all__ = ["PRESETS", "ALIASES", "resolve"]

PRESETS = {
    "mlp": dict(network="mlp", data="digits", data_options={}, optimizer="sgd", lr=0.1, weight_decay=1e-4,
                schedule="constant", steps=1000, batch_size=32, eval_every=250),
    "cnn": dict(network="cnn", data="digits", data_options=dict(images=True), optimizer="momentum", lr=0.1,
                weight_decay=2e-3, schedule="cosine", steps=4000, batch_size=32, eval_every=500),
    "lm": dict(network="lm", data="stdlib", data_options={}, optimizer="adamw", lr=3e-3, weight_decay=0.01,
               schedule="warmup-cosine", steps=3000, batch_size=32, eval_every=500),
    "copy-attention": dict(network="copy-attention", data="copy", data_options=dict(k=6, symbols=8),
                           optimizer="adam", lr=3e-3, weight_decay=0.0, schedule="constant", steps=1000,
                           batch_size=64, eval_every=250),
    "copy-lstm": dict(network="copy-lstm", data="copy", data_options=dict(k=6, symbols=8), optimizer="adam",
                      lr=3e-3, weight_decay=0.0, schedule="constant", steps=1000, batch_size=64, eval_every=250),
}
ALIASES = {"transformer": "lm"}

FLAGS = ("data", "optimizer", "lr", "weight_decay", "schedule", "steps", "batch_size", "eval_every")
"""The preset keys that are command-line flags (their defaults)."""


def resolve(name: str) -> str:
    """The preset's own name (``transformer`` -> ``lm``)."""
    return ALIASES.get(name, name)
