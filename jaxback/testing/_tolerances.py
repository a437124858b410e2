"""Tolerances for comparing a hand rule with autodiff, per dtype, and the comparison itself.

Hand rule and autodiff compute the same maths in a different order, so they differ by rounding
only. We compare with a scale-aware test ``|hand - auto| <= rtol * (|auto| + max|auto|)``: relative
per entry, but an entry near zero is judged against the array's scale (cancellation in a sum leaves
absolute, not relative, error). Why these numbers:

* float64: 1e-10. Rounding is ~1e-16 per operation; 1e-10 leaves room for long reductions and still
  catches a relative error of 1e-6 anywhere (far beyond any plausible bug).
* float32: 1e-4. eps = 1.2e-7; a reduction over a few hundred terms and a few chained ops in a
  different order stay well under 1e-4, while wrong rules are off by O(1).
* float16: 1e-2 (eps = 9.8e-4, ~10 ulp).
* bfloat16: 5e-2 (eps = 7.8e-3 with 8 mantissa bits: ~6 ulp; two roundings of the same maths in
  another order already differ by 2-3 ulp).

Cotangents are also judged on the scale of the incoming cotangent ``y_bar``: the floor of ``scale``
is ``max|y_bar|``. A rule that derives a slope from a saturated output (tanh' = (1 - y)(1 + y) with
y = 1 - 1e-9) inherits y's rounding, an absolute error of eps * |y_bar| that is 1e-7 *relative* to
the tiny slope; autodiff's own rule, written in another order, loses the same digits differently.
Both are right to the precision the output carries, so that is the precision we ask for.

Below float64 a tolerance relative to the result is not enough: where the rule subtracts nearly
equal numbers (``sigmoid(x) - t``), both the hand rule and autodiff lose digits to cancellation, and
no rtol fits every input. So in float32/float16/bfloat16 both are also judged against a reference:
autodiff of the same layer on the same inputs upcast to float64 (float32 when x64 is off). The hand
rule passes where ``|hand - ref| <= rtol * (|ref| + max|ref|) + 2 * |auto - ref|``: it may be off by
the tolerance, or by as much as autodiff itself is in that dtype (plus rounding slack), never more.

Complex leaves take their component dtype's tolerance (complex128: float64's 1e-10) and are
compared as complex numbers: the error of an entry is ``|hand - auto|``, the modulus of the
difference, so the real and imaginary parts are both compared, on the scale of ``|auto|``.

Finite differences (the third witness) use ``jax.test_util.check_grads``' own tolerances and run only
for float32/float64 (and complex64/complex128) leaves: a step of 1e-4 is below bfloat16/float16
resolution. See ``jaxback.testing._fd`` for how the difference quotient's own error is allowed for.
"""

from __future__ import annotations

import numpy as np
import jax.numpy as jnp

RTOL = {
    np.dtype("float64"): 1e-10,
    np.dtype("float32"): 1e-4,
    np.dtype("float16"): 1e-2,
    np.dtype(jnp.bfloat16): 5e-2,
}
FD_DTYPES = (np.dtype("float64"), np.dtype("float32"), np.dtype("complex128"), np.dtype("complex64"))
FD_TOLERANCE = {np.dtype("float64"): 1e-5, np.dtype("float32"): 2e-3}  # jax.test_util.check_grads'


def component_dtype(dtype) -> np.dtype:
    """The real dtype of one component: complex128 -> float64, complex64 -> float32; others as is."""
    dtype = np.dtype(dtype)
    return np.finfo(dtype).dtype if np.issubdtype(dtype, np.complexfloating) else dtype


def rtol_for(dtype) -> float:
    """The hand-vs-autodiff tolerance for ``dtype`` (a complex dtype: its component's)."""
    try:
        return RTOL[component_dtype(dtype)]
    except (KeyError, TypeError):
        raise ValueError(f"no tolerance for dtype {dtype}; supported: {sorted(map(str, RTOL))} and "
                         f"complex64/complex128") from None


def fd_tolerance(dtypes) -> float:
    """JAX's own finite-difference tolerance for the *least* precise of ``dtypes``: a float32 weight
    beside float64 inputs makes the difference quotient a float32 one."""
    return max(FD_TOLERANCE[component_dtype(d)] for d in dtypes)


def _error(a, b):
    """``|a - b|`` where NaN matches NaN and inf matches inf of the same sign, else inf."""
    same_special = (np.isnan(a) & np.isnan(b)) | (~np.isfinite(b) & (a == b))
    with np.errstate(invalid="ignore"):
        err = np.where(same_special, 0.0, np.abs(a - b))
    return np.where(np.isnan(err), np.inf, err)


def mismatch(hand, auto, rtol, ref=None, scale_floor=0.0):
    """``None`` if ``hand`` matches ``auto`` within ``rtol``, else a one-line description.

    With ``ref`` (a higher-precision autodiff result), ``hand`` is judged against ``ref`` and may
    also be off by twice autodiff's own error; ``scale_floor`` is the least scale errors are
    measured against (see the module docstring).
    NaN must match NaN and inf must match inf of the same sign (numpy's ``allclose`` convention).
    Complex arrays are compared as complex numbers (the error is the modulus of the difference).
    """
    as_complex = any(np.iscomplexobj(np.asarray(a)) for a in (hand, auto, ref) if a is not None)
    wide = np.complex128 if as_complex else np.float64
    hand = np.asarray(hand, dtype=wide)
    auto = np.asarray(auto, dtype=wide)
    if hand.shape != auto.shape:
        return f"shape {hand.shape} but autodiff gives {auto.shape}"
    if hand.size == 0:
        return None
    slack = 0.0
    if ref is not None:
        ref = np.asarray(ref, dtype=wide)
        slack = 2 * np.where(np.isfinite(_error(auto, ref)), _error(auto, ref), 0.0)
        auto = ref
    finite = np.isfinite(auto)
    scale = max(np.max(np.abs(auto[finite]), initial=0.0), scale_floor)
    err = _error(hand, auto)
    allowed = rtol * (np.where(finite, np.abs(auto), 0.0) + scale) + slack
    ratio = np.where(err == 0, 0.0, err / np.maximum(allowed, np.finfo(np.float64).tiny))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    if ratio[worst] <= 1.0:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        rel = err[worst] / max(abs(auto[worst]), np.finfo(np.float64).tiny)
    against = "float64 autodiff" if ref is not None else "autodiff"
    largest = np.unravel_index(int(np.argmax(err)), err.shape)
    where = lambda index: tuple(int(i) for i in index)
    also = "" if largest == worst else (
        f"; the largest abs err, {err[largest]:.3g}, is at index {where(largest)} "
        f"(hand={hand[largest]:.17g}, {against}={auto[largest]:.17g}) where more is allowed")
    return (
        f"worst at index {where(worst)}: hand={hand[worst]:.17g}, {against}={auto[worst]:.17g} "
        f"(abs err {err[worst]:.3g}, rel err {rel:.3g}, {ratio[worst]:.3g}x the allowed {allowed[worst]:.3g}; "
        f"rtol={rtol:g}){also}"
    )
