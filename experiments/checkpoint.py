"""Save and load a model's params and state, outside train.py (orbax-checkpoint underneath).

    from experiments.checkpoint import save, load      # from the repository root
    save("out/model", params, state)                   # a new directory
    params, state = load("out/model")                  # the same NamedTuples, no target needed

``jaxback`` itself does not depend on orbax (not a core dependency), so this lives here. Orbax
alone, restoring without a target, gives back dicts and lists where the tree had NamedTuples
(jaxback's layer records) and tuples; so ``save`` also writes ``structure.json``: the tree's
nodes, each NamedTuple by its import path (``module:qualname``), and ``load`` rebuilds it.
Supported nodes: None, tuple, list, dict with string keys, NamedTuple; leaves: arrays and numbers.
"""

from __future__ import annotations

import importlib
import json
import os

import jax
import numpy as np

__all__ = ["save", "load"]

STRUCTURE = "structure.json"


def _encode(tree, leaves: list):
    if tree is None:
        return {"none": True}
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        kind = type(tree)
        return {"namedtuple": f"{kind.__module__}:{kind.__qualname__}", "fields": [_encode(c, leaves) for c in tree]}
    if isinstance(tree, (tuple, list)):
        return {type(tree).__name__: [_encode(c, leaves) for c in tree]}
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            raise TypeError(f"checkpoint.save: dict keys must be strings; got {sorted(map(repr, tree))}.")
        return {"dict": {k: _encode(v, leaves) for k, v in tree.items()}}
    if isinstance(tree, (jax.Array, np.ndarray, np.generic, int, float, bool)):
        leaves.append(tree)
        return {"leaf": len(leaves) - 1}
    raise TypeError(f"checkpoint.save: cannot store a {type(tree).__qualname__} node (supported: None, tuple, list, "
                    f"dict, NamedTuple, arrays and numbers).")


def _decode(node, leaves):
    if "none" in node:
        return None
    if "leaf" in node:
        return leaves[str(node["leaf"])]
    if "namedtuple" in node:
        module, name = node["namedtuple"].split(":")
        kind = importlib.import_module(module)
        for part in name.split("."):
            kind = getattr(kind, part)
        return kind(*(_decode(c, leaves) for c in node["fields"]))
    if "dict" in node:
        return {k: _decode(v, leaves) for k, v in node["dict"].items()}
    kind, children = next(iter(node.items()))
    return {"tuple": tuple, "list": list}[kind](_decode(c, leaves) for c in children)


def save(path: str, params, state=None) -> None:
    """Write ``params`` and ``state`` (a model's, e.g. batch-norm statistics; None without) to the
    new directory ``path``: the arrays by orbax, the tree's structure as JSON."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    if os.path.exists(path):
        raise FileExistsError(f"checkpoint.save: {path} exists; give a new directory.")
    leaves = []
    structure = {"params": _encode(params, leaves), "state": _encode(state, leaves)}
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(os.path.join(path, "arrays"), {str(i): leaf for i, leaf in enumerate(leaves)})
    with open(os.path.join(path, STRUCTURE), "w") as f:
        json.dump(structure, f)


def load(path: str):
    """``(params, state)`` as :func:`save` wrote them under ``path``, the NamedTuples rebuilt."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    if not os.path.isfile(os.path.join(path, STRUCTURE)):
        raise FileNotFoundError(f"checkpoint.load: {path} has no {STRUCTURE}; not written by checkpoint.save.")
    with open(os.path.join(path, STRUCTURE)) as f:
        structure = json.load(f)
    with ocp.StandardCheckpointer() as checkpointer:
        leaves = checkpointer.restore(os.path.join(path, "arrays")) if os.path.isdir(os.path.join(path, "arrays")) else {}
    return _decode(structure["params"], leaves), _decode(structure["state"], leaves)
