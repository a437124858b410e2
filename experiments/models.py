"""The models ``experiments/train.py`` trains, built from jaxback layers with the model API.

Each builder returns a ``jb.Model`` (their blocks are ``networks.py``'s, spliced flat into one
serial); ``model.init(key, x_example)`` gives its ``(params, state)``
(state is None unless the model has batch norm). ``MODELS`` maps the ``--model`` names to builders
taking the data's shape facts (``classes`` or ``vocab``, ``context``) and a ``size``:
``"small"`` for the results, ``"tiny"`` for the tests (a few hundred parameters, fast to compile).

mlp (digits, x: (N, 64) -> logits (N, 10)):
    linear(64 -> H) -> tanh -> linear(H -> 10)                         H = 64 (tiny: 8)

cnn (digits, x: (N, 8, 8, 1) NHWC -> logits (N, 10)):
    conv3x3(C) -> batch_norm -> relu -> conv3x3(C) -> batch_norm -> relu -> max_pool2d 2x2  (8x8 -> 4x4)
    conv3x3(2C) -> batch_norm -> relu -> max_pool2d 2x2                                      (4x4 -> 2x2)
    flatten (8C) -> dropout(0.25) -> linear(8C -> 10)                  C = 32
    tiny: conv3x3(2) -> batch_norm -> relu -> max_pool2d -> flatten -> dropout -> linear

transformer (bytes, x = (ids, positions): two (N, T) int32 -> logits (N*T, V)), pre-norm, causal:
    parallel(embedding(V, D), embedding(T, D)) -> fan_in_sum            token + learned position
    L x [ residual(layer_norm -> attention(H heads, causal)),
          residual(layer_norm -> linear(D -> 4D) -> gelu -> linear(4D -> D)) ]
    layer_norm -> linear(D -> V) -> reshape (N*T, V)                   D = 64, H = 4, L = 2
                                                                       (tiny: D = 8, H = 2, L = 1)
    The positions are an input (``arange(T)`` per row) so the positional table is one more
    embedding and every piece keeps its own hand rule. The logits are flattened to (N*T, V) so the
    loss is ``softmax_cross_entropy`` over N*T next-byte predictions.
"""

from __future__ import annotations

import jaxback as jb
from networks import attention_sublayer, conv_bn_relu_layers, mlp_sublayer

__all__ = ["MODELS", "mlp", "cnn", "transformer"]


def mlp(*, classes: int, size: str = "small", **_) -> jb.Model:
    """A one-hidden-layer tanh MLP on flat features: (N, F) -> (N, classes)."""
    hidden = {"small": 64, "tiny": 8}[size]
    return jb.serial(jb.linear.sized(hidden), jb.tanh, jb.linear.sized(classes))


def cnn(*, classes: int, size: str = "small", dropout: float = 0.25, **_) -> jb.Model:
    """Three 3x3 convolutions with batch norm on NHWC images: (N, H, W, 1) -> (N, classes)."""
    block = conv_bn_relu_layers
    if size == "tiny":  # every kind of layer once: quick to compile
        return jb.serial(*block(2), jb.max_pool2d, jb.flatten, jb.bind(jb.dropout, rate=dropout),
                         jb.linear.sized(classes))
    c = {"small": 32}[size]
    return jb.serial(*block(c), *block(c), jb.max_pool2d,
                     *block(2 * c), jb.max_pool2d,
                     jb.flatten, jb.bind(jb.dropout, rate=dropout), jb.linear.sized(classes))


def transformer(*, vocab: int, context: int, size: str = "small", **_) -> jb.Model:
    """A causal pre-norm transformer on (ids, positions), each (N, T): -> logits (N*T, vocab)."""
    width, heads, blocks = {"small": (64, 4, 2), "tiny": (8, 2, 1)}[size]
    attention_block, mlp_block = attention_sublayer(heads), mlp_sublayer(width)
    return jb.serial(
        jb.parallel(jb.embedding.sized(vocab, width), jb.embedding.sized(context, width)), jb.fan_in_sum,
        *[b for _ in range(blocks) for b in (attention_block, mlp_block)],
        jb.layer_norm, jb.linear.sized(vocab), jb.bind(jb.reshape, shape=(-1, vocab)))


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer}
