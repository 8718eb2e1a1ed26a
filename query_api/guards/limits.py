"""The numbers that bound one caller's use of the query API.

Two kinds: document limits (depth, aliases, tokens) are checked while a query is parsed and validated,
before any resolver runs, so they are fixed per process; request limits (the per-token rate and the
ClickHouse timeout) travel on the request's :class:`~query_api.context.QueryContext` as a
:class:`QueryLimits`, so each entry point (HTTP app, MCP server) passes the values of its settings.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "MAX_ALIASES", "MAX_DEPTH", "MAX_TOKENS", "QueryLimits"]

# Deepest legitimate query today: introspection is not counted, admin answers nest 3-4 levels
# (inviteMember { accessToken { accessToken { id } } }), funnels 4.  10 leaves room without allowing the
# exponential fan-out of cyclic selections.
MAX_DEPTH = 10
# Aliases multiply work: one document could ask for the same expensive funnel hundreds of times.  30 covers
# dashboards that fetch a few panels in one request.
MAX_ALIASES = 30
# Lexical tokens of the document (variables are not tokens): a 50-step funnel spelled inline is ~1,000.
MAX_TOKENS = 5000


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """Per-request limits: token bucket of ``rate_per_s`` refilled up to ``burst`` requests per access
    token (``rate_per_s`` 0: unlimited), and the ClickHouse time budget of each query in seconds."""

    rate_per_s: float = 20.0
    burst: int = 40
    clickhouse_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.rate_per_s < 0 or self.burst < 1 or self.clickhouse_timeout_s <= 0:
            raise ValueError(f"unusable query limits {self}")


DEFAULT_LIMITS = QueryLimits()
