"""conv2d, max_pool2d, avg_pool2d, flatten: what the generic registry checks cannot see.

Specific here: the max-pool tie rule is autodiff's (first maximum, row-major; NaN and padding too),
tie mutants die on tied values, residuals are x only (max) or nothing (avg, flatten), negative
transposed paddings and leftover rows, mixed dtypes, and LeCun init.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxback import make_layer
from jaxback import _pooling as pool
from jaxback._conv import Conv2dParams, conv2d
from jaxback._pooling import avg_pool2d, flatten, max_pool2d
from jaxback.testing import check_vjp
from jaxback.testing._entries_conv import ENTRIES, _img, _pool_parts_mutant

BY_NAME = {info.name: info for info in ENTRIES}


def _vjp(fn, x, y_bar, **hyper):
    return jax.vjp(functools.partial(fn, **hyper), x)[1](y_bar)[0]


def _killed(layer, samples):
    for args, hyper in samples:
        try:
            check_vjp(layer, *args, fd=False, **hyper)
        except AssertionError:
            return True
    return False


# max-pool ties -----------------------------------------------------------------------------------------
def test_autodiff_of_reduce_window_max_picks_the_first_maximum():
    """What we copy: JAX sends a tied window's gradient to its first entry in row-major order."""
    f = lambda x: lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID").sum()
    for image, first in (([[0.0, 0.0], [0.0, 0.0]], (0, 0)), ([[0.0, 1.0], [1.0, 0.0]], (0, 1)),
                         ([[0.0, 0.0], [1.0, 1.0]], (1, 0))):
        expected = np.zeros((2, 2))
        expected[first] = 1
        np.testing.assert_array_equal(jax.grad(f)(_img(image, jnp.float64))[0, :, :, 0], expected)
        np.testing.assert_array_equal(_vjp(max_pool2d, _img(image, jnp.float64), jnp.ones((1, 1, 1, 1)))[0, :, :, 0],
                                      expected)


@pytest.mark.parametrize("hyper", BY_NAME["max_pool2d"].hypers, ids=str)
def test_max_pool_tie_rule_equals_autodiff_exactly(hyper):
    """Integer values in [-2, 2] (many ties), a NaN, +-inf: the hand VJP is bitwise autodiff's.

    Integer cotangents make every sum of overlapping windows exact, so any difference would be a
    different routing, not rounding.
    """
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, (2, 6, 7, 3)).astype(np.float64)
    x[0, 0, 0, 0], x[1, 2, 3, 1], x[1, 4, 4, 2], x[0, 5, 6, 0] = np.nan, np.inf, -np.inf, -np.inf
    x = jnp.asarray(x)
    y_bar = jnp.asarray(rng.integers(1, 100, max_pool2d(x, **hyper).shape), jnp.float64)  # sums stay exact
    np.testing.assert_array_equal(_vjp(max_pool2d, x, y_bar, **hyper), _vjp(max_pool2d.auto, x, y_bar, **hyper))


def _slices(xp, y_bar, k, s):
    return [pool._slice(xp, a, c, s, y_bar.shape[1:3]) for a, c in pool._offsets(k)]


def _all_tied_entries(xp, y_bar, k, s):
    slices = _slices(xp, y_bar, k, s)
    y = functools.reduce(jnp.maximum, slices)
    return [jnp.where(xs == y, y_bar, 0) for xs in slices]


def _last_maximum(xp, y_bar, k, s):
    slices = _slices(xp, y_bar, k, s)
    best, choice = slices[0], jnp.zeros(y_bar.shape, jnp.int32)
    for i, xs in enumerate(slices[1:], start=1):
        later_wins = xs >= best  # ">=": a later tie takes over
        best, choice = jnp.where(later_wins, xs, best), jnp.where(later_wins, i, choice)
    return [jnp.where(choice == i, y_bar, 0) for i in range(len(slices))]


@pytest.mark.parametrize("parts", [_all_tied_entries, _last_maximum], ids=["all tied entries", "last maximum"])
def test_tie_mutants_die_on_tied_values_only(parts):
    info = BY_NAME["max_pool2d"]
    layer = make_layer(max_pool2d.auto, max_pool2d.fwd, _pool_parts_mutant("max_pool2d", parts), name="max_pool2d[tie]")
    rng = np.random.default_rng(0)
    ties = [(info.sample_args(rng, jnp.float64, info.shapes[0], "ties"), {"window": 3, "stride": 2})]
    normal = [(info.args(0), {"window": 3, "stride": 2})]
    assert _killed(layer, ties)
    assert not _killed(layer, normal)  # why the registry (normal values) cannot carry these two


# residuals -----------------------------------------------------------------------------------------------
def test_residuals_are_the_inputs_or_nothing():
    x = jnp.ones((2, 6, 7, 3))
    assert [r is x for r in jax.tree_util.tree_leaves(max_pool2d.fwd(x)[1])] == [True]
    assert jax.tree_util.tree_leaves(avg_pool2d.fwd(x)[1]) == []
    assert jax.tree_util.tree_leaves(flatten.fwd(x)[1]) == []
    params = conv2d.init(jax.random.PRNGKey(0), 3, 3, 3, 4)
    assert len(jax.tree_util.tree_leaves(conv2d.fwd(params, x)[1])) == 3  # w, b, x: no (N, H', W', C_out)


# conv2d specifics -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("hyper", [{"padding": 3}, {"padding": ((3, 0), (0, 4)), "stride": 2},
                                   {"padding": 2, "stride": 3, "dilation": 2}], ids=str)
def test_conv_negative_transposed_padding_and_leftover_rows(hyper):
    """Paddings beyond the kernel span make the x_bar convolution's padding negative (a crop)."""
    rng = np.random.default_rng(3)
    params = Conv2dParams(jnp.asarray(rng.standard_normal((1, 2, 2, 3))), jnp.asarray(rng.standard_normal(3)))
    check_vjp(conv2d, params, jnp.asarray(rng.standard_normal((2, 5, 6, 2))), fd=False, **hyper)


def test_conv_mixed_dtypes_promote_and_cast_back():
    rng = np.random.default_rng(4)
    params = Conv2dParams(jnp.asarray(rng.standard_normal((3, 3, 2, 3)), jnp.float32), jnp.zeros(3, jnp.float32))
    x = jnp.asarray(rng.standard_normal((1, 5, 5, 2)), jnp.bfloat16)
    assert conv2d(params, x).dtype == jnp.float32
    check_vjp(conv2d, params, x, fd=False, stride=2)


def test_conv_init_is_lecun_normal():
    params = conv2d.init(jax.random.PRNGKey(0), 3, 3, 64, 64, dtype=jnp.float32)
    assert params.w.shape == (3, 3, 64, 64) and params.w.dtype == jnp.float32
    assert abs(float(jnp.std(params.w)) * np.sqrt(3 * 3 * 64) - 1) < 0.05
    np.testing.assert_array_equal(params.b, np.zeros(64))
