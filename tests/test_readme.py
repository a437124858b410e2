"""The README is a guide read top to bottom: its Python blocks run in order, in one namespace, as a
reader would paste them (or are verbatim excerpts of the source); its links point at files that
exist; and its limits are what JAX does."""

import re

import jax
import jax.numpy as jnp
import pytest

import jaxback as jb
from _markdown import ROOT, python_blocks, run_or_compare

README = ROOT / "README.md"
BLOCKS = python_blocks(README)


@pytest.fixture(scope="module")
def walk():
    """Run the blocks in order; ``(namespace, {line: exception})``: a failed block stops the walk (the
    blocks after it read its names), so later blocks are reported as not reached."""
    namespace, failed = {}, {}
    for line, code in BLOCKS:
        try:
            run_or_compare(README, [(line, code)], namespace)
        except Exception as e:  # reported by the block's own test below
            failed[line] = e
            break
    return namespace, failed


@pytest.mark.parametrize("line, code", BLOCKS, ids=lambda v: str(v) if isinstance(v, int) else "")
def test_every_python_block_runs_or_matches_the_source(walk, line, code):
    _, failed = walk
    stopped = min(failed, default=None)
    if stopped == line:
        raise failed[line]
    assert stopped is None or line < stopped, f"README.md:{line} not reached: the block at line {stopped} failed"


def test_readme_has_the_guides_blocks_and_an_excerpt():
    assert len(BLOCKS) >= 4
    assert any(code.startswith("# excerpt of jaxback/_linear.py, verbatim") for _, code in BLOCKS)


def test_the_three_modes_section_computes_every_mode_with_value_and_grad(walk):
    namespace, failed = walk
    assert not failed
    section = README.read_text(encoding="utf-8").split("## One model in three modes")[1].split("\n## ")[0]
    assert "jb.value_and_grad(" in section and "jb.MODES" in section
    assert set(namespace["grads"]) == set(jb.MODES)
    assert all(namespace["grads"][mode][1] is None for mode in jb.MODES)   # tanh: no parameters
    first = next(iter(namespace["record"].values()))                      # the explicit mode's record
    assert {"x", "x_bar", "params_bar"} <= set(first)


def test_every_relative_link_of_the_readme_exists():
    text = README.read_text(encoding="utf-8")
    links = [t for t in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text) if not re.match(r"^[a-z]+:", t)]
    assert links, "the README links to the docs pages"
    missing = [t for t in links if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_the_readme_stays_a_guide():
    """About 200 lines, no measurement history (dates, UTC times), no included sections on the site."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 210
    assert not re.search(r"\b20\d\d-\d\d-\d\d\b|\bUTC\b", text), "dates belong in git and in measured pages"
    for page in (ROOT / "docs").rglob("*.md"):
        assert "{readme-section}" not in page.read_text(encoding="utf-8"), f"{page.name} includes the README"


def test_known_limits():
    """README 'Known limits': forward mode (jvp, jacfwd, linearize), hessian and grad of grad run
    through the hand rules and match auto; a layer built without jvp= is a custom_vjp, whose jvp raises."""
    key = jax.random.PRNGKey(0)
    params = jb.linear.init(key, 3, 2, dtype=jnp.float64)
    x = jax.random.normal(key, (2, 3), jnp.float64)
    hand = lambda x: jnp.sum(jb.tanh(jb.linear(params, x)) ** 2)
    auto = lambda x: jnp.sum(jb.tanh.auto(jb.linear.auto(params, x)) ** 2)
    transforms = {"jvp": lambda f: jax.jvp(f, (x,), (x,))[1], "jacfwd": lambda f: jax.jacfwd(f)(x),
                  "linearize": lambda f: jax.linearize(f, x)[1](x), "hessian": lambda f: jax.hessian(f)(x),
                  "grad of grad": lambda f: jax.grad(lambda x: jnp.sum(jax.grad(f)(x) ** 2))(x)}
    for name, transform in transforms.items():
        run = lambda f, transform=transform: jax.jit(lambda: transform(f))()
        assert jnp.max(jnp.abs(run(hand) - run(auto))) < 4e-15, name
    reverse_only = jb.make_layer(jb.tanh.auto, jb.tanh.fwd, jb.tanh.bwd, name="tanh_reverse_only")
    with pytest.raises(TypeError, match="can't apply forward-mode autodiff"):
        jax.jvp(reverse_only, (x,), (x,))
