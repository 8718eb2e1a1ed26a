"""The MCP server through the official client, in-process: same numbers as GraphQL, org-scoped."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from mcp import Client

from productgraph.admin import bootstrap_org
from query_api.app import create_app
from query_api.mcp_server import Backends, build_mcp_server
from query_api.settings import QueryApiSettings
from schemas.ingest import IngestContext, validate_event
from schemas.records import EventRecord
from stream_processors.sinks import ClickHouseEventSink
from tests.conftest import Servers
from tests.integration.test_query_api import DAY, NEXT_DAY, T0

pytestmark = pytest.mark.integration

SPEC = {
    "steps": [{"event_type": "page.view", "page_path": "/p0"}, {"event_type": "page.view", "page_path": "/p1"}],
    "count_by": "sessions",
    "date_from": f"{DAY}T00:00:00Z",
    "date_to": f"{NEXT_DAY}T00:00:00Z",
}


def _settings(s: Servers) -> QueryApiSettings:
    return QueryApiSettings(clickhouse_url=s.clickhouse_url, postgres_dsn=s.postgres_dsn, redis_url=s.redis_url)


def _payload(result: Any) -> dict[str, Any]:
    assert not result.is_error, result
    if result.structured_content is not None:
        return dict(result.structured_content.get("result", result.structured_content))
    return dict(json.loads(result.content[0].text))


async def test_tools_match_graphql_and_stay_in_the_org(servers: Servers, tenant: dict[str, str]) -> None:
    from productgraph.connections import clickhouse_client

    ctx = IngestContext(tenant["org_id"], tenant["project_id"], tenant["project_slug"], T0 + 10_000)
    sink = ClickHouseEventSink(clickhouse_client(servers.clickhouse_url))
    rows = [("mcp-s", i, f"/p{i % 3}") for i in range(7)] + [("mcp-t", 0, "/p0")]  # mcp-t stops after /p0
    for session, i, path in rows:
        raw = {"event_id": f"m-{session}-{i}", "project_id": tenant["project_id"], "session.id": session,
               "event.type": "page.view", "event.timestamp": f"{DAY}T10:00:0{i}Z", "page.path": path}  # fmt: skip
        rec = validate_event(i, raw, ctx)
        assert isinstance(rec, EventRecord)
        sink.add(rec)
    await sink.flush()

    backends = Backends(_settings(servers))
    try:
        async with Client(build_mcp_server(backends, stdio_token=tenant["admin_token"])) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            assert {
                "pg.get_session", "pg.search_sessions", "pg.count_events", "pg.list_projects", "pg.get_live_metrics"
            } <= names  # fmt: skip
            via_mcp = _payload(
                await client.call_tool("pg.get_session", {"project_id": tenant["project_slug"], "session_id": "mcp-s"})
            )
            day = {"date_from": f"{DAY}T00:00:00Z", "date_to": f"{NEXT_DAY}T00:00:00Z"}
            counts = _payload(await client.call_tool("pg.count_events", {"project_id": tenant["project_id"], **day}))
            funnel = _payload(
                await client.call_tool("pg.run_funnel", {"project_id": tenant["project_id"], "spec": SPEC})
            )
            journeys = _payload(await client.call_tool("pg.list_journeys", {"project_id": tenant["project_id"]}))
            page2 = _payload(
                await client.call_tool(
                    "pg.get_session",
                    {"project_id": tenant["project_id"], "session_id": "mcp-s", "first": 3,
                     "after": via_mcp["sessionReplay"]["events"]["pageInfo"]["endCursor"]},
                )
            )  # fmt: skip
            live = _payload(await client.call_tool("pg.get_live_metrics", {"project_id": tenant["project_id"]}))
        other = bootstrap_org(servers.postgres_dsn, "MCP other", f"m{tenant['project_slug']}", "x", "x")
        async with Client(build_mcp_server(backends, stdio_token=other.admin_token)) as client:
            foreign = await client.call_tool(
                "pg.get_session", {"project_id": tenant["project_id"], "session_id": "mcp-s"}
            )
            assert foreign.is_error and "not found" in foreign.content[0].text
        async with Client(build_mcp_server(backends, stdio_token="pgt_wrong")) as client:
            denied = await client.call_tool("pg.list_projects", {})
            assert denied.is_error and "unauthenticated" in denied.content[0].text
    finally:
        await backends.close()

    app = create_app(_settings(servers))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        from query_api.mcp_server import _SESSION

        resp = await http.post(
            "/graphql",
            json={"query": _SESSION, "variables": {"p": tenant["project_slug"], "s": "mcp-s", "first": 100}},
            headers={"Authorization": f"Bearer {tenant['admin_token']}"},
        )
        fq = (
            "query($p: ID!, $spec: JSON!) { funnel(projectId: $p, spec: $spec) { mode countBy steps { step count "
            "conversionFromFirst conversionFromPrevious dropOff medianMsFromPrevious meanMsFromPrevious "
            "medianMsFromFirst meanMsFromFirst converted { entityId sessionId } dropped { entityId sessionId } } "
            "breakdown { value } breakdownTruncated } }"
        )
        via_graphql = await http.post(
            "/graphql",
            json={"query": fq, "variables": {"p": tenant["project_id"], "spec": SPEC}},
            headers={"Authorization": f"Bearer {tenant['admin_token']}"},
        )
    assert via_mcp == resp.json()["data"]
    replay = via_mcp["sessionReplay"]["events"]
    assert [e["eventId"] for e in replay["nodes"]] == [f"m-mcp-s-{i}" for i in range(7)]
    assert [e["eventId"] for e in page2["sessionReplay"]["events"]["nodes"]] == []  # all 7 fit the first page
    assert [t["to"] for t in via_mcp["sessionReplay"]["pageTransitions"]] == [f"/p{i % 3}" for i in range(7)]
    assert counts["events"]["total"] == 8
    assert (
        live["liveMetrics"]["projectId"] == tenant["project_id"] and len(live["liveMetrics"]["eventsPerMinute"]) == 60
    )
    assert journeys == {"journeys": []}
    # Hand-computed: both sessions reach /p0; only mcp-s reaches /p1, one second later.
    g = via_graphql.json()["data"]["funnel"]
    steps = [{k: v for k, v in st.items() if k != "name"} for st in funnel["funnel"]["steps"]]
    assert steps == g["steps"]
    assert [(st["count"], st["dropOff"], st["conversionFromFirst"]) for st in steps] == [(2, 0, 1.0), (1, 1, 0.5)]
    assert steps[1]["medianMsFromPrevious"] == 1000 and steps[1]["dropped"][0]["sessionId"] == "mcp-t"
