"""embedding and dropout: the behaviour the generic registry checks (tests/test_registry.py) do not see."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxback._dropout import dropout
from jaxback._embedding import EmbeddingParams, embedding
from jaxback._layer import make_layer
from jaxback.testing import check_vjp
from jaxback.testing._entries_misc import ENTRIES

INFOS = {info.name: info for info in ENTRIES}


# embedding ----------------------------------------------------------------------------------------
TABLE = EmbeddingParams(jnp.asarray(np.random.default_rng(0).standard_normal((5, 3))))


def test_repeated_ids_accumulate_in_table_bar():
    ids = jnp.array([[1, 3, 1], [1, 0, 3]])
    y_bar = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 3)))
    table_bar, _ = embedding.bwd(embedding.fwd(TABLE, ids)[1], y_bar)
    expected = np.zeros((5, 3))
    np.add.at(expected, np.asarray(ids), np.asarray(y_bar))  # numpy's unbuffered scatter-add
    np.testing.assert_allclose(table_bar.table, expected, rtol=1e-15)
    np.testing.assert_allclose(table_bar.table[1], y_bar[0, 0] + y_bar[0, 2] + y_bar[1, 0], rtol=1e-15)


def test_ids_get_a_float0_cotangent():
    ids = jnp.array([0, 4, 4])
    y, vjp = jax.vjp(embedding, TABLE, ids)
    table_bar, ids_bar = vjp(jnp.ones_like(y))
    assert ids_bar.dtype == jax.dtypes.float0 and ids_bar.shape == ids.shape
    assert embedding.bwd(embedding.fwd(TABLE, ids)[1], y)[1] is None


@pytest.mark.parametrize("int_dtype", [jnp.int8, jnp.uint8, jnp.int64])
def test_any_integer_dtype_for_ids(int_dtype):
    check_vjp(embedding, TABLE, jnp.array([[4, 0], [2, 4]], int_dtype))


def test_residuals_are_the_ids_not_the_rows():
    ids = jnp.zeros((7, 11), jnp.int32)
    _, res = embedding.fwd(TABLE, ids)
    sizes = sorted(leaf.size for leaf in jax.tree_util.tree_leaves(res))
    assert sizes == [0, ids.size], sizes  # the ids, and a 0-byte (V, 0) token for V and the dtype


def test_bfloat16_rows_accumulate_in_float32():
    """1000 lookups of one row: summed in bfloat16, 256 + 1 rounds back to 256 and the sum stalls."""
    table = EmbeddingParams(jnp.zeros((3, 2), jnp.bfloat16))
    ids = jnp.zeros((1000,), jnp.int32)
    _, vjp = jax.vjp(embedding, table, ids)
    table_bar = vjp(jnp.ones((1000, 2), jnp.bfloat16))[0].table
    assert table_bar.dtype == jnp.bfloat16 and (np.asarray(table_bar[0], np.float64) == 1000).all()


def test_init_shape_dtype_and_scale():
    params = embedding.init(jax.random.PRNGKey(0), 1000, 64)
    assert params.table.shape == (1000, 64) and params.table.dtype == jnp.float32
    assert abs(float(params.table.std()) - 1) < 0.02 and abs(float(params.table.mean())) < 0.02
    assert embedding.init(jax.random.PRNGKey(0), 3, 2, jnp.bfloat16).table.dtype == jnp.bfloat16


# dropout ------------------------------------------------------------------------------------------
X = jnp.asarray(np.random.default_rng(2).standard_normal((6, 7)))


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key], ids=["raw", "typed"])
def test_mask_is_regenerated_from_the_key(make_key):
    key = make_key(0)
    y, res = dropout.fwd(X, key, rate=0.5)
    leaves = jax.tree_util.tree_leaves(res)
    assert len(leaves) == 1 and leaves[0] is key, "res must be the key itself, never the mask"
    assert all(leaf.size < X.size for leaf in leaves)
    x_bar, key_bar = dropout.bwd(res, jnp.ones_like(y), rate=0.5)
    assert key_bar is None
    np.testing.assert_array_equal(x_bar != 0, y != 0)  # the same entries survive in bwd as in fwd


@pytest.mark.parametrize("make_key", [jax.random.PRNGKey, jax.random.key], ids=["raw", "typed"])
def test_hand_rule_uses_exactly_autodiffs_mask(make_key):
    y_bar = jnp.asarray(np.random.default_rng(3).standard_normal(X.shape))
    hand = jax.vjp(functools.partial(dropout, rate=0.3), X, make_key(5))[1](y_bar)
    auto = jax.vjp(functools.partial(dropout.auto, rate=0.3), X, make_key(5))[1](y_bar)
    np.testing.assert_array_equal(hand[0], auto[0])  # bit for bit: the same mask, the same division
    assert hand[1].dtype == auto[1].dtype == jax.dtypes.float0


def test_empirical_keep_rate_and_unbiased_mean():
    rate, n = 0.3, 200_000
    y = dropout(jnp.ones(n), jax.random.PRNGKey(7), rate=rate)
    kept = float(jnp.mean(y != 0))
    sigma = np.sqrt(rate * (1 - rate) / n)
    assert abs(kept - (1 - rate)) < 5 * sigma, kept
    assert abs(float(jnp.mean(y)) - 1) < 5 * sigma / (1 - rate)
    np.testing.assert_allclose(y[y != 0], 1 / (1 - rate), rtol=1e-15)


@pytest.mark.parametrize("hyper", [{"rate": 0.0}, {"training": False}, {"rate": 0.9, "training": False}])
def test_rate_zero_and_eval_are_the_identity_without_random_bits(hyper):
    key = jax.random.PRNGKey(0)
    y, vjp = jax.vjp(functools.partial(dropout, **hyper), X, key)
    assert y is X or (y == X).all()
    np.testing.assert_array_equal(vjp(2 * X)[0], 2 * X)
    assert jax.tree_util.tree_leaves(dropout.fwd(X, key, **hyper)[1]) == []  # nothing saved
    jaxpr = str(jax.make_jaxpr(functools.partial(dropout, **hyper))(X, key))
    assert "random_bits" not in jaxpr and "threefry" not in jaxpr, jaxpr


def test_same_key_same_mask_other_key_other_mask():
    a = dropout(X, jax.random.PRNGKey(1))
    np.testing.assert_array_equal(a, dropout(X, jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(a, dropout(X, jax.random.key(1)))  # raw and typed: same bits
    assert (a != dropout(X, jax.random.PRNGKey(2))).any()
    np.testing.assert_array_equal(a != 0, dropout(X.astype(jnp.float32), jax.random.PRNGKey(1)) != 0)


def test_rate_must_be_a_keyword_and_nan_is_refused():
    with pytest.raises(TypeError):
        dropout(X, jax.random.PRNGKey(0), 0.5)  # positional arrays would be traced, not static
    with pytest.raises(ValueError, match=r"dropout: rate"):
        dropout(X, jax.random.PRNGKey(0), rate=float("nan"))


def test_unmutated_harness_passes():
    """The mutant wrappers with the right edit pass, so the kills above are real."""
    from jaxback.testing._entries_misc import _dropout_mutant, _embedding_mutant, _mask_and_scale, _mask_from
    right = {"embedding": _embedding_mutant(lambda ids, g, z: z.at[ids].add(g, mode="drop")),
             "dropout": _dropout_mutant(lambda key, g, rate: _mask_and_scale(g, _mask_from(key, g, rate), rate))}
    for name, bwd in right.items():
        info = INFOS[name]
        check_vjp(make_layer(info.layer.auto, info.layer.fwd, bwd, name=name), *info.args(0), **info.hypers[0])
