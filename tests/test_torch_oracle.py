"""PyTorch as an outside oracle: where torch has the same op, jaxback's forward and hand VJP agree
with torch's forward and autograd in float64 (1e-10 relative).

The registry proves each hand rule against JAX's autodiff of the same forward; this file checks
that the forward is the op users know (layouts, padding and align conventions included). torch is
not a dependency: the file skips where it is not installed. Layout: jaxback is NHWC/HWIO, torch
NCHW/OIHW, so arrays are transposed on the way in and out.
"""

import numpy as np
import pytest

import jax.numpy as jnp

import jaxback as jb

torch = pytest.importorskip("torch")
F = torch.nn.functional
RTOL = 1e-10


def _agree(jax_fn, torch_fn, *arrays):
    """Forward and the VJP of one random cotangent, jaxback's (hand rule) against torch autograd.

    ``jax_fn(*jax arrays) -> y`` and ``torch_fn(*torch tensors) -> y`` take the same float64 numpy
    ``arrays`` (torch_fn does its own layout transposes) and return the same-layout output."""
    import jax

    y, vjp = jax.vjp(jax_fn, *(jnp.asarray(a) for a in arrays))
    y_bar = np.random.default_rng(1).standard_normal(y.shape)
    hand = vjp(jnp.asarray(y_bar))
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    y_torch = torch_fn(*tensors)
    y_torch.backward(torch.tensor(y_bar))
    np.testing.assert_allclose(np.asarray(y), y_torch.detach().numpy(), rtol=RTOL, atol=1e-12)
    for mine, t in zip(hand, tensors):
        np.testing.assert_allclose(np.asarray(mine), t.grad.numpy(), rtol=RTOL, atol=1e-12)


def _normal(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def _nchw(t):
    return t.permute(0, 3, 1, 2)


def _nhwc(t):
    return t.permute(0, 2, 3, 1)


@pytest.mark.parametrize("axis, keepdims", [(None, False), (1, False), ((0, 2), True), (-1, True)])
def test_mean(axis, keepdims):
    torch_axis = tuple(range(3)) if axis is None else axis
    _agree(lambda x: jb.mean(x, axis=axis, keepdims=keepdims),
           lambda x: torch.mean(x, dim=torch_axis, keepdim=keepdims), _normal(2, 3, 4))


def test_global_avg_pool():
    _agree(jb.global_avg_pool, lambda x: F.adaptive_avg_pool2d(_nchw(x), 1)[:, :, 0, 0], _normal(2, 5, 3, 4))


@pytest.mark.parametrize("stride, padding, dilation", [(1, "VALID", 1), (2, (2, 1), 1), (3, 1, 2), (1, 0, 3)])
def test_conv1d(stride, padding, dilation):
    def torch_conv1d(w, b, x):
        lo, hi = (0, 0) if padding == "VALID" else (padding, padding) if isinstance(padding, int) else padding
        xt = F.pad(x.permute(0, 2, 1), (lo, hi))  # NWC -> NCW, zeros (lo, hi) as jaxback pads
        return F.conv1d(xt, w.permute(2, 1, 0), b, stride=stride, dilation=dilation).permute(0, 2, 1)

    _agree(lambda w, b, x: jb.conv1d(jb.Conv1dParams(w, b), x, stride=stride, padding=padding, dilation=dilation),
           torch_conv1d, _normal(3, 4, 5, seed=1), _normal(5, seed=2), _normal(2, 11, 4))


@pytest.mark.parametrize("method", ["nearest", "bilinear"])
@pytest.mark.parametrize("scale", [2, 3, (2, 1)])
def test_upsample(method, scale):
    corners = {"align_corners": False} if method == "bilinear" else {}  # half-pixel centres
    factor = (scale, scale) if isinstance(scale, int) else scale
    _agree(lambda x: jb.upsample(x, scale=scale, method=method),
           lambda x: _nhwc(F.interpolate(_nchw(x), scale_factor=factor, mode=method, **corners)),
           _normal(2, 3, 4, 2))


@pytest.mark.parametrize("stride, padding, kernel", [(1, "VALID", (3, 3)), (2, "VALID", (3, 2)), (2, 1, (3, 3)),
                                                     (3, ((1, 1), (1, 1)), (4, 3)), (2, "SAME", (4, 4))])
def test_conv_transpose2d(stride, padding, kernel):
    # torch pads (p, p): "VALID" is p = 0 and "SAME" with k - s = 2 is p = 1 (H' = H s either way)
    p = {"VALID": 0, "SAME": 1}.get(padding, padding[0][0] if isinstance(padding, tuple) else padding)

    def torch_conv_transpose2d(w, b, x):
        y = F.conv_transpose2d(_nchw(x), w.permute(2, 3, 0, 1), b, stride=stride, padding=p)  # w: (C_in, C_out, kh, kw)
        return _nhwc(y)

    _agree(lambda w, b, x: jb.conv_transpose2d(jb.ConvTranspose2dParams(w, b), x, stride=stride, padding=padding),
           torch_conv_transpose2d, _normal(*kernel, 3, 2, seed=1), _normal(2, seed=2), _normal(2, 4, 5, 3))


@pytest.mark.parametrize("num_groups", [1, 2, 6])
def test_group_norm(num_groups):
    _agree(lambda s, b, x: jb.group_norm(jb.GroupNormParams(s, b), x, num_groups=num_groups),
           lambda s, b, x: _nhwc(F.group_norm(_nchw(x), num_groups, s, b, eps=1e-5)),
           1 + 0.5 * _normal(6, seed=1), _normal(6, seed=2), _normal(2, 3, 4, 6))


def _torch_gru(w_x, w_h, b_x, b_h, xs, h0, batch_first=False):
    """float64 nn.GRU run with jaxback's GRUParams as its parameters (transposed weights), through
    ``functional_call`` so that autograd reaches the given tensors."""
    gru = torch.nn.GRU(w_x.shape[0], w_h.shape[0], batch_first=batch_first).double()
    weights = {"weight_ih_l0": w_x.T, "weight_hh_l0": w_h.T, "bias_ih_l0": b_x, "bias_hh_l0": b_h}
    return torch.func.functional_call(gru, weights, (xs, h0[None]))


@pytest.mark.parametrize("t, batch_first", [(1, False), (5, False), (5, True)])
def test_gru(t, batch_first):
    """hs and h_T stacked as one output along the time axis, so the cotangent reaches both."""
    n, d, h = 2, 3, 4
    axis = 1 if batch_first else 0

    def mine(w_x, w_h, b_x, b_h, xs, h0):
        hs, h_T = jb.gru(jb.GRUParams(w_x, w_h, b_x, b_h), xs, h0, batch_first=batch_first)
        return jnp.concatenate([hs, jnp.expand_dims(h_T, axis)], axis)

    def theirs(w_x, w_h, b_x, b_h, xs, h0):
        hs, h_T = _torch_gru(w_x, w_h, b_x, b_h, xs, h0, batch_first)  # h_T: (1, N, H) either way
        return torch.cat([hs, h_T.transpose(0, 1) if batch_first else h_T], axis)

    xs = _normal(n, t, d) if batch_first else _normal(t, n, d)
    _agree(mine, theirs, _normal(d, 3 * h, seed=1), _normal(h, 3 * h, seed=2), _normal(3 * h, seed=3),
           _normal(3 * h, seed=4), xs, _normal(n, h, seed=5))


@pytest.mark.parametrize("batch_first", [False, True])
def test_lstm(batch_first):
    """torch's gate order is jaxback's (i, f, g, o); its second bias is set to zero. hs, h_T and c_T
    are stacked along the time axis, so the cotangent reaches all three."""
    t, n, d, h = 5, 2, 3, 4
    axis = 1 if batch_first else 0

    def mine(w_x, w_h, b, xs, h0, c0):
        hs, final = jb.lstm(jb.LSTMParams(w_x, w_h, b), xs, jb.LSTMState(h0, c0), batch_first=batch_first)
        return jnp.concatenate([hs, jnp.expand_dims(final.h, axis), jnp.expand_dims(final.c, axis)], axis)

    def theirs(w_x, w_h, b, xs, h0, c0):
        lstm = torch.nn.LSTM(d, h, batch_first=batch_first).double()
        weights = {"weight_ih_l0": w_x.T, "weight_hh_l0": w_h.T, "bias_ih_l0": b, "bias_hh_l0": torch.zeros_like(b)}
        hs, (h_T, c_T) = torch.func.functional_call(lstm, weights, (xs, (h0[None], c0[None])))
        along = (lambda s: s.transpose(0, 1)) if batch_first else (lambda s: s)  # states: (1, N, H)
        return torch.cat([hs, along(h_T), along(c_T)], axis)

    xs = _normal(n, t, d) if batch_first else _normal(t, n, d)
    _agree(mine, theirs, _normal(d, 4 * h, seed=1), _normal(h, 4 * h, seed=2), _normal(4 * h, seed=3), xs,
           _normal(n, h, seed=4), _normal(n, h, seed=5))


@pytest.mark.filterwarnings("ignore:Lower right causal bias will produce NaNs")  # it gives 0 rows, as jaxback
@pytest.mark.parametrize("s, causal, block_size", [(5, False, None), (3, True, None), (7, True, None), (7, True, 2)])
def test_attention_cross_grouped_causal_lower_right(s, causal, block_size):
    """Cross-attention (S keys for T = 5 queries) with 2 K/V heads for 4 query heads against
    ``scaled_dot_product_attention(enable_gqa=True)``; causal is torch's ``causal_lower_right``
    (aligned at the end: NOTE (causal, S != T) in jaxback/_attention.py; for S = 3 < T the first two
    queries see no key, and torch's rows are 0 too). Dropout is random in torch: not compared here."""
    from torch.nn.attention.bias import causal_lower_right
    n, t, width, heads, kv_heads = 2, 5, 8, 4, 2
    d = width // heads

    def mine(w_q, w_k, w_v, w_o, b_o, x, kv):
        return jb.attention(jb.AttentionParams(w_q, w_k, w_v, w_o, b_o), x, kv, num_heads=heads,
                            num_kv_heads=kv_heads, causal=causal, block_size=block_size)

    def theirs(w_q, w_k, w_v, w_o, b_o, x, kv):
        split = lambda a, h: a.reshape(n, a.shape[1], h, d).transpose(1, 2)  # (N, L, h*d) -> (N, h, L, d)
        mask = causal_lower_right(t, s)._materialize() if causal else None
        o = F.scaled_dot_product_attention(split(x @ w_q, heads), split(kv @ w_k, kv_heads), split(kv @ w_v, kv_heads),
                                           attn_mask=mask, enable_gqa=True)
        return o.transpose(1, 2).reshape(n, t, width) @ w_o + b_o

    _agree(mine, theirs, _normal(width, width, seed=1), _normal(width, kv_heads * d, seed=2),
           _normal(width, kv_heads * d, seed=3), _normal(width, width, seed=4), _normal(width, seed=5),
           _normal(n, t, width), _normal(n, s, width, seed=6))
