"""Sphinx extension: the site is read from the code, so it cannot drift from it.

* ``{docstring} jaxback._linear`` (or ``jaxback._linear.linear_bwd``): the docstring verbatim, as a
  preformatted block (derivations are aligned plain text, written in the code's names);
* ``{derivative-table} jaxback._activations``: the module's table of stated derivatives (the one
  ``tests/test_derivations_sympy.py`` proves) rendered as maths by sympy's LaTeX printer;
* at ``builder-inited``, ``_generated/api.md`` (every name in ``jaxback.__all__`` and
  ``jaxback.testing.__all__``: signature and docstring) and ``_generated/models.md`` (the docstrings
  of ``jaxback._combinators`` and of every module named ``jaxback._model*``, so modules added
  later appear without editing the site).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import pathlib
import pkgutil
import re

from docutils import nodes
from docutils.parsers.rst import Directive

GENERATED = "_generated"

__all__ = ["setup", "model_modules", "api_markdown", "models_markdown"]


def _resolve(path: str):
    """``jaxback._linear`` -> the module; ``jaxback._linear.linear_bwd`` -> the function."""
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError:
        module, _, attr = path.rpartition(".")
        return getattr(importlib.import_module(module), attr)


def _doc(obj) -> str:
    return inspect.getdoc(obj) or ""


class DocstringDirective(Directive):
    """The docstring of a module or object, verbatim."""

    required_arguments = 1

    def run(self):
        text = _doc(_resolve(self.arguments[0]))
        if not text:
            raise self.error(f"{self.arguments[0]} has no docstring")
        block = nodes.literal_block(text, text, language="text")
        return [nodes.container("", block, classes=["docstring"])]


def _latex_namespace():
    """sympy names that print as the docstring reads: sigma(x), Phi(x), unknown names as symbols."""
    import sympy as sp

    from jaxback.testing import _derivations as d

    ns = d.sympy_namespace()
    ns.update(sigmoid=sp.Function("sigma"), expm1=sp.Function(r"\operatorname{expm1}"),
              x=sp.Symbol("x"), y=sp.Symbol("y"), number=sp.Float)
    return ns


def _symbol(name: str):
    import sympy as sp

    return sp.Symbol(r"\mathrm{%s}" % name.replace("_", r"\_") if "_" in name else name)


def _latex(expr: str, ns: dict) -> str:
    import sympy as sp

    from jaxback.testing import _derivations as d

    names = {n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)}
    with sp.evaluate(False):  # print the statement as written, not sympy's canonical form
        value = d.evaluate(expr, {**{n: _symbol(n) for n in names}, **ns})  # unknown names as themselves
    return sp.latex(value, order="none")


class DerivativeTableDirective(Directive):
    """Each layer's stated ``y`` and ``f'`` (and its ``where`` definitions) as display maths."""

    required_arguments = 1

    def run(self):
        import sympy as sp

        from jaxback.testing import _derivations as d

        out = []
        for entry in d.elementwise_table(_resolve(self.arguments[0])):
            ns = _latex_namespace()
            for lhs, _ in entry.where:
                fn = re.fullmatch(r"(\w+)\((\w+)\)", lhs)
                if fn:
                    ns[fn[1]] = sp.Function(fn[1])
            title = entry.name + "".join(f" ({k}={v})" for k, v in entry.hyper.items())
            lines = [rf"y &= {_latex(entry.forward, ns)}",
                     "f'(x) &= " + " = ".join(_latex(f, ns) for f in entry.derivatives)]
            lines += [rf"{_latex(lhs, ns)} &= {_latex(rhs, ns)}" for lhs, rhs in entry.where]
            latex = r"\begin{aligned}" + r" \\ ".join(lines) + r"\end{aligned}"
            para = nodes.paragraph("", "")
            para += nodes.literal(title, title)
            out += [para, nodes.math_block(latex, latex, nowrap=False, number=None)]
        return out


def model_modules() -> list[str]:
    """``jaxback._model*`` modules (sorted), ``jaxback._combinators`` and ``jaxback._backprop``."""
    import jaxback

    found = [m.name for m in pkgutil.iter_modules(jaxback.__path__, "jaxback.") if
             m.name.startswith("jaxback._model")]
    return sorted(found) + ["jaxback._combinators", "jaxback._backprop"]


def _value(v) -> str:
    if inspect.isclass(v):
        module = {"jax.numpy": "jnp"}.get(v.__module__, v.__module__)
        return f"{module}.{v.__qualname__}"
    if v is dataclasses.MISSING or type(v).__name__ == "_HAS_DEFAULT_FACTORY_CLASS":
        return "<factory>"
    return repr(v)


def _annotation(a) -> str:
    return a if isinstance(a, str) else inspect.formatannotation(a)


def _signature(name: str, obj) -> str:
    """``name(a: int, *, b=1) -> T`` with annotations as written and readable defaults."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return name
    params = []
    for p in sig.parameters.values():
        text = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "") + p.name
        if p.annotation is not p.empty:
            text += f": {_annotation(p.annotation)}"
        if p.default is not p.empty:
            text += f" = {_value(p.default)}" if p.annotation is not p.empty else f"={_value(p.default)}"
        params.append(text)
    # the bare "*" marker before the first keyword-only parameter
    kinds = [p.kind for p in sig.parameters.values()]
    if inspect.Parameter.KEYWORD_ONLY in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds:
        params.insert(kinds.index(inspect.Parameter.KEYWORD_ONLY), "*")
    ret = "" if sig.return_annotation is sig.empty else f" -> {_annotation(sig.return_annotation)}"
    return f"{name}({', '.join(params)}){ret}"


def _python_or_text(code: str) -> str:
    """Highlight as Python only what parses as Python (a lexing failure is a build warning)."""
    try:
        ast.parse(f"def _{code[code.index('('):]}: pass" if "(" in code else code)
    except SyntaxError:
        return "text"
    return "python"


def _fence(text: str, language: str = "text") -> list[str]:
    return [f"````{language}", text, "````", ""]


def _describe(qualified: str, obj) -> list[str]:
    lines = [f"### `{qualified}`", ""]
    if callable(obj):
        sig = _signature(qualified, obj)
        lines += _fence(sig, _python_or_text(sig))
    doc = _doc(obj)
    if inspect.isclass(obj) and hasattr(obj, "_fields"):
        doc = doc + f"\n\nFields: {', '.join(obj._fields)}"
    if doc:
        lines += _fence(doc)
    return lines


def _kind(obj) -> str:
    import jaxback as jb

    if isinstance(obj, jb.Layer):
        return "Layers"
    if inspect.isclass(obj) and hasattr(obj, "_fields"):
        return "Parameter and state records"
    return "Building blocks"


def api_markdown() -> str:
    """The API reference page: every exported name, grouped, with signature and docstring."""
    import jaxback as jb
    import jaxback.testing as jbt

    lines = ["# API reference", "",
             "Generated from the docstrings of everything in `jaxback.__all__` and "
             "`jaxback.testing.__all__` (`docs/_ext/jaxback_docs.py`).", ""]
    groups: dict[str, list[str]] = {"Building blocks": [], "Layers": [], "Parameter and state records": []}
    for name in jb.__all__:
        groups[_kind(getattr(jb, name))].append(name)
    for group, names in groups.items():
        lines += [f"## {group}", ""]
        for name in names:
            lines += _describe(f"jb.{name}", getattr(jb, name))
    lines += ["## jaxback.testing", ""] + _fence(_doc(jbt))
    for name in jbt.__all__:
        lines += _describe(f"jaxback.testing.{name}", getattr(jbt, name))
    return "\n".join(lines)


def models_markdown() -> str:
    """The models and combinators page: module docstrings, then each public name's."""
    lines = ["# Models and combinators", "",
             "Generated from the docstrings of " + ", ".join(f"`{m}`" for m in model_modules()) +
             " (every module named `jaxback._model*` is picked up as it appears).", ""]
    for name in model_modules():
        module = importlib.import_module(name)
        lines += [f"## `{name}`", ""] + _fence(_doc(module))
        for attr in getattr(module, "__all__", []):
            lines += _describe(f"{name}.{attr}", getattr(module, attr))
    return "\n".join(lines)


def _generate(app):
    out = pathlib.Path(app.srcdir) / GENERATED
    out.mkdir(exist_ok=True)
    for filename, text in {"api.md": api_markdown(), "models.md": models_markdown()}.items():
        path = out / filename
        if not path.exists() or path.read_text(encoding="utf-8") != text:  # keep mtimes: no rebuild
            path.write_text(text, encoding="utf-8")


def setup(app):
    app.add_directive("docstring", DocstringDirective)
    app.add_directive("derivative-table", DerivativeTableDirective)
    app.connect("builder-inited", _generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
