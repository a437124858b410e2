"""The committed conformance table is what the registry says."""

import pathlib

from jaxback.testing import builtin_registry
from jaxback.testing.conformance import document

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "conformance.md"


def test_committed_conformance_table_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == document(builtin_registry().registered()), (
        "docs/conformance.md is stale: run  python -m jaxback.testing.conformance > docs/conformance.md")

