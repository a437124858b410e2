"""The same two networks in jaxback and in each peer, as jitted training steps (loss, grads, SGD).

Networks (float32):
* MLP ``sizes = (n_in, h1, h2, n_out)``: linear-relu-linear-relu-linear, softmax cross-entropy on
  integer labels;
* pre-LN transformer block on x: (N, T, D): ``x + attn(ln(x))`` then ``x + W2 gelu(W1 ln(x))``
  (4 heads, causal, MLP width 4D, exact gelu), mean squared error to a target of x's shape.

Each builder returns ``{variant: step}`` where ``step(params, batch) -> (loss, params)`` is jitted
(torch: a plain function). Peers are optional: a builder skips a peer whose package is missing.
Variants: ``jax`` (plain JAX autodiff; attention is ``jax.nn.dot_product_attention``), jaxback's
``explicit`` (``jb.backprop``), ``vjp`` (``jax.grad`` through the hand rules) and ``auto`` (autodiff of
the same forward), ``equinox``, ``flax`` (linen) and ``torch`` (CPU, ``scaled_dot_product_attention``).
"""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np

import jaxback as jb

LR = 1e-3
HEADS = 4


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _sgd(params, grads):
    return jax.tree_util.tree_map(lambda p, g: p - LR * g, params, grads)


def _jit_step(loss_fn):
    """jit((params, batch) -> (loss, params - lr * grads)) for ``loss_fn(params, batch)``."""
    def step(params, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        return loss, _sgd(params, grads)

    return jax.jit(step)


def _jaxback_steps(model, loss, params, batch_example):
    """explicit / vjp / auto steps of one jaxback model (``jb.value_and_grad``): {name: (step, params)}."""
    def make(mode):
        grad_fn = jb.value_and_grad(model, loss, mode=mode)

        def step(params, batch):
            value, grads = grad_fn(params, *batch)
            return value, _sgd(params, grads)

        return jax.jit(step), params

    return {mode: make(mode) for mode in jb.MODES}


# MLP ------------------------------------------------------------------------------------------------------
def mlp_batch(sizes, batch, seed=0):
    rng = np.random.default_rng(seed)
    return (jnp.asarray(rng.standard_normal((batch, sizes[0])), jnp.float32),
            jnp.asarray(rng.integers(0, sizes[-1], batch), jnp.int32))


def mlp_steps(sizes, batch_example):
    """{variant: (step, params)} for the MLP; batch = (x (N, n_in), labels (N,))."""
    key = jax.random.PRNGKey(0)
    layers = []
    for width in sizes[1:-1]:
        layers += [jb.linear.sized(width), jb.relu]
    model = jb.serial(*layers, jb.linear.sized(sizes[-1]))
    params, _ = model.init(key, batch_example[0])
    steps = _jaxback_steps(model, jb.softmax_cross_entropy, params, batch_example)
    plain = [(p.w, p.b) for p in params if p is not None]

    def plain_loss(params, batch):
        h = batch[0]
        for w, b in params[:-1]:
            h = jax.nn.relu(h @ w + b)
        logits = h @ params[-1][0] + params[-1][1]
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, batch[1][:, None], 1)[:, 0])

    steps["jax"] = (_jit_step(plain_loss), plain)
    if have("equinox"):
        steps["equinox"] = _equinox_mlp(sizes, plain_loss)
    if have("flax"):
        steps["flax"] = _flax_mlp(sizes, batch_example)
    if have("torch"):
        steps["torch"] = _torch_mlp(sizes)
    return steps


def _equinox_mlp(sizes, _):
    import equinox as eqx
    mlp = eqx.nn.MLP(sizes[0], sizes[-1], sizes[1], len(sizes) - 2, activation=jax.nn.relu,
                     key=jax.random.PRNGKey(0))

    def loss(model, batch):
        logits = jax.vmap(model)(batch[0])
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, batch[1][:, None], 1)[:, 0])

    return _equinox_step(mlp, loss)


def _equinox_step(model, loss):
    """A plain ``jax.jit`` step over the model's arrays (``eqx.partition``), so that it lowers and
    compiles like the others; equinox's own ``filter_value_and_grad`` takes the gradient."""
    import equinox as eqx
    arrays, static = eqx.partition(model, eqx.is_array)

    def step(arrays, batch):
        value, grads = eqx.filter_value_and_grad(lambda m: loss(m, batch))(eqx.combine(arrays, static))
        return value, _sgd(arrays, grads)

    return jax.jit(step), arrays


def _flax_mlp(sizes, batch_example):
    import flax.linen as nn

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            for width in sizes[1:-1]:
                x = nn.relu(nn.Dense(width)(x))
            return nn.Dense(sizes[-1])(x)

    module = MLP()
    params = module.init(jax.random.PRNGKey(0), batch_example[0])

    def loss(params, batch):
        logits = module.apply(params, batch[0])
        return jnp.mean(jax.nn.logsumexp(logits, -1) - jnp.take_along_axis(logits, batch[1][:, None], 1)[:, 0])

    return _jit_step(loss), params


def _torch_mlp(sizes):
    import torch
    torch.set_num_threads(2)
    torch.manual_seed(0)
    mods = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        mods += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    model = torch.nn.Sequential(*mods, torch.nn.Linear(sizes[-2], sizes[-1]))
    return _torch_step(model, torch.nn.functional.cross_entropy), model


def _torch_step(model, loss_fn):
    import torch
    opt = torch.optim.SGD(model.parameters(), lr=LR)

    def step(model, batch):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(batch[0]), batch[1])
        loss.backward()
        opt.step()
        return loss.item(), model

    return step


def torch_batch(batch):
    """The same batch as torch tensors (labels as int64)."""
    import torch
    return tuple(torch.from_numpy(np.asarray(a).astype(np.int64 if a.dtype == jnp.int32 else np.float32)) for a in batch)


# transformer block --------------------------------------------------------------------------------------
def block_batch(n, t, width, seed=0):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.standard_normal((n, t, width)), jnp.float32) for _ in range(2))


def jaxback_block(width, block_size=None):
    attention = jb.bind(jb.attention, num_heads=HEADS, causal=True, block_size=block_size)
    mlp = jb.serial(jb.layer_norm, jb.linear.sized(4 * width), jb.gelu, jb.linear.sized(width))
    return jb.serial(jb.residual(jb.serial(jb.layer_norm, attention)), jb.residual(mlp))


def block_steps(batch_example):
    """{variant: (step, params)} for the transformer block; batch = (x, target), both (N, T, D)."""
    width = batch_example[0].shape[-1]
    model = jaxback_block(width)
    params, _ = model.init(jax.random.PRNGKey(0), batch_example[0])
    steps = _jaxback_steps(model, jb.mse, params, batch_example)
    steps["jax"] = (_jit_step(_plain_block_loss), _plain_block_params(params))
    if have("equinox"):
        steps["equinox"] = _equinox_block(width)
    if have("flax"):
        steps["flax"] = _flax_block(batch_example)
    if have("torch"):
        steps["torch"] = _torch_block(width)
    return steps


def _plain_block_params(params):
    (ln1, att), (ln2, w1, _, w2) = params
    return dict(ln1=tuple(ln1), att=tuple(att), ln2=tuple(ln2), w1=tuple(w1), w2=tuple(w2))


def _layer_norm(x, scale, bias, eps=1e-5):
    mean = x.mean(-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), -1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + eps) * scale + bias


def _plain_block_loss(p, batch):
    x, target = batch
    n, t, width = x.shape
    h = _layer_norm(x, *p["ln1"])
    w_q, w_k, w_v, w_o, b_o = p["att"]
    heads = lambda w: (h @ w).reshape(n, t, HEADS, width // HEADS)
    o = jax.nn.dot_product_attention(heads(w_q), heads(w_k), heads(w_v), is_causal=True, implementation="xla")
    x = x + o.reshape(n, t, width) @ w_o + b_o
    h = jax.nn.gelu(_layer_norm(x, *p["ln2"]) @ p["w1"][0] + p["w1"][1], approximate=False)
    y = x + h @ p["w2"][0] + p["w2"][1]
    return jnp.mean(jnp.square(y - target))


def _equinox_block(width):
    import equinox as eqx
    keys = jax.random.split(jax.random.PRNGKey(0), 3)

    class Block(eqx.Module):
        ln1: eqx.nn.LayerNorm
        att: eqx.nn.MultiheadAttention
        ln2: eqx.nn.LayerNorm
        w1: eqx.nn.Linear
        w2: eqx.nn.Linear

        def __call__(self, x):  # one sequence (T, D)
            t = x.shape[0]
            h = jax.vmap(self.ln1)(x)
            x = x + self.att(h, h, h, mask=jnp.tril(jnp.ones((t, t), bool)))
            h = jax.vmap(lambda r: self.w2(jax.nn.gelu(self.w1(self.ln2(r)), approximate=False)))(x)
            return x + h

    block = Block(eqx.nn.LayerNorm(width), eqx.nn.MultiheadAttention(HEADS, width, use_output_bias=True, key=keys[0]),
                  eqx.nn.LayerNorm(width), eqx.nn.Linear(width, 4 * width, key=keys[1]),
                  eqx.nn.Linear(4 * width, width, key=keys[2]))

    return _equinox_step(block, lambda m, batch: jnp.mean(jnp.square(jax.vmap(m)(batch[0]) - batch[1])))


def _flax_block(batch_example):
    import flax.linen as nn
    width = batch_example[0].shape[-1]

    class Block(nn.Module):
        @nn.compact
        def __call__(self, x):
            h = nn.LayerNorm()(x)
            mask = nn.make_causal_mask(jnp.ones(x.shape[:2]))
            x = x + nn.MultiHeadDotProductAttention(num_heads=HEADS, use_bias=False)(h, h, mask=mask)
            h = nn.gelu(nn.Dense(4 * width)(nn.LayerNorm()(x)), approximate=False)
            return x + nn.Dense(width)(h)

    module = Block()
    params = module.init(jax.random.PRNGKey(0), batch_example[0])
    loss = lambda p, b: jnp.mean(jnp.square(module.apply(p, b[0]) - b[1]))
    return _jit_step(loss), params


def _torch_block(width):
    import torch
    torch.set_num_threads(2)
    torch.manual_seed(0)
    F = torch.nn.functional

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = torch.nn.LayerNorm(width), torch.nn.LayerNorm(width)
            self.qkv = torch.nn.Linear(width, 3 * width, bias=False)
            self.out = torch.nn.Linear(width, width)
            self.w1, self.w2 = torch.nn.Linear(width, 4 * width), torch.nn.Linear(4 * width, width)

        def forward(self, x):
            n, t, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(n, t, 3, HEADS, width // HEADS).permute(2, 0, 3, 1, 4)
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(n, t, width)
            x = x + self.out(o)
            return x + self.w2(F.gelu(self.w1(self.ln2(x))))

    block = Block()
    return _torch_step(block, F.mse_loss), block
