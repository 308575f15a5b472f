"""Query suggestion: prefix completion, related queries, hint query, refinements."""

from funnel.suggest.completion import QueryCompleter
from funnel.suggest.normalize import BlockList, normalize_query, pinyin_aliases

__all__ = ["BlockList", "QueryCompleter", "normalize_query", "pinyin_aliases"]
