"""lstm: a long short-term memory layer run over a sequence, with back-propagation through time.

Shapes first. Time-major: T steps, N sequences in the batch, D input features, H hidden units.

  xs: (T, N, D)   w_x: (D, 4H)   w_h: (H, 4H)   b: (4H,)   state = (h, c): (N, H) each
  hs: (T, N, H)   final_state = (h_T, c_T): (N, H) each     gate order along 4H: i, f, g, o

Forward, one cell step t = 1..T (x_t = xs[t-1], h_0, c_0 = state; row-wise, so N is a batch):

  z   = x_t @ w_x + h_{t-1} @ w_h + b           (N, 4H) = [z_i | z_f | z_g | z_o], each (N, H)
  i   = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_g)   o = sigmoid(z_o)      input/forget/cell/out
  c_t = f * c_{t-1} + i * g                     (N, H), elementwise
  tc  = tanh(c_t)
  h_t = o * tc                                  hs[t-1] = h_t

Local derivatives, each from a saved OUTPUT (micrograd's rule: no exp to redo):
  sigmoid'(z) = s (1 - s) with s = sigmoid(z);   tanh'(z) = 1 - t**2 written (1 - t)(1 + t), t = tanh(z)

Chain rule for ONE cell. Let dh = dL/dh_t and dc = dL/dc_t counting every path from later steps
(not yet the path through h_t: that is added first). All products below are elementwise, (N, H):

  c_t reaches L directly (dc) and through h_t = o * tanh(c_t):
      dc_t  = dc + dh * o * (1 - tc)(1 + tc)             total cotangent of c_t
  h_t = o * tc:            o_bar = dh * tc
  c_t = f c_{t-1} + i g:   f_bar = dc_t * c_{t-1},   i_bar = dc_t * g,   g_bar = dc_t * i,
                           dc_{t-1} = dc_t * f       (the only path from c_t back to c_{t-1})
  through each gate's nonlinearity, to its slice of z:
      dz_i = i_bar * i (1 - i)     dz_f = f_bar * f (1 - f)
      dz_g = g_bar * (1 - g)(1 + g)     dz_o = o_bar * o (1 - o)       dz = [dz_i | dz_f | dz_g | dz_o]
  z = x_t @ w_x + h_{t-1} @ w_h + b is a linear layer (see _linear.py), so with dz: (N, 4H)
      dh_{t-1} = dz @ w_h.T        (N, 4H)(4H, H) -> (N, H)    the only path from h_{t-1} in this cell
      dx_t     = dz @ w_x.T        (N, 4H)(4H, D) -> (N, D)
      per-step parameter terms:  x_t.T @ dz (D, 4H),  h_{t-1}.T @ dz (H, 4H),  dz.sum(0) (4H,)

Back-propagation through time. The same w_x, w_h, b are used at every step, so their cotangents are
the SUM of the per-step terms. h_t reaches L through hs (hs_bar[t-1]) and through step t+1 (the
dh_{t-1} that step returns); c_t only through step t+1, except at t = T where both reach L through
final_state. So a REVERSE scan carries (dh_next, dc) = (dL/dh_t via step t+1, dL/dc_t), starts from
the final_state cotangent (h_T_bar, c_T_bar), and at step t uses dh = hs_bar[t-1] + dh_next. What is
left in the carry after step 1 is the cotangent of the initial state.

The scan only returns the per-step dz; the parameter sums and every dx_t are then a few big matmuls
over all T*N rows (not accumulated in the carry): T sequential matmuls of N rows are slow, one
(D, T*N)(T*N, 4H) GEMM is fast. The price is dzs, a (T, N, 4H) temporary. jit(grad) temp bytes,
float32, CPU: T=128, N=8, D=16, H=32: this rule 1.90 MB, accumulating in the carry 1.31 MB, autodiff
3.15 MB (tests/test_lstm.py asserts rule <= autodiff); at N=64, D=64, H=128: 61 / 42 / 101 MB and
130 / 160 / 179 ms, so the matmuls-after-the-scan rule is the fastest, and still leaner than autodiff.

  Backward  y_bar = (hs_bar: (T, N, H), final_bar = (h_T_bar, c_T_bar): (N, H) each)
            h_prev, c_prev = [h_0, h_1 .. h_{T-1}], [c_0, c_1 .. c_{T-1}]      (T, N, H) each
            xw = xs @ w_x + b                                     the forward's, recomputed
            reverse scan over t, carry (dh_next, dc) starting at (h_T_bar, c_T_bar):
                i, f, g, o = gates(xw_t + h_prev @ w_h);  tc = tanh(c)
                dh = hs_bar_t + dh_next
                dc = dc + dh * o * (1 - tc)(1 + tc)
                dz = [dc g i(1-i) | dc c_prev f(1-f) | dc i (1-g)(1+g) | dh tc o(1-o)]
                carry <- (dz @ w_h.T, dc * f);  stack dz into dzs             (T, N, 4H)
            (h_bar, c_bar) = the final carry                      the state cotangent
            xs_bar  = dzs @ w_x.T                                 (T, N, 4H)(4H, D) -> (T, N, D)
            w_x_bar = einsum("tnd,tnk->dk", xs, dzs)              (D, T*N)(T*N, 4H) -> (D, 4H)
            w_h_bar = einsum("tnh,tnk->hk", h_prev, dzs)          (H, T*N)(T*N, 4H) -> (H, 4H)
            b_bar   = dzs.sum((0, 1))                             (4H,)

Forward mode. Perturb every input along a tangent of its shape (``params_dot``, ``xs_dot``,
``state_dot``); to first order each step's state moves by the chain rule, a product rule at every
product, from the tangent of the state before it. So ONE forward scan carries the state and its
tangent side by side (nothing is kept for a later pass), the gates' tangents from their outputs'
slopes as in the backward:

  Tangent   w_x_dot: (D, 4H), w_h_dot: (H, 4H), b_dot: (4H,), xs_dot: (T, N, D), state_dot: (N, H) x 2
            xw_dot = xs_dot @ w_x + xs @ w_x_dot + b_dot       (T, N, 4H), linear's product rule
            forward scan over t, carry ((h, c), (h_dot, c_dot)) starting at (state, state_dot):
                i, f, g, o = gates(xw_t + h @ w_h)              h, c = h_{t-1}, c_{t-1}
                z_dot = xw_dot_t + h_dot @ w_h + h @ w_h_dot    (N, 4H)
                i_dot, f_dot, g_dot, o_dot = [i(1-i) | f(1-f) | (1-g)(1+g) | o(1-o)] * z_dot   (N, H) each
                c_dot = f_dot * c + f * c_dot + i_dot * g + i * g_dot
                c = f * c + i * g;  tc = tanh(c)
                h_dot = o_dot * tc + o * (1 - tc)(1 + tc) * c_dot
                h = o * tc;  stack (h, h_dot) into (hs, hs_dot)           (T, N, H) each
            y_dot = (hs_dot, (h_dot, c_dot))                    the final carry's tangents

Residuals (``res``): params, xs, state (the inputs, held anyway), hs (the output) and cs, the cell
states (T, N, H): the only array the forward allocates for the backward, T*N*H numbers (autodiff of
the scan saves 11 arrays of that size: gates, tanh(c), c_{t-1}, h_{t-1}, ...). The gates are NOT
saved ((T, N, 4H), 4x cs): the backward recomputes z = xw + h_prev @ w_h with the forward's own ops,
one extra (N, H)(H, 4H) matmul per step plus one (T*N, D)(D, 4H) matmul.

NOTE (cost): xw = xs @ w_x + b is one big matmul before the scan; ``auto`` runs the same forward.
NOTE (layout): ``batch_first=True`` (PyTorch's and flax's flag) takes xs (N, T, D) and gives hs
(N, T, H); they are swapped to time-major around the scans (the forward saves hs, cs time-major),
and so are xs_dot and hs_dot around the tangent scan.
NOTE (dtype): all inputs are promoted to their common float dtype (a float32 state with bfloat16
params runs in float32); each cotangent is cast back to its primal's dtype.
NOTE (stability): sigmoid is ``lax.logistic`` (no overflow); |g|, |o|, |tc| <= 1 and 0 <= f <= 1, so
|c_t| <= |c_0| + t and every slope is bounded: saturated gates give exact zero slopes, not NaN.
NOTE (sharding): under a mesh with explicit axes w_x_bar and w_h_bar (sums over the sharded batch)
are given their weight's sharding (``_sharding.cotangent_sharding``; ``None`` without such a mesh).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from ._init import lecun_normal
from ._layer import make_layer
from ._recurrent import promote as _promote, sigmoid_slope as _sigmoid_slope, states_before as _before
from ._recurrent import sequence_jvp, swap_time_batch, tanh_slope as _tanh_slope, time_major
from ._sharding import cotangent_sharding
from ._validate import describe, require_float, require_rank

__all__ = ["LSTMParams", "LSTMState", "lstm", "lstm_state"]

NAME = "lstm"


class LSTMParams(NamedTuple):
    """``w_x``: (D, 4H), ``w_h``: (H, 4H), ``b``: (4H,); gate order i, f, g, o along 4H."""

    w_x: jax.Array
    w_h: jax.Array
    b: jax.Array


class LSTMState(NamedTuple):
    """``h``: hidden state (N, H), ``c``: cell state (N, H)."""

    h: jax.Array
    c: jax.Array


def lstm_init(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> LSTMParams:
    """LeCun normal weights (``w_x ~ N(0, 1/D)``, ``w_h ~ N(0, 1/H)``); bias 0 except f: 1.

    Forget-gate bias 1 (Gers et al. 2000; Jozefowicz et al. 2015): with b_f = 0, f starts near
    sigmoid(0) = 1/2, so the cell state, and its gradient dc_{t-1} = dc_t * f, halve every step and
    vanish over long spans before training can learn to remember; b_f = 1 starts f near 0.73.
    """
    k_x, k_h = jax.random.split(key)
    d, h = input_size, hidden_size
    w_x = lecun_normal(k_x, (d, 4 * h), d, dtype)
    w_h = lecun_normal(k_h, (h, 4 * h), h, dtype)
    b = jnp.zeros((4 * h,), dtype).at[h:2 * h].set(1)
    return LSTMParams(w_x, w_h, b)


def lstm_state(batch: int, hidden_size: int, dtype=jnp.float32) -> LSTMState:
    """The all-zeros initial state: ``h`` and ``c`` of shape (batch, hidden_size)."""
    zeros = jnp.zeros((batch, hidden_size), dtype)
    return LSTMState(zeros, zeros)


def lstm_infer(key, x, hidden_size: int):
    """For a model, whose input is the pair ``x = (xs, state)``: ``(params, None)`` with
    ``input_size = xs.shape[-1]``, in ``xs``'s dtype."""
    xs, _ = x
    return lstm_init(key, xs.shape[-1], hidden_size, xs.dtype), None


def _check(params, xs, state) -> None:
    for arg, value, kind in (("params", params, LSTMParams), ("state", state, LSTMState)):
        if not isinstance(value, kind):
            raise TypeError(f"{NAME}: {arg} must be an {kind.__name__}; got {type(value).__name__}. "
                            f"Wrap it: {kind.__name__}({', '.join(kind._fields)}).")
    arrays = {"xs": xs, "params.w_x": params.w_x, "params.w_h": params.w_h, "params.b": params.b,
              "state.h": state.h, "state.c": state.c}
    for arg, value in arrays.items():
        require_float(NAME, arg, value)
    require_rank(NAME, "params.w_x", params.w_x, 2, hint="Expected (D, 4H).")
    d, n, four_h = xs.shape[-1], xs.shape[1], params.w_x.shape[1]
    if params.w_x.shape[0] != d:
        raise ValueError(f"{NAME}: xs.shape[-1] must equal w_x.shape[0] (input size D); got xs "
                         f"{describe(xs)}, w_x {describe(params.w_x)}.")
    if four_h % 4:
        raise ValueError(f"{NAME}: w_x.shape[1] must be 4H (gates i, f, g, o); got w_x {describe(params.w_x)}.")
    h = four_h // 4
    expected = {"params.w_h": (h, four_h), "params.b": (four_h,), "state.h": (n, h), "state.c": (n, h)}
    for arg, shape in expected.items():
        if arrays[arg].shape != shape:
            raise ValueError(f"{NAME}: {arg} must have shape {shape} (N={n} from xs, H={h} from w_x); "
                             f"got {arg} {describe(arrays[arg])}.")


def _gates(z):
    """``(i, f, g, o)`` from ``z = [z_i | z_f | z_g | z_o]``: (N, 4H) -> four (N, H)."""
    z_i, z_f, z_g, z_o = jnp.split(z, 4, axis=-1)
    return lax.logistic(z_i), lax.logistic(z_f), jnp.tanh(z_g), lax.logistic(z_o)


def _cell(w_h, carry, xw_t):
    """One step: ``(h_{t-1}, c_{t-1}), xw_t = x_t @ w_x + b -> (h_t, c_t)``, stacked as outputs too."""
    h, c = carry
    i, f, g, o = _gates(xw_t + h @ w_h)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (h, c), (h, c)


def _input_projection(params, xs):
    return xs @ params.w_x + params.b  # (T, N, D)(D, 4H) -> (T, N, 4H): outside the sequential scan


@jax.jit  # NOTE: eager calls (tests, check_vjp) then reuse one compiled scan; inlined under jit
def _run(params, xs, state):
    """``hs, cs, final_state`` (hs, cs: (T, N, H)) in the inputs' common dtype."""
    _check(params, xs, state)
    params, xs, state = _promote(params, xs, state)
    step = functools.partial(_cell, params.w_h)
    (h, c), (hs, cs) = lax.scan(step, tuple(state), _input_projection(params, xs))
    return hs, cs, LSTMState(h, c)


def lstm_auto(params: LSTMParams, xs: jax.Array, state: LSTMState, batch_first: bool = False
              ) -> tuple[jax.Array, LSTMState]:
    """``(hs, final_state)``: xs (T, N, D), state (N, H) x 2 -> hs (T, N, H), LSTMState (N, H) x 2;
    with ``batch_first=True`` xs is (N, T, D) and hs (N, T, H)."""
    hs, _, final = _run(params, time_major(NAME, xs, batch_first), state)
    return swap_time_batch(hs, batch_first), final


def lstm_fwd(params: LSTMParams, xs, state: LSTMState, batch_first: bool = False):
    hs, cs, final = _run(params, time_major(NAME, xs, batch_first), state)
    return (swap_time_batch(hs, batch_first), final), (params, xs, state, hs, cs)  # hs, cs time-major


def _cell_vjp(w_h, carry, step):
    """The reverse scan's body: one cell's VJP (the derivation's loop lines, same names)."""
    dh_next, dc = carry
    xw_t, h_prev, c_prev, c, hs_bar_t = step
    i, f, g, o = _gates(xw_t + h_prev @ w_h)  # recomputed: the gates are not residuals
    tc = jnp.tanh(c)
    dh = hs_bar_t + dh_next
    dc = dc + dh * o * _tanh_slope(tc)
    dz = jnp.concatenate([dc * g * _sigmoid_slope(i), dc * c_prev * _sigmoid_slope(f),
                          dc * i * _tanh_slope(g), dh * tc * _sigmoid_slope(o)], axis=-1)
    return (dz @ w_h.T, dc * f), dz


@functools.partial(jax.jit, static_argnames="cell_vjp")
def _bptt(res, y_bar, cell_vjp=_cell_vjp):
    params, xs, state, hs, cs = res
    hs_bar, final_bar = y_bar
    (w_x, w_h, b), xs_c, (h0, c0) = _promote(params, xs, state)
    h_prev, c_prev = _before(h0, hs), _before(c0, cs)
    xw = _input_projection(LSTMParams(w_x, w_h, b), xs_c)
    step = functools.partial(cell_vjp, w_h)
    (h_bar, c_bar), dzs = lax.scan(step, tuple(final_bar), (xw, h_prev, c_prev, cs, hs_bar), reverse=True)
    xs_bar = dzs @ w_x.T                              # (T, N, 4H)(4H, D) -> (T, N, D)
    # (D, T*N)(T*N, 4H) -> (D, 4H) and (H, T*N)(T*N, 4H) -> (H, 4H): sums over the batch (NOTE (sharding))
    w_x_bar = jnp.einsum("tnd,tnk->dk", xs_c, dzs, out_sharding=cotangent_sharding(w_x))
    w_h_bar = jnp.einsum("tnh,tnk->hk", h_prev, dzs, out_sharding=cotangent_sharding(w_h))
    b_bar = dzs.sum((0, 1))                           # (4H,)
    cast = lambda bars, primals: type(primals)(*(u.astype(p.dtype) for u, p in zip(bars, primals)))
    params_bar, state_bar = cast((w_x_bar, w_h_bar, b_bar), params), cast((h_bar, c_bar), state)
    return params_bar, xs_bar.astype(xs.dtype), state_bar


def lstm_bwd(res, y_bar, batch_first: bool = False):
    params, xs, state, hs, cs = res
    hs_bar, final_bar = y_bar
    swap = functools.partial(swap_time_batch, batch_first=batch_first)  # NOTE (layout)
    params_bar, xs_bar, state_bar = _bptt((params, swap(xs), state, hs, cs), (swap(hs_bar), final_bar))
    return params_bar, swap(xs_bar), state_bar


def _gate_tangents(gates, z_dot):
    """``(i_dot, f_dot, g_dot, o_dot)``: each gate's slope, from its output, times its slice of z_dot."""
    i, f, g, o = gates
    slopes = (_sigmoid_slope(i), _sigmoid_slope(f), _tanh_slope(g), _sigmoid_slope(o))
    return tuple(slope * z_dot_k for slope, z_dot_k in zip(slopes, jnp.split(z_dot, 4, axis=-1)))


def _cell_jvp(w_h, w_h_dot, carry, step):
    """The tangent scan's body: one step and its tangent (the derivation's Tangent loop, same names)."""
    (h, c), (h_dot, c_dot) = carry
    xw_t, xw_dot_t = step
    i, f, g, o = _gates(xw_t + h @ w_h)
    i_dot, f_dot, g_dot, o_dot = _gate_tangents((i, f, g, o), xw_dot_t + h_dot @ w_h + h @ w_h_dot)
    c_dot = f_dot * c + f * c_dot + i_dot * g + i * g_dot
    c = f * c + i * g
    tc = jnp.tanh(c)
    h_dot = o_dot * tc + o * _tanh_slope(tc) * c_dot
    h = o * tc
    return ((h, c), (h_dot, c_dot)), (h, h_dot)


@functools.partial(jax.jit, static_argnames="cell_jvp")
def _tangent_scan(primals, tangents, cell_jvp=_cell_jvp):
    """``((hs, final_state), (hs_dot, final_state_dot))``, time-major, in the inputs' common dtype."""
    _check(*primals)
    (params, xs, state), (params_dot, xs_dot, state_dot) = _promote(primals, tangents)
    xw_dot = xs_dot @ params.w_x + xs @ params_dot.w_x + params_dot.b  # (T, N, D)(D, 4H) twice, + (4H,)
    step = functools.partial(cell_jvp, params.w_h, params_dot.w_h)
    carry = (tuple(state), tuple(state_dot))
    ((h, c), (h_dot, c_dot)), (hs, hs_dot) = lax.scan(step, carry, (_input_projection(params, xs), xw_dot))
    return (hs, LSTMState(h, c)), (hs_dot, LSTMState(h_dot, c_dot))


def lstm_jvp(primals, tangents, batch_first: bool = False):
    return sequence_jvp(NAME, _tangent_scan, primals, tangents, batch_first)  # NOTE (layout)


lstm = make_layer(lstm_auto, lstm_fwd, lstm_bwd, name=NAME, init=lstm_init, roles=("params", "x", "x"),
                  infer=lstm_infer, jvp=lstm_jvp)
