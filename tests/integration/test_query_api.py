"""GraphQL over real ClickHouse, Redis and Postgres: counts, sessions, and the tenant boundary."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from productgraph.connections import clickhouse_client
from query_api.app import create_app
from query_api.settings import QueryApiSettings
from schemas.ingest import IngestContext, validate_event
from schemas.records import EventRecord
from stream_processors.sinks import ClickHouseEventSink
from tests.conftest import Servers

pytestmark = pytest.mark.integration

# Yesterday 10:00 UTC: inside the events table's retention TTL whatever day the suite runs.
DAY = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
NEXT_DAY = (datetime.now(UTC)).strftime("%Y-%m-%d")
T0 = int(datetime.fromisoformat(f"{DAY}T10:00:00+00:00").timestamp() * 1000)


@pytest.fixture
async def api(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    settings = QueryApiSettings(
        clickhouse_url=servers.clickhouse_url, postgres_dsn=servers.postgres_dsn, redis_url=servers.redis_url
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


async def _store(servers: Servers, tenant: dict[str, str], n: int, session: str) -> None:
    ctx = IngestContext(tenant["org_id"], tenant["project_id"], tenant["project_slug"], T0 + 10_000)
    sink = ClickHouseEventSink(clickhouse_client(servers.clickhouse_url))
    for i in range(n):
        raw = {"event_id": f"{session}-{i}", "project_id": tenant["project_id"], "session.id": session,
               "event.type": "page.view" if i % 2 == 0 else "ui.click",
               "event.timestamp": f"{DAY}T10:00:0{i}Z"}  # fmt: skip
        rec = validate_event(i, raw, ctx)
        assert isinstance(rec, EventRecord)
        sink.add(rec)
        sink.add(rec)  # stored twice, counted once
    await sink.flush()


async def _gql(client: httpx.AsyncClient, token: str, query: str) -> dict[str, Any]:
    resp = await client.post("/graphql", json={"query": query}, headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_counts_sessions_and_tenant_boundary(
    api: httpx.AsyncClient, servers: Servers, tenant: dict[str, str]
) -> None:
    from productgraph.admin import bootstrap_org

    other = bootstrap_org(servers.postgres_dsn, "Other", f"o{tenant['project_slug']}", "Other", "other")
    await _store(servers, tenant, 5, "sess-a")
    rng = f'from: "{DAY}T00:00:00Z", to: "{NEXT_DAY}T00:00:00Z"'
    q = f'{{ events(projectId: "{tenant["project_id"]}", {rng}) {{ total byType {{ eventType count }} }} }}'
    body = await _gql(api, tenant["admin_token"], q)
    assert body["data"]["events"] == {
        "total": 5,
        "byType": [{"eventType": "page.view", "count": 3}, {"eventType": "ui.click", "count": 2}],
    }
    by_slug = await _gql(api, tenant["admin_token"], q.replace(tenant["project_id"], tenant["project_slug"]))
    assert by_slug["data"]["events"]["total"] == 5

    s = await _gql(
        api,
        tenant["admin_token"],
        f'{{ session(projectId: "{tenant["project_id"]}", sessionId: "sess-a") '
        "{ eventCount startedAt endedAt durationMs } }",
    )
    assert s["data"]["session"] == {
        "eventCount": 5,
        "startedAt": f"{DAY}T10:00:00+00:00",
        "endedAt": f"{DAY}T10:00:04+00:00",
        "durationMs": 4000,
    }

    # The other org's token: the project does not exist for it, same answer as a made-up id.
    foreign = await _gql(api, other.admin_token, q)
    made_up = await _gql(
        api, other.admin_token, q.replace(tenant["project_id"], "00000000-0000-0000-0000-000000000000")
    )
    assert foreign["data"] is None and made_up["data"] is None
    assert foreign["errors"][0]["message"].replace(tenant["project_id"], "X") == made_up["errors"][0][
        "message"
    ].replace("00000000-0000-0000-0000-000000000000", "X")
    projects = await _gql(api, other.admin_token, "{ projects { id slug } }")
    assert projects["data"]["projects"] == [{"id": other.project_id, "slug": "other"}]


async def test_auth_required(api: httpx.AsyncClient) -> None:
    assert (await api.post("/graphql", json={"query": "{ projects { id } }"})).status_code == 401
    bad = await api.post("/graphql", json={"query": "{ projects { id } }"}, headers={"Authorization": "Bearer pgt_x"})
    assert bad.status_code == 401
    page = await api.get("/graphql", headers={"Accept": "text/html"})
    assert page.status_code == 200 and "graphiql" in page.text.lower()
