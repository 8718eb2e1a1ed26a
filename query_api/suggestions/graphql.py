"""``journeySuggestions``: frequent page sequences worth defining as journeys (also the MCP tool
``pg.get_suggestions``).  One paths query (top paths after the entry page view, :mod:`query_api.paths`),
the project's journeys from Postgres, then :func:`query_api.suggestions.suggest.suggest_journeys` (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from productgraph.admin import load_journeys
from query_api.context import QueryContext
from query_api.errors import InvalidInput
from query_api.paths import parse_paths_spec
from query_api.paths.service import paths
from query_api.suggestions.suggest import JourneySuggestion, suggest_journeys
from query_api.tenant_scope import Tenant
from schemas.matchers import MatcherError, parse_matcher

__all__ = ["SuggestionsQuery", "journey_suggestions"]

_DEPTH = 5
_CANDIDATES = 100


@strawberry.type
class SuggestedJourney:
    name: str
    pages: list[str]
    steps: JSON = strawberry.field(description="the steps as matchers, ready for createJourney")
    sessions: int = strawberry.field(description="session segments that took this path after their entry page")
    share: float = strawberry.field(description="sessions / segments with an entry page view (6 decimals)")


async def journey_suggestions(ctx: QueryContext, tenant: Tenant, days: int, limit: int) -> list[JourneySuggestion]:
    if not 1 <= days <= 90:
        raise InvalidInput("days: must be between 1 and 90")
    if not 1 <= limit <= 20:
        raise InvalidInput("limit: must be between 1 and 20")
    now = datetime.now(UTC)
    spec = parse_paths_spec(
        step={"event_type": "page.view"}, direction="AFTER", depth=_DEPTH, limit=_CANDIDATES, node="PAGE",
        date_from=now - timedelta(days=days), date_to=now, now=now,
    )  # fmt: skip
    result = await paths(ctx, tenant, spec)
    journeys = []
    for j in await load_journeys(ctx.pool, tenant.org_id, tenant.project_id):
        try:
            journeys.append([parse_matcher(s.matcher) for s in j.steps])
        except MatcherError:
            continue
    return suggest_journeys(((p.nodes, p.count) for p in result.paths), result.total, journeys, limit)


@strawberry.type
class SuggestionsQuery:
    @strawberry.field(
        description="Journeys worth defining: the most frequent page sequences after a session's entry page "
        "over the last `days` (1-90), not already covered by an active journey of exact page steps."
    )
    async def journey_suggestions(
        self, info: Info[QueryContext, None], project_id: strawberry.ID, days: int = 30, limit: int = 5
    ) -> list[SuggestedJourney]:
        tenant = await info.context.tenant(str(project_id))
        found = await journey_suggestions(info.context, tenant, days, limit)
        return [
            SuggestedJourney(name=s.name, pages=list(s.pages), steps=JSON(s.steps()), sessions=s.sessions,
                             share=s.share)
            for s in found
        ]  # fmt: skip
