"""Journeys through a real sessions runner: journeys and the project's session timeout in Postgres (RLS),
events through Kafka, ``journey_sessions`` and the journey fields of ``sessions`` in ClickHouse, the
metrics query on them, the real-time counters in Redis, and a journey added while the runner runs."""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Mapping
from typing import Any

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from clickhouse_connect.driver.query import QueryResult
from mcp import Client as McpClient
from psycopg.types.json import Jsonb

from productgraph.connections import clickhouse_client
from productgraph.db import tenant_transaction_sync
from query_api.app import create_app
from query_api.journeys.metrics import journey_metrics
from query_api.mcp_server import _JOURNEY_FUNNEL, Backends, build_mcp_server
from query_api.settings import QueryApiSettings
from query_api.tenant_scope import Tenant, scoped_query
from schemas.sessions import active_sessions_key, active_users_key, epm_key, journey_step_key, minute_of
from stream_processors.sessionize import MINUTE_MS
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    T0,
    own_topic,
    produce,
    record,
    session_rows,
    settings_for,
    start_runner,
    stop_runner,
    wait_for,
)

pytestmark = pytest.mark.integration


def add_journey(dsn: str, org: str, project: str, name: str, paths: list[str], timeout_minutes: int = 30) -> str:
    with psycopg.connect(dsn, autocommit=True) as conn, tenant_transaction_sync(conn, org):
        row = conn.execute(
            "INSERT INTO journeys (org_id, project_id, name, timeout_minutes) VALUES (%s, %s, %s, %s) RETURNING id",
            (org, project, name, timeout_minutes),
        ).fetchone()
        assert row is not None
        for position, path in enumerate(paths, start=1):
            conn.execute(
                "INSERT INTO journey_steps (org_id, journey_id, position, name, matcher) VALUES (%s, %s, %s, %s, %s)",
                (org, row[0], position, path, Jsonb({"page_path": path})),
            )
        return str(row[0])


def set_timeout(dsn: str, org: str, project: str, minutes: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn, tenant_transaction_sync(conn, org):
        conn.execute(
            "UPDATE projects SET settings = %s WHERE id = %s", (Jsonb({"session_timeout_minutes": minutes}), project)
        )


async def _journey_funnel_through_api(
    servers: Servers, token: str, journey_id: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    settings = QueryApiSettings(
        clickhouse_url=servers.clickhouse_url, postgres_dsn=servers.postgres_dsn, redis_url=servers.redis_url
    )
    app = create_app(settings)
    variables = {"id": journey_id, "dropped": 10}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http,
    ):
        resp = await http.post(
            "/graphql", json={"query": _JOURNEY_FUNNEL, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert resp.status_code == 200 and "errors" not in resp.json(), resp.text
    backends = Backends(settings)
    try:
        async with McpClient(build_mcp_server(backends, stdio_token=token)) as client:
            result = await client.call_tool("pg.get_drop_offs", {"journey_id": journey_id, "per_step": 10})
            assert not result.is_error, result
            payload = result.structured_content or json.loads(result.content[0].text)
            via_mcp = dict(payload.get("result", payload))
    finally:
        await backends.close()
    return dict(resp.json()["data"]), via_mcp


def journey_rows(clickhouse_url: str, project: str) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """(journey, session, segment) -> (status as of now, steps_reached, step minutes after T0); the stored
    status of a session's newest segment is pending, read as bounced/dropped once closes_at passed."""
    ch = clickhouse_client(clickhouse_url)
    try:
        result = ch.query(
            "SELECT journey_id, session_id, segment, "
            "if(status = 'pending' AND closes_at < now64(3), if(steps_reached = 1, 'bounced', 'dropped'), status), "
            "steps_reached, "
            "arrayMap(t -> intDiv(toUnixTimestamp64Milli(t) - {t0:Int64}, 60000), step_times) "
            "FROM journey_sessions FINAL WHERE project_id = {p:UUID}",
            parameters={"p": project, "t0": T0},
        )
        return {(r[0], r[1], int(r[2])): (r[3], int(r[4]), tuple(r[5])) for r in result.result_rows}
    finally:
        ch.close()


async def test_journeys_rows_metrics_counters_and_a_journey_added_live(
    servers: Servers, tenant: dict[str, str]
) -> None:
    org, project = tenant["org_id"], tenant["project_id"]
    dsn = servers.postgres_dsn
    buy = add_journey(dsn, org, project, "buy", ["/cart", "/pay", "/done"])
    set_timeout(dsn, org, project, 10)  # the project's own session timeout: 10 minutes
    topic = await own_topic(servers.kafka_bootstrap)
    settings = settings_for(servers, postgres_dsn=dsn, project_config_refresh_s=1.0)
    r = functools.partial(record, org, project)
    now_min = (int(time.time() * 1000) - T0) / MINUTE_MS  # "minutes after T0" of now
    events = [
        r("c1", "conv", 0, "page.view", "/cart", user="u1"),
        r("c2", "conv", 1, "page.view", "/pay", user="u1"),
        r("c3", "conv", 3, "page.view", "/done", user="u1"),
        r("d1", "drop", 0, "page.view", "/cart"),
        r("d2", "drop", 4, "page.view", "/pay"),
        r("b1", "bounce", 0, "page.view", "/cart"),
        r("b2", "bounce", 2, "ui.click"),
        # continuous activity (gaps <= 10 min), no progress for more than 30 min after /cart: abandoned
        *(
            r(f"a{i}", "aband", m, "page.view", p)
            for i, (m, p) in enumerate([(0, "/cart"), (9, "/x"), (18, "/x"), (27, "/x"), (31, "/x")])
        ),
        # 15 min gap: two segments with the project's 10 min timeout (one with the default 30)
        r("s1", "split", 0, "page.view", "/home"),
        r("s2", "split", 15, "page.view", "/cart"),
        # late events: arrives after /done, belongs before it; equal timestamps ordered by sequence
        r("l1", "late", 0, "page.view", "/cart"),
        r("l3", "late", 5, "page.view", "/done"),
        r("t1", "tie", 0, "page.view", "/cart"),
        r("t3", "tie", 1, "page.view", "/done", seq=2),
        r("t2", "tie", 1, "page.view", "/pay", seq=1),
        # now: an open session, and the counters' window
        r("n1", "live", now_min - 1, "page.view", "/cart", user="u-live"),
        r("n2", "live", now_min, "page.view", "/pay", user="u-live"),
    ]
    await produce(servers.kafka_bootstrap, topic, events)
    runner, task = await start_runner("sessions", settings, topic)
    try:
        expected = {
            (buy, "conv", 1): ("converted", 3, (0, 1, 3)),
            (buy, "drop", 1): ("dropped", 2, (0, 4)),
            (buy, "bounce", 1): ("bounced", 1, (0,)),
            (buy, "aband", 1): ("abandoned", 1, (0,)),
            (buy, "split", 2): ("bounced", 1, (15,)),
            (buy, "late", 1): ("converted", 3, (0, 2, 5)),
            (buy, "tie", 1): ("converted", 3, (0, 1, 1)),
        }

        async def old_rows_without_late() -> bool:
            rows = journey_rows(servers.clickhouse_url, project)
            return len(rows) == 8 and rows[(buy, "late", 1)][:2] == ("bounced", 1)

        await wait_for(old_rows_without_late, what="the journey rows")
        await produce(servers.kafka_bootstrap, topic, [r("l2", "late", 2, "page.view", "/pay")])

        async def final_rows() -> bool:
            rows = journey_rows(servers.clickhouse_url, project)
            return {k: v for k, v in rows.items() if k[1] != "live"} == expected and (buy, "live", 1) in rows

        await wait_for(final_rows, what="the final journey rows")
        assert journey_rows(servers.clickhouse_url, project)[(buy, "live", 1)][:2] == ("pending", 2)
        sessions = session_rows(servers.clickhouse_url, project)
        assert ("split", 1) in sessions and ("split", 2) in sessions, "the project's 10 min timeout cut the session"

        ch = clickhouse_client(servers.clickhouse_url)
        try:
            fields = ch.query(
                "SELECT session_id, journey_id, conversion_status FROM sessions FINAL WHERE project_id = {p:UUID} "
                "AND segment = 1",
                parameters={"p": project},
            ).result_rows
            assert {s: (j, c) for s, j, c in fields}["conv"] == (buy, "converted")

            async def query(tenant_: Tenant, sql: str, params: Mapping[str, Any] | None = None) -> QueryResult:
                return await scoped_query(ch, tenant_, sql, params)

            m = await journey_metrics(query, Tenant(org, project), buy, [1, 2, 3], now_ms=int(time.time() * 1000))
        finally:
            ch.close()
        # 8 rows: conv, late, tie converted; drop dropped; bounce, split bounced; aband abandoned; live pending
        assert (m.total_sessions, m.converted_sessions, m.conversion_rate) == (8, 3, 0.375)
        assert m.by_status == {"pending": 1, "converted": 3, "bounced": 2, "dropped": 1, "abandoned": 1}
        assert m.avg_duration_ms == (3 + 5 + 1) * MINUTE_MS / 3
        assert [(s.reached, s.drop_off) for s in m.steps] == [(8, 0), (5, 3), (3, 2)]

        # The same numbers through GraphQL (journeyFunnel) and the MCP tools, with the sessions that stopped.
        via_api, via_mcp = await _journey_funnel_through_api(servers, tenant["admin_token"], buy)
        assert via_mcp == via_api
        f = via_api["journeyFunnel"]
        assert (f["totalSessions"], f["convertedSessions"], f["conversionRate"]) == (8, 3, 0.375)
        assert {s["status"]: s["sessions"] for s in f["byStatus"]} == m.by_status
        assert [(s["reached"], s["dropOff"], s["conversionFromPrevious"]) for s in f["steps"]] == [
            (8, 0, 1.0), (5, 3, 0.625), (3, 2, 0.6)
        ]  # fmt: skip
        stopped = [sorted((d["sessionId"], d["segment"]) for d in s["dropped"]) for s in f["steps"]]
        assert stopped == [[("bounce", 1), ("split", 2)], [("drop", 1)], []]  # live is pending, aband abandoned

        # Redis: only the "live" session is within the counters' window (events of yesterday are not)
        redis = aioredis.from_url(servers.redis_url, decode_responses=True)
        try:
            n1, n2 = T0 + int((now_min - 1) * MINUTE_MS), T0 + int(now_min * MINUTE_MS)
            epm = {m_: await redis.get(epm_key(project, m_)) for m_ in {minute_of(n1), minute_of(n2)}}
            assert sum(int(v or 0) for v in epm.values()) == 2
            assert await redis.get(journey_step_key(project, buy, 1, minute_of(n1))) == "1"
            assert await redis.get(journey_step_key(project, buy, 2, minute_of(n2))) == "1"
            assert await redis.zrange(active_sessions_key(project), 0, -1, withscores=True) == [("live", n2)]
            assert await redis.zrange(active_users_key(project), 0, -1) == ["u-live"]
            assert await redis.get(epm_key(project, minute_of(T0))) is None, "yesterday is outside the window"

            # a journey added now is used within seconds (refresh 1 s + one batch)
            signup = add_journey(dsn, org, project, "signup", ["/signup"])
            added, picked = time.monotonic(), None
            for i in range(40):
                await produce(
                    servers.kafka_bootstrap, topic, [r(f"su{i}", f"signup{i}", now_min, "page.view", "/signup")]
                )
                await asyncio.sleep(0.5)
                rows = journey_rows(servers.clickhouse_url, project)
                if any(k[0] == signup for k in rows):
                    picked = time.monotonic() - added
                    break
            assert picked is not None and picked < 10, f"journey change not used after {picked}s"
            print(f"journey added in Postgres: used by the processor after {picked:.1f}s")
            step_keys = [k async for k in redis.scan_iter(match=f"rt:{project}:journey:{signup}:step:1:*")]
            assert step_keys, "its live step counter moves too"
        finally:
            await redis.aclose()
    finally:
        await stop_runner(runner, task)
