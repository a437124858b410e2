"""The networks ``experiments/train.py`` trains, each one jaxback model built from the combinators.

A builder takes the data's facts (``classes``, or ``vocab`` and ``length``) and a ``size``
(``"small"`` for results, ``"tiny"`` for tests: a few hundred parameters, quick to compile) and
returns a :class:`Network`: the model, its loss, and for the LSTM how a batch is fed to it.
``model.init(key, network.feed(x_example))`` gives ``(params, state)`` (state: batch norm's).

mlp (digits, x: (N, 64) -> logits (N, 10)):
    linear(64 -> H) -> tanh -> linear(H -> 10)                        H = 64 (tiny: 8)
cnn (digits, x: (N, 8, 8, 1) NHWC -> logits (N, 10)):
    [conv3x3(C) -> batch_norm -> relu] x 2 -> max_pool2d    (8x8 -> 4x4)
    conv3x3(2C) -> batch_norm -> relu -> max_pool2d          (4x4 -> 2x2)
    flatten (8C) -> dropout(0.25) -> linear(8C -> 10)                  C = 32
    tiny: conv3x3(2) -> batch_norm -> relu -> max_pool2d -> flatten -> dropout -> linear
lm (stdlib bytes, ids (N, T) -> logits (N*T, 256)), pre-norm, causal:
    embedding(V, D) -> position_embedding(T)
    L x [ residual(layer_norm -> attention(H heads, causal)),
          residual(layer_norm -> linear(D -> 4D) -> gelu -> linear(4D -> D)) ]
    layer_norm -> linear(D -> V) -> reshape (N*T, V)        D = 64, H = 4, L = 2 (tiny: 8, 2, 1)
copy-attention (copy task, ids (N, T) -> logits (N, T, V)):
    embedding(V, D) -> position_embedding(T) -> attention(H heads, causal) -> linear(D -> V)
                                                                       D = 64, H = 4 (tiny: 8, 2)
copy-lstm (copy task, fed ``(ids.T, zero state)``, time-major -> logits (T, N, V)):
    parallel(embedding(V, D), identity) -> lstm(H) -> select (the hidden states) -> linear(H -> V)
                                                                       D = 64, H = 128 (tiny: 4, 8)

The copy task's loss (``answer_loss``, a layer with its own hand rule) is the cross-entropy of
the last K positions (the answers); the other positions get an exact zero gradient.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp

import jaxback as jb

__all__ = ["Network", "NETWORKS", "mlp", "cnn", "lm", "copy_attention", "copy_lstm", "conv_bn_relu",
           "attention_sublayer", "mlp_sublayer", "answer_loss", "answers"]


def _batch_major(ids):
    return ids


def _all(logits, targets):
    return logits


class Network(NamedTuple):
    """What a preset trains: ``model`` (a ``jb.Model``), its ``loss`` (a Layer), ``feed(inputs) ->
    model input`` (inside jit: the LSTM's time-major pair) and ``answers(logits, targets) ->
    logits aligned with targets`` (what accuracy compares: the copy task's last K positions)."""

    model: jb.Model
    loss: jb.Layer = jb.softmax_cross_entropy
    feed: Callable = _batch_major
    answers: Callable = _all


# blocks -------------------------------------------------------------------------------------------
def conv_bn_relu(features: int) -> tuple:
    """conv3x3(features) -> batch_norm -> relu, as a tuple to splice into a serial."""
    return jb.conv2d.sized(features, 3), jb.batch_norm, jb.relu


def attention_sublayer(heads: int):
    """``x + attn(ln(x))``, causal: the first half of a pre-LN transformer block."""
    return jb.residual(jb.serial(jb.layer_norm, jb.bind(jb.attention, num_heads=heads, causal=True)))


def mlp_sublayer(width: int, ratio: int = 4):
    """``x + W2 gelu(W1 ln(x))``, hidden width ``ratio * width``: the second half."""
    return jb.residual(jb.serial(jb.layer_norm, jb.linear.sized(ratio * width), jb.gelu, jb.linear.sized(width)))


def _blocks(blocks, remat: bool) -> tuple:
    """``blocks`` (each a tuple of layers) spliced into one serial, each under ``jb.remat`` if asked."""
    return tuple(l for b in blocks for l in ((jb.remat(jb.serial(*b)),) if remat else b))


def _tokens(vocab: int, width: int, length: int) -> tuple:
    """Token embedding, then a learned vector per position."""
    return jb.embedding.sized(vocab, width), jb.position_embedding.sized(length)


# the networks -------------------------------------------------------------------------------------
def mlp(*, classes: int, size: str = "small", **_) -> Network:
    """A one-hidden-layer tanh MLP on flat features: (N, F) -> (N, classes)."""
    hidden = {"small": 64, "tiny": 8}[size]
    return Network(jb.serial(jb.linear.sized(hidden), jb.tanh, jb.linear.sized(classes)))


def cnn(*, classes: int, size: str = "small", dropout: float = 0.25, remat: bool = False, **_) -> Network:
    """Three 3x3 convolutions with batch norm on NHWC images: (N, H, W, 1) -> (N, classes);
    ``remat``: each conv-bn-relu block under ``jb.remat`` (recomputed in the backward)."""
    head = (jb.flatten, jb.bind(jb.dropout, rate=dropout), jb.linear.sized(classes))
    if size == "tiny":  # every kind of layer once: quick to compile
        return Network(jb.serial(*_blocks([conv_bn_relu(2)], remat), jb.max_pool2d, *head))
    c = {"small": 32}[size]
    return Network(jb.serial(*_blocks([conv_bn_relu(c), conv_bn_relu(c)], remat), jb.max_pool2d,
                             *_blocks([conv_bn_relu(2 * c)], remat), jb.max_pool2d, *head))


def lm(*, vocab: int, length: int, size: str = "small", remat: bool = False, depth=None, **_) -> Network:
    """A causal pre-norm transformer on ids (N, T): -> logits (N*T, vocab), flattened so the loss
    is ``softmax_cross_entropy`` over N*T next-byte predictions. ``remat``: each block (attention
    and MLP sublayers) under ``jb.remat``; ``depth``: the number of blocks, if not the size's."""
    width, heads, blocks = {"small": (64, 4, 2), "tiny": (8, 2, 1)}[size]
    body = _blocks([(attention_sublayer(heads), mlp_sublayer(width))] * (depth or blocks), remat)
    return Network(jb.serial(*_tokens(vocab, width, length), *body, jb.layer_norm, jb.linear.sized(vocab),
                             jb.bind(jb.reshape, shape=(-1, vocab))))


def copy_attention(*, vocab: int, length: int, size: str = "small", **_) -> Network:
    """Copy task, one causal attention layer: ids (N, T) -> logits (N, T, vocab)."""
    width, heads = {"small": (64, 4), "tiny": (8, 2)}[size]
    model = jb.serial(*_tokens(vocab, width, length), jb.bind(jb.attention, num_heads=heads, causal=True),
                      jb.linear.sized(vocab))
    return Network(model, answer_loss, answers=lambda logits, targets: answers(logits, targets.shape[1], False))


def copy_lstm(*, vocab: int, size: str = "small", **_) -> Network:
    """Copy task, an LSTM: ``(ids.T (T, N), zero state)`` -> logits (T, N, vocab), time-major.

    The lstm takes the pair ``(xs, state)``: ``parallel`` embeds the ids and passes the state
    through; ``select`` keeps the hidden states ``hs`` of the lstm's ``(hs, final_state)``."""
    width, hidden = {"small": (64, 128), "tiny": (4, 8)}[size]
    model = jb.serial(jb.parallel(jb.embedding.sized(vocab, width), jb.identity), jb.lstm.sized(hidden), jb.select,
                      jb.linear.sized(vocab))
    return Network(model, jb.bind(answer_loss, time_major=True),
                   feed=lambda ids: (ids.T, jb.lstm_state(ids.shape[0], hidden)),
                   answers=lambda logits, targets: answers(logits, targets.shape[1], True))


NETWORKS = {"mlp": mlp, "cnn": cnn, "lm": lm, "copy-attention": copy_attention, "copy-lstm": copy_lstm}


# the copy task's loss: cross-entropy of the answers only ------------------------------------------
def answers(logits, k: int, time_major: bool):
    """The last ``k`` positions, batch-major: (N, K, V)."""
    return jnp.swapaxes(logits[-k:], 0, 1) if time_major else logits[:, -k:]


def answer_loss_auto(logits, targets, *, time_major=False):
    """Mean softmax cross-entropy of the last K positions of logits (N, T, V), or (T, N, V) with
    ``time_major``, against targets (N, K)."""
    picked = answers(logits, targets.shape[1], time_major)
    return jb.softmax_cross_entropy.auto(picked.reshape(-1, picked.shape[-1]), targets.reshape(-1))


def answer_loss_fwd(logits, targets, *, time_major=False):
    picked = answers(logits, targets.shape[1], time_major)
    loss, res = jb.softmax_cross_entropy.fwd(picked.reshape(-1, picked.shape[-1]), targets.reshape(-1))
    return loss, (res, jnp.zeros(logits.shape[:2] + (0,), logits.dtype))  # (T, N) or (N, T), 0 bytes


def answer_loss_bwd(res, loss_bar, *, time_major=False):
    """The loss reads only the answers: their gradient is the cross-entropy's, the other T - K
    positions get exact zeros (logits_bar = pad(answers_bar) along time)."""
    ce_res, like = res
    answers_bar, _ = jb.softmax_cross_entropy.bwd(ce_res, loss_bar)      # (N*K, V)
    n = like.shape[1] if time_major else like.shape[0]
    answers_bar = answers_bar.reshape(n, -1, answers_bar.shape[-1])      # (N, K, V)
    k, t = answers_bar.shape[1], like.shape[0] if time_major else like.shape[1]
    if time_major:
        logits_bar = jnp.pad(jnp.swapaxes(answers_bar, 0, 1), ((t - k, 0), (0, 0), (0, 0)))
    else:
        logits_bar = jnp.pad(answers_bar, ((0, 0), (t - k, 0), (0, 0)))
    return logits_bar.astype(like.dtype), None


answer_loss = jb.make_layer(answer_loss_auto, answer_loss_fwd, answer_loss_bwd, name="answer_loss")
