"""Register jaxback's own layers (one ``_entries_*`` module per layer family)."""

from . import (_entries_attention, _entries_attention_tiled, _entries_conv, _entries_core, _entries_lstm,
               _entries_misc, _entries_models, _entries_norm)
from ._registry import register

for _entries in (_entries_core, _entries_misc, _entries_attention, _entries_attention_tiled, _entries_norm,
                 _entries_conv, _entries_lstm, _entries_models):
    for _info in _entries.ENTRIES:
        register(_info)
