"""Every Python block of the README runs as written (or is a verbatim excerpt of the source), and
the README's limits are what JAX does."""

import jax
import jax.numpy as jnp
import pytest

import jaxback as jb
from _markdown import ROOT, python_blocks, run_or_compare

README = ROOT / "README.md"


def _quick_start_line():
    text = README.read_text(encoding="utf-8")
    return text.count("\n", 0, text.index("```python", text.index("## Quick start"))) + 2


@pytest.mark.parametrize("line, code", python_blocks(README), ids=lambda v: str(v) if isinstance(v, int) else "")
def test_every_python_block_runs_or_matches_the_source(line, code):
    """Each block runs (or matches its source); the quick start's block also gives a scalar loss
    and no gradient for the parameter-free tanh (it runs once, here, not again in a test of its own)."""
    namespace = run_or_compare(README, [(line, code)], {})
    if line == _quick_start_line():
        assert namespace["loss"].shape == () and namespace["grads"][1] is None


def test_the_quick_start_is_one_of_the_blocks():
    assert _quick_start_line() in [line for line, _ in python_blocks(README)]


def test_readme_has_python_blocks_and_an_excerpt():
    blocks = python_blocks(README)
    assert len(blocks) >= 3
    assert any(code.startswith("# excerpt of jaxback/_linear.py, verbatim") for _, code in blocks)


def test_known_limits():
    """README 'Known limits': jvp and jacfwd raise; hessian and grad-of-grad work and match auto."""
    key = jax.random.PRNGKey(0)
    params = jb.linear.init(key, 3, 2, dtype=jnp.float64)
    x = jax.random.normal(key, (2, 3), jnp.float64)
    hand = lambda x: jnp.sum(jb.tanh(jb.linear(params, x)) ** 2)
    auto = lambda x: jnp.sum(jb.tanh.auto(jb.linear.auto(params, x)) ** 2)
    for forward_mode in (lambda: jax.jvp(hand, (x,), (x,)), lambda: jax.jacfwd(hand)(x)):
        with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
            forward_mode()
    hessian = lambda f: jax.jit(jax.hessian(f))(x)
    assert jnp.max(jnp.abs(hessian(hand) - hessian(auto))) < 4e-15
    gg = lambda f: jax.jit(jax.grad(lambda x: jnp.sum(jax.grad(f)(x) ** 2)))(x)
    assert jnp.max(jnp.abs(gg(hand) - gg(auto))) < 4e-15
