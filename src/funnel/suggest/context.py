"""Session context for completion: the previous query and the user's categories and market.

Someone who just searched "paris" and types "lo" more likely wants "paris loft" than "london":
the previous query both adds candidates (completions of "paris lo", the previous query itself)
and gives the ranker features (word overlap, repeat, refinement of it). Categories and market
(from the user's profile or clicks in this session) are matched against each candidate's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from funnel.suggest.completion import QueryCompleter


@dataclass(frozen=True)
class SessionContext:
    """What is known about the request beyond the prefix (all optional)."""

    previous_query: str = ""
    categories: tuple[str, ...] = field(default_factory=tuple)
    market: str | None = None


def context_candidates(completer: QueryCompleter, prefix: str, previous: str,
                       k: int = 8) -> list[str]:
    """Logged queries that continue the previous query with the prefix, and the previous query
    itself when the prefix starts it (a repeated search)."""
    if not previous or not prefix.strip():
        return []
    out: list[str] = []
    if previous.startswith(prefix) and previous != prefix:
        out.append(previous)
    if not prefix.startswith(previous):
        texts, _ = completer.complete(f"{previous} {prefix.lstrip()}", k, normalize=False)
        out += [t for t in texts if t not in out]
    return out

