"""Register jaxback's own layers (one ``_entries_*`` module per layer family)."""

from . import _entries_core
from ._registry import register

for _entries in (_entries_core,):
    for _info in _entries.ENTRIES:
        register(_info)
