"""The derivatives that module docstrings state, read as expressions (for sympy and for JAX).

Two docstring forms are machine-read; both stay plain text for a human reader.

Elementwise table (``jaxback._activations``): one entry per layer, a name at two spaces of indent,
then ``y = <forward>`` and ``f' = <derivative>`` (several equal forms may be chained with `` = ``),
and optional continuation lines ``where a = ..., b(x) = ...`` (definitions in dependency order;
``b(x) = ...`` defines a function). A hyperparameter setting may follow the name:
``gelu (approximate=True)``::

  silu        y = x * s                       f' = s + x * s * (1 - s)
              where s = sigmoid(x)

Assignment lines (``jaxback._losses``): inside the section of a layer (a line starting with
``<name>.`` at column 0), every line ``    [Forward|Backward|Tangent]  name = <python expression>``
followed, after three or more spaces, by an optional comment. ``loss = ...`` is the forward,
``<arg>_bar = ...`` the stated cotangents and ``loss_dot = ...`` the stated forward-mode tangent
(of the inputs' tangents ``<arg>_dot``). Lines whose right-hand side is not a Python expression
are prose and are skipped; the tests require the expected names, so a statement cannot vanish.

Expressions are Python: ``a if cond else b``, ``**``, calls of ``exp``, ``log``, ``sigmoid``, ...
``evaluate(expr, namespace)`` runs one in a namespace of sympy objects (``sympy_namespace``) or of
JAX functions (``jax_namespace``): the same text is differentiated symbolically and compared
numerically with the hand ``bwd``.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re

__all__ = [
    "Elementwise",
    "elementwise_table",
    "assignments",
    "evaluate",
    "define",
    "run_assignments",
    "sympy_namespace",
    "jax_namespace",
    "split_top_level",
]

_ENTRY = re.compile(r"^  (?P<name>[a-z_][a-z_0-9]*)(?: \((?P<hyper>[^)]*)\))?(?:\s{2,}(?P<rest>\S.*))?$")
_CONTINUATION = re.compile(r"^ {6,}(?P<rest>\S.*)$")
_ASSIGNMENT = re.compile(
    r"^\s+(?:Forward\s+|Backward\s+|Tangent\s+)?(?P<lhs>[a-z_][a-z_0-9]*)\s+=\s+(?P<rhs>.+?)(?:\s{3,}(?P<note>.*))?$"
)


@dataclasses.dataclass(frozen=True)
class Elementwise:
    """One entry of an elementwise table: ``y = forward``, ``f' = derivatives[0] = ...``."""

    name: str
    hyper: dict
    forward: str
    derivatives: tuple
    where: tuple  # ((lhs, rhs), ...) in dependency order; lhs "b(x)" defines a function


def split_top_level(text: str, sep: str) -> list[str]:
    """``text`` split on ``sep`` outside parentheses/brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(text):
        ch = text[i]
        depth += ch in "([{"
        depth -= ch in ")]}"
        if depth == 0 and text.startswith(sep, i):
            parts.append(text[start:i].strip())
            i = start = i + len(sep)
            continue
        i += 1
    parts.append(text[start:].strip())
    return parts


def _entries(doc: str):
    """``(name, hyper text, joined rest)`` for each table entry with continuation lines."""
    current = None
    for line in doc.splitlines():
        cont = _CONTINUATION.match(line)
        if current is not None and cont:
            current[2].append(cont["rest"])
            continue
        if current is not None:
            yield current[0], current[1], "  ".join(p for p in current[2] if p)
            current = None
        m = _ENTRY.match(line)
        if m:
            current = (m["name"], m["hyper"] or "", [m["rest"] or ""])
    if current is not None:
        yield current[0], current[1], "  ".join(p for p in current[2] if p)


def elementwise_table(module) -> list[Elementwise]:
    """The entries of ``module``'s elementwise table (see the module docstring for the form)."""
    out = []
    for name, hyper_text, rest in _entries(inspect.getdoc(module)):
        m = re.fullmatch(r"y = (?P<y>.+?)\s{2,}f' = (?P<df>.+?)(?:\s{2,}where (?P<where>.+))?", rest)
        if not m:
            continue
        hyper = eval(f"dict({hyper_text})", {"dict": dict, "True": True, "False": False})
        where = tuple(tuple(split_top_level(d, " = ")) for d in split_top_level(m["where"] or "", ", ") if d)
        out.append(Elementwise(name, hyper, m["y"].strip(), tuple(split_top_level(m["df"], " = ")), where))
    return out


def assignments(module, layer: str) -> list[tuple[str, str]]:
    """``[(lhs, rhs), ...]`` of the Python assignment lines in ``layer``'s section of the docstring."""
    out, inside = [], False
    for line in inspect.getdoc(module).splitlines():
        if re.match(r"^[a-z_][a-z_0-9]*\.\s", line):
            inside = line.startswith(layer + ".")
        if not inside:
            continue
        m = _ASSIGNMENT.match(line)
        if m and _is_expression(m["rhs"]):
            out.append((m["lhs"], m["rhs"].strip()))
    return out


def _is_expression(text: str) -> bool:
    try:
        ast.parse(text, mode="eval")
    except SyntaxError:
        return False
    return True


class _Conditionals(ast.NodeTransformer):
    """``a if c else b`` -> ``ifelse(c, a, b)``; float literals -> ``number("...")`` (exact)."""

    def visit_IfExp(self, node):
        self.generic_visit(node)
        return ast.Call(ast.Name("ifelse", ast.Load()), [node.test, node.body, node.orelse], [])

    def visit_Constant(self, node):
        if isinstance(node.value, float):
            return ast.Call(ast.Name("number", ast.Load()), [ast.Constant(repr(node.value))], [])
        return node


def evaluate(expr: str, namespace: dict):
    """Evaluate the Python expression ``expr`` with the names of ``namespace``."""
    tree = ast.fix_missing_locations(_Conditionals().visit(ast.parse(expr, mode="eval")))
    return eval(compile(tree, "<docstring>", "eval"), dict(namespace))


def define(namespace: dict, where) -> dict:
    """``namespace`` extended by the ``where`` definitions, in order."""
    ns = dict(namespace)
    for lhs, rhs in where:
        fn = re.fullmatch(r"(\w+)\((\w+)\)", lhs)
        if fn:
            ns[fn[1]] = (lambda arg, rhs=rhs, var=fn[2], base=ns: evaluate(rhs, {**base, var: arg}))
        else:
            ns[lhs] = evaluate(rhs, ns)
    return ns


def run_assignments(pairs, namespace: dict) -> dict:
    """``namespace`` extended by ``[(lhs, rhs), ...]`` evaluated in order (booleans become 0/1)."""
    import numpy as np

    ns = dict(namespace)
    for lhs, rhs in pairs:
        value = evaluate(rhs, ns)
        if isinstance(value, np.ndarray) and value.dtype == bool:
            value = value.astype(int)
        ns[lhs] = value
    return ns


def sympy_namespace() -> dict:
    """Names for ``evaluate`` as sympy objects; arrays are numpy object arrays of symbols."""
    import numpy as np
    import sympy as sp

    def vec(f):
        return lambda a: np.vectorize(f, otypes=[object])(a) if isinstance(a, np.ndarray) else f(a)

    z = sp.Dummy("z")
    sigmoid = sp.Lambda(z, 1 / (1 + sp.exp(-z)))
    softplus = sp.Lambda(z, sp.log(1 + sp.exp(z)))
    return {
        "exp": vec(sp.exp), "log": vec(sp.log), "tanh": vec(sp.tanh), "erf": vec(sp.erf),
        "sqrt": vec(sp.sqrt), "sigmoid": vec(sigmoid), "softplus": vec(softplus),
        "expm1": vec(lambda a: sp.exp(a) - 1), "log1p": vec(lambda a: sp.log(1 + a)),
        "pi": sp.pi, "number": sp.Rational, "sum": lambda a, axis=None: np.sum(a, axis=axis),
        "ifelse": lambda c, a, b: sp.Piecewise((a, c), (b, True)), "arange": np.arange,
    }


def jax_namespace() -> dict:
    """Names for ``evaluate`` as JAX functions."""
    import math

    import jax
    import jax.numpy as jnp

    return {
        "exp": jnp.exp, "log": jnp.log, "tanh": jnp.tanh, "erf": jax.scipy.special.erf,
        "sqrt": jnp.sqrt, "sigmoid": jax.nn.sigmoid, "softplus": jax.nn.softplus,
        "expm1": jnp.expm1, "log1p": jnp.log1p, "pi": math.pi, "number": float,
        "sum": lambda a, axis=None: jnp.sum(a, axis=axis), "ifelse": jnp.where,
        "arange": jnp.arange,
    }
