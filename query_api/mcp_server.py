"""The MCP server for AI agents (official ``mcp`` SDK, stdio and streamable HTTP).

Every tool runs a GraphQL operation on the very schema the GraphQL API serves, with the same per-request
context, so an agent's numbers are identical to an analyst's by construction.  Auth: an org access token
(``pgt_...``), from ``PG_MCP_TOKEN`` for stdio, or the ``Authorization: Bearer`` header over HTTP (checked
by the SDK's bearer middleware through :class:`AccessTokenVerifier`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from psycopg_pool import AsyncConnectionPool

from productgraph.connections import clickhouse_client
from productgraph.db import TokenInfo, open_pool, resolve_access_token
from query_api.context import QueryContext
from query_api.schema import schema
from query_api.settings import QueryApiSettings

__all__ = ["AccessTokenVerifier", "Backends", "build_mcp_server"]


class Backends:
    """Connections shared by every tool call (opened on first use)."""

    def __init__(self, settings: QueryApiSettings) -> None:
        self.settings = settings
        self.pool: AsyncConnectionPool = open_pool(settings.postgres_dsn, min_size=1, max_size=4)
        self.redis = aioredis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)
        self._ch: Client | None = None
        self._opened = False

    async def open(self) -> None:
        if not self._opened:
            await self.pool.open(wait=False)
            self._opened = True

    async def clickhouse(self) -> Client:
        if self._ch is None:
            s = self.settings
            self._ch = await asyncio.to_thread(
                clickhouse_client, s.clickhouse_url, compress=s.clickhouse_compress,
                max_execution_time=int(s.clickhouse_timeout_s),
            )  # fmt: skip
        return self._ch

    async def close(self) -> None:
        if self._opened:
            await self.pool.close()
        await self.redis.aclose()
        if self._ch is not None:
            self._ch.close()


class AccessTokenVerifier:
    """Bearer tokens of the query API: ``client_id`` carries the org, ``scopes`` the role."""

    def __init__(self, backends: Backends) -> None:
        self._backends = backends

    async def verify_token(self, token: str) -> AccessToken | None:
        await self._backends.open()
        info = await resolve_access_token(self._backends.pool, token)
        if info is None:
            return None
        return AccessToken(token=token, client_id=info.org_id, scopes=[info.role], subject=info.token_id)


_SEGMENT_FIELDS = (
    "sessionId segment startedAt endedAt durationMs entryPage exitPage pageViews uniquePages eventCount errorCount "
    "userId device browser os journeyId lastJourneyStepId conversionStatus replayLink"
)
_SESSION = f"""query($p: ID!, $s: String!, $seg: Int, $first: Int!, $after: String) {{
  session(projectId: $p, sessionId: $s) {{ live {{ eventCount startedAt lastEventAt userId currentPage }} }}
  sessionReplay(projectId: $p, sessionId: $s, segment: $seg, first: $first, after: $after) {{
    sessionId segment segments {{ {_SEGMENT_FIELDS} }}
    events {{ nodes {{ eventId type name page timestamp sequence attributes metadata
      stateDiff {{ key added {{ path oldValue newValue }} removed {{ path oldValue newValue }}
                  changed {{ path oldValue newValue }} truncated }} }}
      pageInfo {{ hasNextPage endCursor }} }}
    pageTransitions {{ from to at }} apiCalls {{ type at method path statusCode durationMs }}
    errors {{ at message type component page }} timelineTruncated }} }}"""
_SEARCH = f"""query($p: ID!, $f: SessionFilter, $first: Int!, $after: String) {{
  sessions(projectId: $p, filter: $f, first: $first, after: $after) {{
    nodes {{ {_SEGMENT_FIELDS} }} pageInfo {{ hasNextPage endCursor }} totalCount }} }}"""
_EVENTS = """query($p: ID!, $from: DateTime, $to: DateTime) {
  events(projectId: $p, from: $from, to: $to) { total byType { eventType count } } }"""
_PROJECTS = "{ projects { id name slug } }"
_JOURNEY_FIELDS = (
    "id projectId name description timeoutMinutes isActive version steps { position name matcher isRequired }"
)
_JOURNEYS = (
    f"query($p: ID!, $all: Boolean!) {{ journeys(projectId: $p, includeInactive: $all) {{ {_JOURNEY_FIELDS} }} }}"
)
_JOURNEY = f"query($id: ID!) {{ journey(id: $id) {{ {_JOURNEY_FIELDS} }} }}"
_STEP_FIELDS = (
    "step name count conversionFromFirst conversionFromPrevious dropOff medianMsFromPrevious meanMsFromPrevious "
    "medianMsFromFirst meanMsFromFirst converted { entityId sessionId } dropped { entityId sessionId }"
)
_FUNNEL = (
    f"query($p: ID!, $spec: JSON!, $cohort: ID) {{ funnel(projectId: $p, spec: $spec, cohortId: $cohort) {{ "
    f"mode countBy steps {{ {_STEP_FIELDS} }} "
    f"breakdown {{ value steps {{ {_STEP_FIELDS} }} }} breakdownTruncated }} }}"
)
_LIVE = """query($p: ID!) { liveMetrics(projectId: $p) { projectId at activeSessions activeUsers eventsLastHour
  eventsPerMinute { minute count } journeys { journeyId name steps { position name entriesLast5Minutes
  entriesLastHour } } } }"""
_SUGGESTIONS = """query($p: ID!, $days: Int!, $limit: Int!) {
  journeySuggestions(projectId: $p, days: $days, limit: $limit) { name pages steps sessions share } }"""
_RETENTION = """query($p: ID!, $period: RetentionPeriod!, $periods: Int, $start: JSON, $ret: JSON, $from: DateTime,
                 $to: DateTime, $cohort: ID) {
  retention(projectId: $p, period: $period, periods: $periods, startEvent: $start, returnEvent: $ret,
            dateFrom: $from, dateTo: $to, cohortId: $cohort) {
    period periods cohorts { start size cells { period count rate } } } }"""
_JOURNEY_FUNNEL = """query($id: ID!, $from: DateTime, $to: DateTime, $dropped: Int!) {
  journeyFunnel(journeyId: $id, dateFrom: $from, dateTo: $to, droppedPerStep: $dropped) {
    journeyId projectId name totalSessions convertedSessions conversionRate avgDurationMs
    byStatus { status sessions }
    steps { position stepId name reached dropOff conversionFromFirst conversionFromPrevious
            dropped { sessionId segment enteredAt } } } }"""


def build_mcp_server(backends: Backends, *, stdio_token: str | None = None, http_url: str | None = None) -> MCPServer:
    """The server with every tool.  ``stdio_token`` authenticates a stdio session; ``http_url`` (the
    server's public URL) turns on bearer-token auth for streamable HTTP.  The caller closes ``backends``."""
    auth = verifier = None
    if http_url is not None:
        verifier = AccessTokenVerifier(backends)
        auth = AuthSettings(issuer_url=http_url, resource_server_url=http_url)
    server: MCPServer = MCPServer(
        name="productgraph",
        instructions="Product analytics of your organisation's projects: sessions, events, journeys, funnels.",
        token_verifier=verifier,
        auth=auth,
    )

    async def caller() -> TokenInfo:
        await backends.open()
        if stdio_token is not None:
            info = await resolve_access_token(backends.pool, stdio_token)
        else:
            access = get_access_token()
            info = None if access is None else await resolve_access_token(backends.pool, access.token)
        if info is None:
            raise ToolError("unauthenticated: set PG_MCP_TOKEN (stdio) or send Authorization: Bearer <token>")
        return info

    async def run(document: str, variables: dict[str, Any]) -> dict[str, Any]:
        ctx = QueryContext(
            await caller(), backends.pool, await backends.clickhouse(), backends.redis, backends.settings.limits()
        )
        result = await schema.execute(document, variable_values=variables, context_value=ctx)
        if result.errors:
            raise ToolError(result.errors[0].message)
        return dict(result.data or {})

    @server.tool(name="pg.list_projects", description="Projects of your organisation (id, name, slug).")
    async def list_projects() -> dict[str, Any]:
        return await run(_PROJECTS, {})

    @server.tool(
        name="pg.get_session",
        description="One session's replay, identical to GraphQL `sessionReplay` (+ live state): its segments, events "
        "in order with state diffs (one page of `first`; pass `after` = endCursor for the next), page transitions, "
        "API calls and errors. `segment` picks one segment (default: the whole session).",
    )
    async def get_session(
        project_id: str, session_id: str, segment: int | None = None, first: int = 100, after: str | None = None
    ) -> dict[str, Any]:
        return await run(_SESSION, {"p": project_id, "s": session_id, "seg": segment, "first": first, "after": after})

    @server.tool(
        name="pg.search_sessions",
        description="Search session segments, identical to GraphQL `sessions`. filter (all optional, AND): userId, "
        "page + pageMatch (EXACT|PREFIX), journeyId, journeyStatus (pending|converted|bounced|dropped|abandoned), "
        "hasError, minDurationMs, maxDurationMs, dateFrom, dateTo (RFC 3339; default last 7 days), text (actions, "
        "components, event names). Newest first; `first` per page (max 200), `after` = endCursor.",
    )
    async def search_sessions(
        project_id: str, filter: dict[str, Any] | None = None, first: int = 50, after: str | None = None
    ) -> dict[str, Any]:
        return await run(_SEARCH, {"p": project_id, "f": filter, "first": first, "after": after})

    @server.tool(
        name="pg.count_events",
        description="Event counts of a project in [from, to) (RFC 3339; default: the last 30 days), total and by type.",
    )
    async def count_events(project_id: str, date_from: str | None = None, date_to: str | None = None) -> dict[str, Any]:
        return await run(_EVENTS, {"p": project_id, "from": date_from, "to": date_to})

    @server.tool(name="pg.list_journeys", description="Journeys defined for a project, with their ordered steps.")
    async def list_journeys(project_id: str, include_inactive: bool = False) -> dict[str, Any]:
        return await run(_JOURNEYS, {"p": project_id, "all": include_inactive})

    @server.tool(name="pg.get_journey", description="One journey by id, with its ordered steps and matchers.")
    async def get_journey(journey_id: str) -> dict[str, Any]:
        return await run(_JOURNEY, {"id": journey_id})

    @server.tool(
        name="pg.run_funnel",
        description=(
            "An ad-hoc funnel, identical to GraphQL `funnel`. spec: {steps: [matcher | {matcher, window_ms, name}] "
            "(2-50), mode: ordered|strict|any_order, count_by: users|sessions|totals, window_ms, exclusions: "
            "[{matcher, after_step}], breakdown: {property, attribution}, date_from, date_to}. A matcher is e.g. "
            '{"event_type": "page.view", "page_path": "/checkout/*", "page_path_mode": "glob"}. cohort_id: only '
            "persons of that saved cohort."
        ),
    )
    async def run_funnel(project_id: str, spec: dict[str, Any], cohort_id: str | None = None) -> dict[str, Any]:
        return await run(_FUNNEL, {"p": project_id, "spec": spec, "cohort": cohort_id})

    @server.tool(
        name="pg.get_live_metrics",
        description="Real-time numbers of a project: active sessions and users (last 5 min), events per minute "
        "(last 60 min), live journey step entries. Identical to GraphQL `liveMetrics`.",
    )
    async def get_live_metrics(project_id: str) -> dict[str, Any]:
        return await run(_LIVE, {"p": project_id})

    @server.tool(
        name="pg.get_suggestions",
        description="Journeys worth defining, identical to GraphQL `journeySuggestions`: the most frequent page "
        "sequences after a session's entry page over the last `days` (1-90), not covered by an existing journey; "
        "each with ready-to-use steps (matchers), sessions and share.",
    )
    async def get_suggestions(project_id: str, days: int = 30, limit: int = 5) -> dict[str, Any]:
        return await run(_SUGGESTIONS, {"p": project_id, "days": days, "limit": limit})

    @server.tool(
        name="pg.get_retention",
        description="Retention triangle, identical to GraphQL `retention`: cohorts by first start event per "
        "period (DAY|WEEK|MONTH), share returning (return event) in each of `periods` later periods. start_event / "
        "return_event are matchers (default any event); date_from / date_to RFC 3339; cohort_id a saved cohort.",
    )
    async def get_retention(
        project_id: str,
        period: str = "DAY",
        periods: int | None = None,
        start_event: dict[str, Any] | None = None,
        return_event: dict[str, Any] | None = None,
        date_from: str | None = None,
        date_to: str | None = None,
        cohort_id: str | None = None,
    ) -> dict[str, Any]:
        variables = {"p": project_id, "period": period, "periods": periods, "start": start_event, "ret": return_event,
                     "from": date_from, "to": date_to, "cohort": cohort_id}  # fmt: skip
        return await run(_RETENTION, variables)

    @server.tool(
        name="pg.get_funnel",
        description="A defined journey's funnel from the processors' rollups, identical to GraphQL `journeyFunnel`: "
        "sessions entering it, converted, conversion rate, mean time to convert, sessions per status (pending, "
        "converted, bounced, dropped, abandoned) and per-step reach, drop-off and conversion. date_from / date_to "
        "(RFC 3339) bound when attempts entered step 1 (default: the last 30 days).",
    )
    async def get_funnel(journey_id: str, date_from: str | None = None, date_to: str | None = None) -> dict[str, Any]:
        return await run(_JOURNEY_FUNNEL, {"id": journey_id, "from": date_from, "to": date_to, "dropped": 0})

    @server.tool(
        name="pg.get_drop_offs",
        description="Where sessions leave a journey: per step the drop-off and the newest sessions that stopped "
        "there (session id + segment, for pg.get_session), up to `per_step` (1-100) each. Same numbers as "
        "pg.get_funnel and GraphQL `journeyFunnel`.",
    )
    async def get_drop_offs(
        journey_id: str, per_step: int = 10, date_from: str | None = None, date_to: str | None = None
    ) -> dict[str, Any]:
        return await run(_JOURNEY_FUNNEL, {"id": journey_id, "from": date_from, "to": date_to, "dropped": per_step})

    return server
