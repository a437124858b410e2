"""Python code blocks of Markdown files, for the tests that run every example; the measured pages' rules."""

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


MEASURED_ON = re.compile(r"^measured on: (?P<device>.+ \(\d+ cores\)|.+ \(GPU\)), jax \S+, jaxlib \S+, "
                         r"(?:\S+ \S+, )*Python \d+\.\d+\.\d+, \d{4}-\d\d-\d\d$")


def _tables(text: str) -> list[tuple[int, int]]:
    """``[(first line, last line), ...]`` of each markdown table (consecutive lines starting with |)."""
    lines, out, start = text.splitlines(), [], None
    for i, line in enumerate(lines + [""]):
        if line.startswith("|") and start is None:
            start = i
        elif not line.startswith("|") and start is not None:
            out.append((start, i - 1))
            start = None
    return out


def check_measured_tables(text: str, name: str) -> None:
    """A measured page's rules: exactly one "measured on" line between a table and the one before
    it, two lines above the table (the line, a blank, the table), and no dated prose anywhere else."""
    lines = text.splitlines()
    tables = _tables(text)
    assert tables, f"{name} has no table"
    previous_end = -1
    for start, end in tables:
        headers = [line for line in lines[previous_end + 1:start] if line.startswith("measured on:")]
        assert len(headers) == 1 and lines[start - 2] == headers[0], f"{name}:{start + 1}: {headers}"
        assert MEASURED_ON.match(headers[0]), headers[0]
        previous_end = end
    dated = [line for line in lines if re.search(r"\b\d{4}-\d\d-\d\d\b|\bUTC\b", line)
             and not line.startswith("measured on:")]
    assert not dated, f"{name}: dates outside the measured-on lines: {dated}"
