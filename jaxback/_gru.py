"""gru: a gated recurrent unit run over a sequence, with back-propagation through time.

PyTorch's ``nn.GRU`` convention (Cho et al. 2014, the reset gate applied after w_h), so its weights
load as ``w_x = weight_ih_l0.T``, ``w_h = weight_hh_l0.T``, ``b_x = bias_ih_l0``, ``b_h = bias_hh_l0``.

Shapes first. Time-major: T steps, N sequences in the batch, D input features, H hidden units.

  xs: (T, N, D)   w_x: (D, 3H)   w_h: (H, 3H)   b_x, b_h: (3H,)   state = h_0: (N, H)
  hs: (T, N, H)   final_state = h_T: (N, H)     gate order along 3H: r, z, n (reset, update, new)

Forward, one step t = 1..T (x_t = xs[t-1]; row-wise, so N is a batch):

  a = x_t @ w_x + b_x          (N, 3H) = [a_r | a_z | a_n]    the input projection, xw_t
  u = h_{t-1} @ w_h + b_h      (N, 3H) = [u_r | u_z | u_n]    the recurrent projection, hw_t
  r = sigmoid(a_r + u_r)   z = sigmoid(a_z + u_z)   n = tanh(a_n + r * u_n)
  h_t = (1 - z) * n + z * h_{t-1}                              hs[t-1] = h_t

Chain rule for ONE step. Let dh = dL/dh_t counting every path (hs_bar[t-1] and step t+1). All
products are elementwise, (N, H); slopes from saved outputs: s(1 - s) and (1 - n)(1 + n):

  h_t = (1 - z) n + z h_{t-1}:   n_bar = dh * (1 - z),   z_bar = dh * (h_{t-1} - n),
                                 and the direct path dh * z to h_{t-1}
  n = tanh(a_n + r u_n):         dn = n_bar * (1 - n)(1 + n)       (the pre-activation's cotangent)
                                 r_bar = dn * u_n,   u_n's cotangent dn * r
  through the sigmoids:          dr = r_bar * r (1 - r),   dz = z_bar * z (1 - z)
  so                             da = [dr | dz | dn]          dL/da: (N, 3H)
                                 du = [dr | dz | dn * r]      dL/du: (N, 3H)  (r gates only u_n)
  u = h_{t-1} @ w_h + b_h is a linear layer (see _linear.py):
      dh_{t-1} = dh * z + du @ w_h.T     (N, 3H)(3H, H) -> (N, H): the direct path plus all gates
      per-step parameter terms: x_t.T @ da (D, 3H), h_{t-1}.T @ du (H, 3H), da.sum(0), du.sum(0)

Back-propagation through time. w_x, w_h, b_x, b_h are shared by every step, so their cotangents
SUM the per-step terms. h_t reaches L through hs (hs_bar[t-1]) and through step t+1 (the dh_{t-1}
that step returns), and at t = T through final_state too. So a REVERSE scan carries dh_next (dL/dh_t
via step t+1), starts from the final_state cotangent h_T_bar, and at step t uses dh = hs_bar[t-1] +
dh_next; what is left in the carry after step 1 is dL/dh_0.

Only dh_next is sequential: every h_{t-1} is known from the saved hs, so the backward recomputes
ALL the gates (r, z, n, u_n: (T, N, H) each) before the scan with two big matmuls, and the scan body
is elementwise work plus one (N, 3H)(3H, H) matmul. The parameter sums and xs_bar are big matmuls
over all T*N rows after the scan (one (D, T*N)(T*N, 3H) GEMM, not T small ones). The scan stacks da
only; du differs from it in the n slice alone and is rebuilt after. jit(vjp) temp bytes, float32,
CPU (``pytest -s tests/test_gru.py -k temp`` prints them): T=128, N=8, D=16, H=16: this
rule 0.98 MB, autodiff 1.11 MB (stacking du from the scan too: 1.18 MB, more than autodiff); at
N=64, D=64, H=128: 65 / 75.5 MB. tests/test_memory.py holds the rule to <= autodiff at bench_shape.

  Backward  y_bar = (hs_bar: (T, N, H), h_T_bar: (N, H))
            h_prev = [h_0, h_1 .. h_{T-1}]                            (T, N, H)
            xw = xs @ w_x + b_x,  hw = h_prev @ w_h + b_h             (T, N, 3H), the forward's ops
            r, z, n, u_n = the gates from xw, hw                      (T, N, H) each
            reverse scan over t, carry dh_next starting at h_T_bar:
                dh = hs_bar_t + dh_next
                dn = dh * (1 - z) * (1 - n)(1 + n)
                dr = dn * u_n * r(1 - r);   dz = dh * (h_prev - n) * z(1 - z)
                da = [dr | dz | dn];  du = [dr | dz | dn * r]
                carry <- dh * z + du @ w_h.T;  stack da into das      (T, N, 3H)
            h0_bar  = the final carry                                 the state cotangent
            dus     = [das_r | das_z | das_n * r]                     du, rebuilt: (T, N, 3H)
            xs_bar  = das @ w_x.T                                     (T, N, 3H)(3H, D) -> (T, N, D)
            w_x_bar = einsum("tnd,tnk->dk", xs, das)                  (D, 3H)
            w_h_bar = einsum("tnh,tnk->hk", h_prev, dus)              (H, 3H)
            b_x_bar, b_h_bar = das.sum((0, 1)), dus.sum((0, 1))       (3H,) each

Forward mode. Perturb every input along a tangent of its shape (``params_dot``, ``xs_dot``,
``state_dot``); to first order h_t moves by the chain rule, a product rule at every product, from
the tangent of h_{t-1}. So ONE forward scan carries h and its tangent side by side (nothing is kept
for a later pass), the gates' tangents from their outputs' slopes as in the backward:

  Tangent   w_x_dot: (D, 3H), w_h_dot: (H, 3H), b_x_dot, b_h_dot: (3H,), xs_dot: (T, N, D), h0_dot: (N, H)
            xw_dot = xs_dot @ w_x + xs @ w_x_dot + b_x_dot      (T, N, 3H) = [a_r_dot | a_z_dot | a_n_dot]
            forward scan over t, carry (h, h_dot) starting at (h_0, h0_dot):
                hw_dot = h_dot @ w_h + h @ w_h_dot + b_h_dot    (N, 3H) = [u_r_dot | u_z_dot | u_n_dot]
                r, z, n, u_n = the gates from xw_t, h @ w_h + b_h          h = h_{t-1}
                r_dot = r(1 - r) * (a_r_dot + u_r_dot);   z_dot = z(1 - z) * (a_z_dot + u_z_dot)
                n_dot = (1 - n)(1 + n) * (a_n_dot + r_dot * u_n + r * u_n_dot)
                h_dot = (1 - z) * n_dot + z * h_dot + z_dot * (h - n)
                h = (1 - z) * n + z * h;  stack (h, h_dot) into (hs, hs_dot)   (T, N, H) each
            y_dot = (hs_dot, h_dot)                              the final carry's tangent

Residuals (``res``): params, xs, state (the inputs, held anyway) and hs (the output): the forward
allocates nothing for the backward. The gates are recomputed (one extra (T*N, D)(D, 3H) and one
(T*N, H)(H, 3H) matmul), not saved: autodiff of the scan saves r, z, n, u_n, h_{t-1}, ... per step.

NOTE (layout): ``batch_first=True`` (PyTorch's and flax's flag) takes xs (N, T, D) and gives hs
(N, T, H); they are swapped to time-major around the scans (the forward saves hs time-major), so the
rules above are unchanged; the cost is the swaps, copies of xs, hs and their (co)tangents.
NOTE (dtype): all inputs are promoted to their common float dtype (a float32 state with bfloat16
params runs in float32); each cotangent is cast back to its primal's dtype.
NOTE (stability): sigmoid is ``lax.logistic`` (no overflow); h_t is a convex mix of n in [-1, 1] and
h_{t-1}, so |h_t| <= max(1, |h_0|): saturated gates give exact zero slopes, not NaN.
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
from ._recurrent import promote, sequence_jvp, sigmoid_slope, states_before, swap_time_batch, tanh_slope, time_major
from ._sharding import cotangent_sharding
from ._validate import describe, require_float, require_rank

__all__ = ["GRUParams", "gru", "gru_state"]

NAME = "gru"


class GRUParams(NamedTuple):
    """``w_x``: (D, 3H), ``w_h``: (H, 3H), ``b_x``, ``b_h``: (3H,); gate order r, z, n along 3H
    (PyTorch's ``weight_ih_l0.T``, ``weight_hh_l0.T``, ``bias_ih_l0``, ``bias_hh_l0``)."""

    w_x: jax.Array
    w_h: jax.Array
    b_x: jax.Array
    b_h: jax.Array


def gru_init(key, input_size: int, hidden_size: int, dtype=jnp.float32) -> GRUParams:
    """LeCun normal weights (``w_x ~ N(0, 1/D)``, ``w_h ~ N(0, 1/H)``); biases 0."""
    k_x, k_h = jax.random.split(key)
    d, h = input_size, hidden_size
    return GRUParams(lecun_normal(k_x, (d, 3 * h), d, dtype), lecun_normal(k_h, (h, 3 * h), h, dtype),
                     jnp.zeros((3 * h,), dtype), jnp.zeros((3 * h,), dtype))


def gru_state(batch: int, hidden_size: int, dtype=jnp.float32) -> jax.Array:
    """The all-zeros initial state ``h_0`` of shape (batch, hidden_size)."""
    return jnp.zeros((batch, hidden_size), dtype)


def gru_infer(key, x, hidden_size: int):
    """For a model, whose input is the pair ``x = (xs, state)``: ``(params, None)`` with
    ``input_size = xs.shape[-1]``, in ``xs``'s dtype."""
    xs, _ = x
    return gru_init(key, xs.shape[-1], hidden_size, xs.dtype), None


def _check(params, xs, state) -> None:
    if not isinstance(params, GRUParams):
        raise TypeError(f"{NAME}: params must be a GRUParams; got {type(params).__name__}. "
                        f"Wrap it: GRUParams({', '.join(GRUParams._fields)}).")
    if not hasattr(state, "shape"):
        raise TypeError(f"{NAME}: state must be one array h_0 of shape (N, H) (see gru_state); "
                        f"got {type(state).__name__}.")
    arrays = {"xs": xs, **{f"params.{k}": v for k, v in params._asdict().items()}, "state": state}
    for arg, value in arrays.items():
        require_float(NAME, arg, value)
    require_rank(NAME, "params.w_x", params.w_x, 2, hint="Expected (D, 3H).")
    d, n, three_h = xs.shape[-1], xs.shape[1], params.w_x.shape[1]
    if params.w_x.shape[0] != d:
        raise ValueError(f"{NAME}: xs.shape[-1] must equal w_x.shape[0] (input size D); got xs "
                         f"{describe(xs)}, w_x {describe(params.w_x)}.")
    if three_h % 3:
        raise ValueError(f"{NAME}: w_x.shape[1] must be 3H (gates r, z, n); got w_x {describe(params.w_x)}.")
    h = three_h // 3
    expected = {"params.w_h": (h, three_h), "params.b_x": (three_h,), "params.b_h": (three_h,), "state": (n, h)}
    for arg, shape in expected.items():
        if arrays[arg].shape != shape:
            raise ValueError(f"{NAME}: {arg} must have shape {shape} (N={n} from xs, H={h} from w_x); "
                             f"got {arg} {describe(arrays[arg])}.")


def _gates(xw, hw):
    """``(r, z, n, u_n)`` from ``xw = [a_r | a_z | a_n]`` and ``hw = [u_r | u_z | u_n]``, (..., 3H)."""
    a_r, a_z, a_n = jnp.split(xw, 3, axis=-1)
    u_r, u_z, u_n = jnp.split(hw, 3, axis=-1)
    r, z = lax.logistic(a_r + u_r), lax.logistic(a_z + u_z)
    return r, z, jnp.tanh(a_n + r * u_n), u_n


def _cell(params, h, xw_t):
    """One step: ``h_{t-1}, xw_t = x_t @ w_x + b_x -> h_t``, stacked as the output too."""
    _, z, n, _ = _gates(xw_t, h @ params.w_h + params.b_h)
    h = (1 - z) * n + z * h
    return h, h


@jax.jit  # NOTE: eager calls (tests, check_vjp) then reuse one compiled scan; inlined under jit
def _run(params, xs, state):
    """``hs, h_T`` (hs: (T, N, H)) in the inputs' common dtype."""
    _check(params, xs, state)
    params, xs, state = promote(params, xs, state)
    h, hs = lax.scan(functools.partial(_cell, params), state, xs @ params.w_x + params.b_x)
    return hs, h


def gru_auto(params: GRUParams, xs: jax.Array, state: jax.Array, batch_first: bool = False) -> tuple[jax.Array, jax.Array]:
    """``(hs, final_state)``: xs (T, N, D), state h_0 (N, H) -> hs (T, N, H), h_T (N, H);
    with ``batch_first=True`` xs is (N, T, D) and hs (N, T, H)."""
    hs, h = _run(params, time_major(NAME, xs, batch_first), state)
    return swap_time_batch(hs, batch_first), h


def gru_fwd(params: GRUParams, xs, state, batch_first: bool = False):
    hs, h = _run(params, time_major(NAME, xs, batch_first), state)
    return (swap_time_batch(hs, batch_first), h), (params, xs, state, hs)  # hs saved time-major


def _step_vjp(w_h, dh_next, step):
    """The reverse scan's body: one step's VJP (the derivation's loop lines, same names)."""
    r, z, n, u_n, h_prev, hs_bar_t = step
    dh = hs_bar_t + dh_next
    dn = dh * (1 - z) * tanh_slope(n)
    dr, dz = dn * u_n * sigmoid_slope(r), dh * (h_prev - n) * sigmoid_slope(z)
    da, du = jnp.concatenate([dr, dz, dn], -1), jnp.concatenate([dr, dz, dn * r], -1)
    return dh * z + du @ w_h.T, da


@functools.partial(jax.jit, static_argnames="step_vjp")
def _bptt(res, y_bar, step_vjp=_step_vjp):
    params, xs, state, hs = res
    hs_bar, h_bar = y_bar
    (w_x, w_h, b_x, b_h), xs_c, h0 = promote(params, xs, state)
    h_prev = states_before(h0, hs)
    r, z, n, u_n = _gates(xs_c @ w_x + b_x, h_prev @ w_h + b_h)  # all T steps at once: h_prev is saved
    h0_bar, das = lax.scan(functools.partial(step_vjp, w_h), h_bar, (r, z, n, u_n, h_prev, hs_bar),
                                  reverse=True)
    xs_bar = das @ w_x.T                              # (T, N, 3H)(3H, D) -> (T, N, D)
    # (D, T*N)(T*N, 3H) -> (D, 3H) and (H, T*N)(T*N, 3H) -> (H, 3H): sums over the batch (NOTE (sharding))
    w_x_bar = jnp.einsum("tnd,tnk->dk", xs_c, das, out_sharding=cotangent_sharding(w_x))
    dus = jnp.concatenate([das[..., :-r.shape[-1]], das[..., -r.shape[-1]:] * r], -1)  # du = [dr | dz | dn * r]
    w_h_bar = jnp.einsum("tnh,tnk->hk", h_prev, dus, out_sharding=cotangent_sharding(w_h))
    bars = (w_x_bar, w_h_bar, das.sum((0, 1)), dus.sum((0, 1)))
    params_bar = GRUParams(*(u.astype(p.dtype) for u, p in zip(bars, params)))
    return params_bar, xs_bar.astype(xs.dtype), h0_bar.astype(state.dtype)


def gru_bwd(res, y_bar, batch_first: bool = False):
    params, xs, state, hs = res
    hs_bar, h_bar = y_bar
    swap = functools.partial(swap_time_batch, batch_first=batch_first)  # NOTE (layout)
    params_bar, xs_bar, h0_bar = _bptt((params, swap(xs), state, hs), (swap(hs_bar), h_bar))
    return params_bar, swap(xs_bar), h0_bar


def _step_jvp(params, params_dot, carry, xw_and_tangent):
    """The tangent scan's body: one step and its tangent (the derivation's Tangent loop, same names)."""
    (h, h_dot), (xw_t, xw_dot_t) = carry, xw_and_tangent
    a_r_dot, a_z_dot, a_n_dot = jnp.split(xw_dot_t, 3, axis=-1)
    u_r_dot, u_z_dot, u_n_dot = jnp.split(h_dot @ params.w_h + h @ params_dot.w_h + params_dot.b_h, 3, axis=-1)
    r, z, n, u_n = _gates(xw_t, h @ params.w_h + params.b_h)
    r_dot, z_dot = sigmoid_slope(r) * (a_r_dot + u_r_dot), sigmoid_slope(z) * (a_z_dot + u_z_dot)
    n_dot = tanh_slope(n) * (a_n_dot + r_dot * u_n + r * u_n_dot)
    h_dot = (1 - z) * n_dot + z * h_dot + z_dot * (h - n)
    h = (1 - z) * n + z * h
    return (h, h_dot), (h, h_dot)


@functools.partial(jax.jit, static_argnames="step_jvp")
def _tangent_scan(primals, tangents, step_jvp=_step_jvp):
    """``((hs, h_T), (hs_dot, h_T_dot))``, time-major, in the inputs' common dtype."""
    _check(*primals)
    (params, xs, h0), (params_dot, xs_dot, h0_dot) = promote(primals, tangents)
    xw_dot = xs_dot @ params.w_x + xs @ params_dot.w_x + params_dot.b_x  # (T, N, D)(D, 3H) twice, + (3H,)
    step = functools.partial(step_jvp, params, params_dot)
    (h, h_dot), (hs, hs_dot) = lax.scan(step, (h0, h0_dot), (xs @ params.w_x + params.b_x, xw_dot))
    return (hs, h), (hs_dot, h_dot)


def gru_jvp(primals, tangents, batch_first: bool = False):
    return sequence_jvp(NAME, _tangent_scan, primals, tangents, batch_first)  # NOTE (layout)


gru = make_layer(gru_auto, gru_fwd, gru_bwd, name=NAME, init=gru_init, roles=("params", "x", "x"), infer=gru_infer,
                 jvp=gru_jvp)
