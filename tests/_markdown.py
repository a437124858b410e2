"""Python code blocks of Markdown files, for the tests that run every example."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)
EXCERPT = re.compile(r"^# excerpt of (?P<path>\S+), verbatim")


def python_blocks(path: pathlib.Path) -> list[tuple[int, str]]:
    """``[(line number, code), ...]`` of every fenced ``python`` block in ``path``."""
    text = path.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m[1]) for m in _BLOCK.finditer(text)]


def run_or_compare(path: pathlib.Path, blocks, namespace: dict) -> dict:
    """Execute each block in ``namespace`` (in order); a block headed ``# excerpt of PATH,
    verbatim`` must instead appear verbatim in that source file."""
    for line, code in blocks:
        m = EXCERPT.match(code)
        if m:
            body = code.split("\n", 1)[1]
            source = (ROOT / m["path"]).read_text(encoding="utf-8")
            assert body in source, f"{path.name}:{line}: the excerpt no longer matches {m['path']}"
            continue
        exec(compile(code, f"{path.name}:{line}", "exec"), namespace)
    return namespace
