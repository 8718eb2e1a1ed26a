"""Shared fixtures and helpers of the admin, tenancy and isolation tests (this module holds no tests).

``world`` builds two organisations that share nothing, each with every kind of row (projects, keys,
members, tokens, catalog, journeys, saved funnels and cohorts, audit, ClickHouse events, a live Redis
session), all through the GraphQL API with the org's owner token.  Names of org B carry ``B_MARK`` so
that any leak into org A's answers is easy to spot.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from productgraph.admin import bootstrap_org
from productgraph.connections import clickhouse_client
from query_api.app import create_app
from query_api.settings import QueryApiSettings
from schemas.ingest import IngestContext, validate_event
from schemas.records import EventRecord
from stream_processors.sinks import ClickHouseEventSink
from tests.conftest import Servers

pytestmark = pytest.mark.integration

B_MARK = "bmark9z"
SHARED_SESSION = "shared-session"
# Yesterday 10:00 UTC: recent, so that the events table's 365-day TTL never drops the test data.
DAY = (datetime.now(UTC) - timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
T0_MS = int(DAY.timestamp() * 1000) + 10 * 3_600_000
RANGE = f'from: "{DAY.isoformat()}", to: "{(DAY + timedelta(days=1)).isoformat()}"'


async def gql(client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    """The whole GraphQL answer (``data`` and ``errors``); HTTP must be 200.  The body is ASCII JSON, so even
    lone surrogates travel as ``\\ud800`` escapes, as a hostile client would send them."""
    body = json.dumps({"query": query, "variables": variables or {}})
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    resp = await client.post("/graphql", content=body, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def ok(client: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any] | None = None) -> Any:
    """``data`` of an answer that must have no errors."""
    body = await gql(client, token, query, variables)
    assert not body.get("errors"), body["errors"]
    return body["data"]


def error_of(body: Any) -> str:
    assert body.get("errors"), body
    return str(body["errors"][0]["message"])


@pytest.fixture(scope="session")
async def admin_api(servers: Servers) -> AsyncIterator[httpx.AsyncClient]:
    settings = QueryApiSettings(
        clickhouse_url=servers.clickhouse_url,
        postgres_dsn=servers.postgres_dsn,
        redis_url=servers.redis_url,
        token_cache_ttl_s=0.0,  # role changes and revocations are seen at once in these tests
        query_rate_limit_per_s=0,  # the sweeps send hundreds of requests per token (limit: test_guards.py)
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client,
    ):
        yield client


@dataclass
class Org:
    """One organisation of the world and the ids of everything it has."""

    org_id: str
    project_id: str
    project_slug: str
    owner_token: str
    mark: str
    ids: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


INVITED = "member { id userId } accessToken { accessToken { id } secret }"
SETUP = """
mutation Setup($p: ID!, $name: String!, $slug: String!, $email: String!, $viewer: String!) {
  project: createProject(name: $name, slug: $slug, settings: {rateLimitPerS: 50, corsOrigins: ["https://a.test"]})
    { id }
  key: createApiKey(projectId: $p, name: $name) { apiKey { id } secret }
  analyst: inviteMember(email: $email, role: "analyst", name: $name) { INVITED }
  viewer: inviteMember(email: $viewer, role: "viewer", name: $name) { INVITED }
  service: createAccessToken(name: $name, role: "viewer", expiresInDays: 30) { accessToken { id } secret }
  capability: createCapability(projectId: $p, name: $name, description: $name) { id }
}
""".replace("INVITED", INVITED)
SETUP2 = """
mutation Setup2($cap: ID!, $name: String!) {
  feature: createFeature(capabilityId: $cap, name: $name, adminPath: "/admin",
                         documentation: [{label: "d", url: "https://d"}]) { id }
}
"""
SETUP3 = """
mutation Setup3($p: ID!, $f: ID!, $name: String!) {
  journey: defineJourney(projectId: $p, journey: {name: $name, featureId: $f, description: $name, steps: [
    {name: "landing", matcher: {event_type: "page.view", page_path: "/"}},
    {name: "signup", matcher: {event_type: "ui.submit", component: "signup-form"}}]}) { id steps { id } }
  funnel: saveFunnel(projectId: $p, name: $name, description: $name,
    definition: {steps: [{event_type: "page.view"}, {event_type: "ui.click"}]}) { id }
  cohort: saveCohort(projectId: $p, name: $name, description: $name,
    definition: {did_event: {event_type: "ui.click"}, min: 2}) { id }
}
"""


async def populate(client: httpx.AsyncClient, servers: Servers, mark: str) -> Org:
    slug = f"o{secrets.token_hex(4)}"  # without the mark: errors may echo a slug the caller sent
    b = bootstrap_org(servers.postgres_dsn, f"Org {mark}", slug, f"Project {mark}", slug)
    org = Org(b.org_id, b.project_id, b.project_slug, b.admin_token, mark)
    name = f"{mark} thing"
    emails = {"email": f"analyst@{slug}.test", "viewer": f"viewer@{slug}.test"}
    d = await ok(client, b.admin_token, SETUP, {"p": b.project_id, "name": name, "slug": f"{slug}-2", **emails})
    org.ids.update(
        project2=d["project"]["id"],
        api_key=d["key"]["apiKey"]["id"],
        analyst_member=d["analyst"]["member"]["id"],
        analyst_user=d["analyst"]["member"]["userId"],
        viewer_member=d["viewer"]["member"]["id"],
        viewer_user=d["viewer"]["member"]["userId"],
        analyst_token=d["analyst"]["accessToken"]["accessToken"]["id"],
        service_token=d["service"]["accessToken"]["id"],
        capability=d["capability"]["id"],
    )
    org.tokens.update(
        api_key=d["key"]["secret"],
        analyst=d["analyst"]["accessToken"]["secret"],
        viewer=d["viewer"]["accessToken"]["secret"],
        service=d["service"]["secret"],
    )
    d = await ok(client, b.admin_token, SETUP2, {"cap": org.ids["capability"], "name": name})
    org.ids["feature"] = d["feature"]["id"]
    d = await ok(client, b.admin_token, SETUP3, {"p": b.project_id, "f": org.ids["feature"], "name": name})
    org.ids.update(
        journey=d["journey"]["id"],
        journey_step=d["journey"]["steps"][0]["id"],
        funnel=d["funnel"]["id"],
        cohort=d["cohort"]["id"],
    )
    audit = await ok(client, b.admin_token, "{ auditLog(limit: 1) { id } }")
    org.ids["audit"] = audit["auditLog"][0]["id"]
    return org


async def store_events(servers: Servers, org: Org, n: int, session: str = SHARED_SESSION) -> None:
    ctx = IngestContext(org.org_id, org.project_id, org.project_slug, T0_MS + 60_000)
    sink = ClickHouseEventSink(clickhouse_client(servers.clickhouse_url))
    for i in range(n):
        raw = {"event_id": f"{org.mark}-{session}-{i}", "project_id": org.project_id, "session.id": session,
               "event.type": "page.view", "event.timestamp": f"{DAY.date().isoformat()}T10:00:{i:02d}Z",
               "page.path": f"/{org.mark}/{i}", "user.id": f"user-{org.mark}"}  # fmt: skip
        rec = validate_event(i, raw, ctx)
        assert isinstance(rec, EventRecord), rec
        sink.add(rec)
    await sink.flush()


async def store_live_session(servers: Servers, org: Org, events: int, session: str = SHARED_SESSION) -> None:
    """What the sessions processor keeps in Redis (same key layout: ``session:{project_id}:{session_id}``)."""
    r = aioredis.from_url(servers.redis_url)
    try:
        await r.hset(
            f"session:{org.project_id}:{session}",
            mapping={
                "event_count": events,
                "started_ms": T0_MS,
                "last_ms": T0_MS + 1000,
                "user_id": f"user-{org.mark}",
                "current_page": f"/{org.mark}",
            },
        )
        await r.expire(f"session:{org.project_id}:{session}", 3600)
    finally:
        await r.aclose()


def insert_aged_rows(servers: Servers, org_id: str, project_id: str, ages_days: list[float], tag: str) -> None:
    """One event and one session row per age (days before now) for a project, straight into ClickHouse."""
    ch = clickhouse_client(servers.clickhouse_url)
    now = datetime.now(UTC)
    try:
        events, sessions = [], []
        for i, age in enumerate(ages_days):
            ts = now - timedelta(days=age)
            events.append([org_id, project_id, f"{tag}-e{i}", f"{tag}-s{i}", "page.view", ts, ts])
            sessions.append([org_id, project_id, f"{tag}-s{i}", 1, 1, 0, ts, ts])
        ch.insert(
            "events",
            events,
            column_names=["org_id", "project_id", "event_id", "session_id", "event_type", "timestamp", "received_at"],
        )
        ch.insert(
            "sessions",
            sessions,
            column_names=["org_id", "project_id", "session_id", "segment", "version", "is_deleted", "started_at",
                          "ended_at"],
        )  # fmt: skip
    finally:
        ch.close()


def count_rows(servers: Servers, table: str, project_id: str) -> int:
    """Rows of a project in a ClickHouse table (no FINAL: deleted means gone, not merged away)."""
    ch = clickhouse_client(servers.clickhouse_url)
    try:
        rows = ch.query(f"SELECT count() FROM {table} WHERE project_id = {{p:UUID}}", parameters={"p": project_id})
        return int(rows.result_rows[0][0])
    finally:
        ch.close()


@dataclass
class World:
    a: Org
    b: Org


@pytest.fixture(scope="session")
async def world(admin_api: httpx.AsyncClient, servers: Servers) -> World:
    a = await populate(admin_api, servers, "amark4q")
    b = await populate(admin_api, servers, B_MARK)
    await store_events(servers, a, 3)
    await store_events(servers, b, 7)
    await store_live_session(servers, a, 3)
    await store_live_session(servers, b, 7)
    return World(a, b)


def tenant_tables(admin_dsn: str) -> list[str]:
    """Every table of the public schema except the migration ledger."""
    with psycopg.connect(admin_dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND c.relname <> 'schema_migrations' "
            "ORDER BY c.relname"
        ).fetchall()
    return [r[0] for r in rows]


def org_column(table: str) -> str:
    return "id" if table == "organizations" else "org_id"


def snapshot(admin_dsn: str, org_id: str) -> dict[str, list[Any]]:
    """Every row of one org in every table, as the schema owner sees it (to prove nothing changed)."""
    out: dict[str, list[Any]] = {}
    with psycopg.connect(admin_dsn) as conn:
        for table in tenant_tables(admin_dsn):
            col = org_column(table)
            rows = conn.execute(
                f"SELECT to_jsonb(t) FROM {table} t WHERE {col} = %s ORDER BY to_jsonb(t)::text", (org_id,)
            ).fetchall()
            out[table] = [r[0] for r in rows]
    return out
