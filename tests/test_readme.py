"""The README's quick start runs as written (so the documentation cannot drift from the API)."""

import pathlib

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs():
    text = README.read_text(encoding="utf-8")
    start = text.index("```python", text.index("## Quick start")) + len("```python")
    code = text[start:text.index("```", start)]
    namespace = {}
    exec(compile(code, "README.md quick start", "exec"), namespace)
    assert namespace["loss"].shape == () and namespace["grads"][1] is None
