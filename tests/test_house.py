"""The new-layer checklist of CONTRIBUTING.md, enforced; and each layer documents itself.

Every exported layer has a registry entry, a row in the layer table of docs/layers/index.md and a
docs page (its family's page under docs/layers/, showing the module docstring and the bwd source;
model modules are documented by the generated models page); every registered layer is exported.
"""

import inspect
import re

import pytest

import jaxback as jb
import jaxback.testing as jbt
from _markdown import ROOT

EXPORTED = {name: obj for name, obj in vars(jb).items() if name in jb.__all__ and isinstance(obj, jb.Layer)}
MODEL_MODULE = re.compile(r"^jaxback\._(combinators|model)")


def _module(layer) -> str:
    return inspect.unwrap(layer.fwd).__module__


def _bwd_name(layer) -> str:
    """The top-level function that holds the layer's bwd (``_elementwise`` for closures)."""
    return inspect.unwrap(layer.bwd).__qualname__.split(".")[0]


def test_every_exported_layer_is_registered_and_every_registered_layer_exported():
    # model entries are example networks built by exported combinators, not layers of their own
    # model entries are example networks built by exported combinators, not layers of their own;
    # "attention (tiled)" is a second entry, a setting of an exported layer
    registered = {info.layer.name.split(" (")[0] for info in jbt.builtin_registry().registered() if not info.layer.composed}
    assert set(EXPORTED) <= registered, f"no registry entry: {sorted(set(EXPORTED) - registered)}"
    assert registered <= set(EXPORTED), f"registered but not exported: {sorted(registered - set(EXPORTED))}"


LAYER_TABLE = ROOT / "docs" / "layers" / "index.md"


def _layer_table_rows() -> set:
    """The layer names in the first column of the layer table (a row may name several)."""
    rows = [line.split("|")[1] for line in LAYER_TABLE.read_text(encoding="utf-8").splitlines()
            if line.startswith("| `")]
    return {name for cell in rows for name in re.findall(r"`(\w+)`", cell)}


def test_the_layer_table_names_only_exported_names():
    assert _layer_table_rows() <= set(jb.__all__), f"not exported: {sorted(_layer_table_rows() - set(jb.__all__))}"


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_every_exported_layer_has_a_table_row_and_a_docs_page(name):
    layer = EXPORTED[name]
    assert name in _layer_table_rows(), f"{name}: no row in the layer table of {LAYER_TABLE.relative_to(ROOT)}"
    module = _module(layer)
    if MODEL_MODULE.match(module):
        return  # docs/_generated/models.md renders every model module's docstrings
    page = ROOT / "docs" / "layers" / f"{module.split('._')[-1]}.md"
    assert page.exists(), f"{name}: no docs page {page.relative_to(ROOT)}"
    text = page.read_text(encoding="utf-8")
    assert f"{{docstring}} {module}" in text, f"{page.name}: the module docstring is not shown"
    assert f":pyobject: {_bwd_name(layer)}" in text, f"{page.name}: the bwd source of {name} is not shown"


@pytest.mark.parametrize("name", ["linear", "leaky_relu", "gelu", "batch_norm", "attention"])
def test_help_and_signature_are_the_layers_own(name):
    layer = getattr(jb, name)
    assert inspect.signature(layer) == inspect.signature(layer.auto)
    assert "*args" not in str(inspect.signature(layer)) and "**hyper" not in str(inspect.signature(layer))
    doc = inspect.getdoc(layer)
    assert doc.startswith(f"{name}(") and doc != inspect.getdoc(jb.Layer)
    assert _module(layer) in doc


def test_signatures_name_the_arguments():
    assert list(inspect.signature(jb.linear).parameters) == ["params", "x"]
    assert list(inspect.signature(jb.leaky_relu).parameters) == ["x", "negative_slope"]
    assert inspect.signature(jb.gelu).parameters["approximate"].default is False


def _jvp_name(layer) -> str:
    """The top-level function that holds the layer's jvp (``_elementwise`` for closures)."""
    return inspect.unwrap(layer.jvp).__qualname__.split(".")[0]


@pytest.mark.parametrize("name", sorted(EXPORTED))
def test_every_exported_layer_has_a_hand_jvp_derived_and_shown(name):
    """Forward mode: a hand JVP, its Tangent lines in the derivation, its source on the docs page."""
    layer = EXPORTED[name]
    assert layer.jvp is not None, f"{name}: no hand JVP (make_layer(..., jvp=...))"
    module = _module(layer)
    doc = inspect.getdoc(inspect.getmodule(inspect.unwrap(layer.fwd))) or ""
    assert re.search(r"^\s*Tangent\b", doc, re.M) and "_dot" in doc, f"{module}: no Tangent lines in the derivation"
    if not MODEL_MODULE.match(module):
        page = ROOT / "docs" / "layers" / f"{module.split('._')[-1]}.md"
        assert f":pyobject: {_jvp_name(layer)}" in page.read_text(encoding="utf-8"), \
            f"{page.name}: the jvp source of {name} is not shown"
