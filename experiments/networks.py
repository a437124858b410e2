"""The networks the experiments train, built from jaxback's combinators (no glue code).

Each builder returns a ``jb.Model``; ``model.init(key, x)`` infers every size from an example
input. Only jax and jaxback are imported here, so the tests can build the same networks.
"""

from __future__ import annotations

import jax.numpy as jnp

import jaxback as jb

__all__ = ["digits_cnn", "conv_bn_relu_layers", "attention_sublayer", "mlp_sublayer", "transformer_block",
           "transformer_lm", "attention_copier", "lstm_copier", "answer_loss", "answers"]


def conv_bn_relu_layers(features: int) -> tuple:
    """conv3x3(features) -> batch_norm -> relu, as a tuple to nest in a serial or splice into one."""
    return jb.conv2d.sized(features, 3), jb.batch_norm, jb.relu


def conv_bn_relu(features: int):
    return jb.serial(*conv_bn_relu_layers(features))


def digits_cnn(c1: int = 16, c2: int = 32, classes: int = 10, dropout: float = 0.25):
    """8x8x1 digits -> logits: conv-bn-relu, a residual conv-bn-relu block, pool, conv-bn-relu,
    pool, flatten, dropout, linear. (8x8 -> 4x4 -> 2x2; 2*2*c2 features into the classifier.)"""
    return jb.serial(conv_bn_relu(c1), jb.residual(conv_bn_relu(c1)), jb.max_pool2d,
                     conv_bn_relu(c2), jb.max_pool2d, jb.flatten,
                     jb.bind(jb.dropout, rate=dropout), jb.linear.sized(classes))


def attention_sublayer(heads: int):
    """``x + attn(ln(x))``, causal: the first half of a pre-LN transformer block."""
    return jb.residual(jb.serial(jb.layer_norm, jb.bind(jb.attention, num_heads=heads, causal=True)))


def mlp_sublayer(width: int, mlp_ratio: int = 4):
    """``x + W2 gelu(W1 ln(x))``, hidden width ``mlp_ratio * width``: the second half."""
    return jb.residual(jb.serial(jb.layer_norm, jb.linear.sized(mlp_ratio * width), jb.gelu, jb.linear.sized(width)))


def transformer_block(width: int, heads: int, mlp_ratio: int = 4):
    """Pre-LN transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))`` (causal attention)."""
    return jb.serial(attention_sublayer(heads), mlp_sublayer(width, mlp_ratio))


def transformer_lm(vocab: int, width: int, heads: int, depth: int, max_length: int):
    """Decoder-only LM: ids (N, T) -> logits (N*T, vocab): token and position embeddings, ``depth``
    pre-LN blocks, a final layer norm and the output head (flattened for the loss)."""
    return jb.serial(jb.embedding.sized(vocab, width), jb.position_embedding.sized(max_length),
                     *(transformer_block(width, heads) for _ in range(depth)),
                     jb.layer_norm, jb.linear.sized(vocab), jb.bind(jb.reshape, shape=(-1, vocab)))


def attention_copier(vocab: int, width: int, heads: int, length: int):
    """Copy task, attention: ids (N, T) -> logits (N, T, vocab)."""
    return jb.serial(jb.embedding.sized(vocab, width), jb.position_embedding.sized(length),
                     jb.bind(jb.attention, num_heads=heads, causal=True), jb.linear.sized(vocab))


def lstm_copier(vocab: int, width: int, hidden: int):
    """Copy task, LSTM: ``(ids (T, N), initial state)`` -> logits (T, N, vocab), time-major.

    The lstm takes the pair ``(xs, state)``: ``parallel`` embeds the ids and passes the state
    through; ``select`` keeps the hidden states ``hs`` of the lstm's ``(hs, final_state)``."""
    return jb.serial(jb.parallel(jb.embedding.sized(vocab, width), jb.identity), jb.lstm.sized(hidden),
                     jb.select, jb.linear.sized(vocab))


# the copy task's loss: cross-entropy of the answers only ---------------------------------------
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
