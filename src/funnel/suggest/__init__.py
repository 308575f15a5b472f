"""Query suggestion: prefix completion, related queries, hint query, refinements.

The server loads a built model with :func:`load_suggest` and calls ``complete``, ``related``,
``hint`` and ``refinements`` on the returned :class:`QuerySuggester`.
"""

from funnel.suggest.autocomplete import AutoCompleter
from funnel.suggest.build import build_suggest, load_suggest
from funnel.suggest.completion import QueryCompleter
from funnel.suggest.context import SessionContext
from funnel.suggest.model import QuerySuggester, SuggestConfig
from funnel.suggest.normalize import BlockList, normalize_query, pinyin_aliases

__all__ = [
    "AutoCompleter",
    "BlockList",
    "QueryCompleter",
    "QuerySuggester",
    "SessionContext",
    "SuggestConfig",
    "build_suggest",
    "load_suggest",
    "normalize_query",
    "pinyin_aliases",
]
