"""The experiments' own CNN and transformer LM as jitted training steps, in jaxback's three modes.

They are the networks ``experiments/train.py`` trains (``experiments/models.py``, size "small")
on inputs of the trainer's shapes, with random values: only shapes and dtypes matter for time and
memory. Each step is ``step((params, state), (x, target)) -> (loss, (params, state))``: the
gradients of one mode (``experiments/_setup.gradients``, the trainer's own ``jb.value_and_grad``:
running statistics and a dropout key threaded through), then SGD. No peer framework has these networks here, so their reference
column is jaxback's own ``auto`` (autodiff of the same forward).
"""

from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import jaxback as jb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "experiments"))
import models  # noqa: E402  (experiments/models.py)
from _setup import gradients  # noqa: E402  (the trainer's three modes)

from _peers import _sgd  # noqa: E402

__all__ = ["cnn_case", "lm_case", "model_steps"]


def cnn_case(batch=32, seed=0, **options):
    """``(network, (x, labels))``: the digits CNN on NHWC (N, 8, 8, 1) images, 10 classes;
    ``options`` go to ``models.cnn`` (``remat=True``)."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((batch, 8, 8, 1)), jnp.float32)
    return models.cnn(classes=10, **options), (x, jnp.asarray(rng.integers(0, 10, batch), jnp.int32))


def lm_case(batch=32, context=64, vocab=256, seed=0, **options):
    """``(network, (ids, next ids))``: the byte-level transformer LM on (N, T) windows;
    ``options`` go to ``models.lm`` (``remat=True``, ``depth=4``)."""
    rng = np.random.default_rng(seed)
    ids = jnp.asarray(rng.integers(0, vocab, (batch, context)), jnp.int32)
    targets = jnp.asarray(rng.integers(0, vocab, batch * context), jnp.int32)
    return models.lm(vocab=vocab, length=context, **options), (ids, targets)


def model_steps(network, batch):
    """``{mode: (jitted step, (params, state))}`` for explicit, vjp and auto."""
    params, state = network.model.init(jax.random.PRNGKey(0), network.feed(batch[0]))
    key = jax.random.PRNGKey(1)  # a fixed dropout key: every call does the same work

    def make(mode):
        grads_of = gradients(network, mode)

        def step(carry, batch):
            value, new_state, grads = grads_of(carry[0], carry[1], *batch, key)
            return value, (_sgd(carry[0], grads), new_state)

        return jax.jit(step)

    return {mode: (make(mode), (params, state)) for mode in jb.MODES}

