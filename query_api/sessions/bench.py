"""Session search and replay timing over generated data (what the issue's "session replay p95" measures).

Events come from :func:`query_api.funnels.bench.load_events` (sessions of ten events over 30 days);
:func:`derive_sessions` then writes one ``sessions`` row per session with one ``INSERT ... SELECT`` (what
the sessionizer would store for sessions without gaps).  :func:`time_queries` runs, ``repeat`` times each,
a replay of random sessions (whole session, one segment) and searches (default range; page filter; text
filter), through the same plain functions the GraphQL fields and MCP tools call, and reports p50/p95 in ms.
``python -m query_api.sessions.bench --url http://default:@127.0.0.1:8123/db`` prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.query import QueryResult

from query_api.funnels.bench import load_events
from query_api.sessions.model import SessionFilter
from query_api.sessions.service import search_sessions, session_replay
from query_api.tenant_scope import Tenant, scoped_query

__all__ = ["ClientReader", "derive_sessions", "main", "time_queries"]

_DERIVE = """
INSERT INTO sessions (org_id, project_id, session_id, segment, version, is_deleted, started_at, ended_at,
                      duration_ms, entry_page, exit_page, page_views, unique_pages, event_count, error_count,
                      user_id, device, browser, os, journey_id, last_journey_step_id, conversion_status)
SELECT org_id, project_id, session_id, 1, 1, 0, min(timestamp), max(timestamp),
       toUInt64(toUnixTimestamp64Milli(max(timestamp)) - toUnixTimestamp64Milli(min(timestamp))),
       argMin(page_path, timestamp), argMax(page_path, timestamp), 0, uniqExact(page_path), count(),
       countIf(event_type = 'error'), argMax(user_id, timestamp), '', '', '', '', '',
       if(cityHash64(session_id) % 4 = 0, 'converted', '')
FROM events WHERE org_id = {org:UUID} AND project_id = {project:UUID}
GROUP BY org_id, project_id, session_id
"""


class ClientReader:
    """A :class:`~query_api.sessions.service.Reader` over a bare client (what ``QueryContext.query`` does)."""

    def __init__(self, ch: Client) -> None:
        self.ch = ch

    async def query(
        self,
        tenant: Tenant,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> QueryResult:
        return await scoped_query(self.ch, tenant, sql, params, settings)


def derive_sessions(ch: Client, tenant: Tenant) -> None:
    ch.command(_DERIVE, parameters={"org": tenant.org_id, "project": tenant.project_id})


async def _time(fn: Callable[[], Awaitable[object]], repeat: int) -> tuple[float, float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95


async def time_queries(ch: Client, tenant: Tenant, n_sessions: int, repeat: int = 30) -> list[tuple[str, float, float]]:
    reader = ClientReader(ch)
    rnd = random.Random(7)
    ids = [f"s{rnd.randrange(n_sessions)}" for _ in range(repeat)]
    it = iter(ids * 2)
    cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("replay whole session", lambda: session_replay(reader, tenant, next(it), None)),
        ("replay segment 1", lambda: session_replay(reader, tenant, next(it), 1)),
        ("search default 7 days", lambda: search_sessions(reader, tenant, SessionFilter())),
        ("search page /p/3", lambda: search_sessions(reader, tenant, SessionFilter(page="/p/3"))),
        ("search text 'step_9'", lambda: search_sessions(reader, tenant, SessionFilter(text="step_9"))),
        ("search status + total", lambda: search_sessions(
            reader, tenant, SessionFilter(journey_status="converted"), with_total=True)),
    ]  # fmt: skip
    return [(label, *await _time(fn, repeat)) for label, fn in cases]


def main(argv: Sequence[str] | None = None) -> None:
    from productgraph.connections import clickhouse_client

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="ClickHouse URL with database")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args(argv)
    ch = clickhouse_client(args.url)
    tenant = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=31)
    t0 = time.perf_counter()
    load_events(ch, tenant, args.events, start)
    derive_sessions(ch, tenant)
    print(f"loaded {args.events} events, {args.events // 10} sessions in {time.perf_counter() - t0:.1f} s")
    rows = asyncio.run(time_queries(ch, tenant, args.events // 10, args.repeat))
    print(f"{'query':<24} {'p50 ms':>8} {'p95 ms':>8}")
    for label, p50, p95 in rows:
        print(f"{label:<24} {p50:>8.1f} {p95:>8.1f}")


if __name__ == "__main__":
    main()
