"""``productgraph bench query``: a realistic synthetic dataset, then every query kind timed through the real
GraphQL API next to the same SQL run directly on ClickHouse, in the same run.

The dataset is generated inside ClickHouse (``INSERT ... SELECT FROM numbers(n)``), so 10 million events
load in seconds: sessions of 1-19 events, users skewed (a cube law: few heavy users, a long tail), pages
skewed over a shop's paths, timestamps spread over the last 30 days, strictly increasing within a
session.  It lands in a dedicated project of the demo org (``bench``), created once and reused.

Funnels: a 5-step page-view funnel over the last 30 days (the shop's checkout path), then the same kind of
funnel with 5, 10, 20 and 30 steps (page views cycling through the shop's paths) to show that answer time
grows at most linearly with steps.  Each runs through GraphQL (``funnel``) and as the evaluator's own SQL on
ClickHouse: a funnel chart's request (counts, rates, drop-offs) is answered by
:func:`query_api.funnels.sql.counts_query`, the 5-step funnel with times and entities too (the full answer)
by :func:`query_api.funnels.sql.aggregate_query`.  A last row times ClickHouse's native ``windowFunnel``
over the same events and steps (counts only, and not exact: ties and events matching several steps are
not handled as the rules say) as the engine's own floor for this question on this machine, SQL only.  The
report gives p50/p95/p99 of both paths, the API overhead and, for the series, time per step relative to
the 5-step funnel.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from productgraph.connections import clickhouse_client
from query_api.funnels.result import counts_from_levels
from query_api.funnels.spec import parse_funnel_spec
from query_api.funnels.sql import aggregate_query, counts_query
from query_api.tenant_scope import read_settings

__all__ = ["FUNNEL_STEP_SERIES", "funnel_spec", "load_dataset", "query"]

FUNNEL_STEP_SERIES = (5, 10, 20, 30)
_PACE_S = 0.07  # at most ~14 GraphQL requests/s
_SHOP_PATHS = ("/", "/products", "/products/42", "/cart", "/checkout/shipping", "/checkout/payment",
               "/checkout/done", "/search", "/account")  # fmt: skip

_DATASET_SQL = """
INSERT INTO events (org_id, project_id, event_id, session_id, event_type, timestamp, received_at,
                    timestamp_filled, user_id, event_sequence, page_path, ui_component_name, api_status_code)
SELECT
    {org:UUID}, {project:UUID},
    concat('bench-', toString(number)),
    concat('bs-', toString(s)),
    arrayElement(['page.view', 'ui.click', 'ui.click', 'api.response', 'state.change', 'page.view', 'error'],
                 1 + (cityHash64(number, 1) % 7)),
    start_ts + toIntervalMillisecond(i * 7000 + cityHash64(number, 2) % 5000),
    start_ts + toIntervalMillisecond(i * 7000 + 6000),
    false,
    concat('u-', toString(toUInt64(pow((cityHash64(s, 3) % 1000000) / 1000000.0, 3) * {users:UInt64}))),
    i + 1,
    arrayElement(['/', '/products', '/products/42', '/cart', '/checkout/shipping', '/checkout/payment',
                  '/checkout/done', '/search', '/account'],
                 1 + toUInt64(pow((cityHash64(number, 4) % 1000) / 1000.0, 2) * 9)),
    arrayElement(['NavLink', 'PrimaryButton', 'ProductCard', 'SearchBox'], 1 + cityHash64(number, 5) % 4),
    if(cityHash64(number, 6) % 10 = 0, 500, 200)
FROM (
    SELECT number, intDiv(number, 10) AS s, number % 10 AS i,
           toDateTime64({start:DateTime64(3, 'UTC')}, 3)
               + toIntervalSecond(cityHash64(intDiv(number, 10)) % (30 * 86400)) AS start_ts
    FROM numbers({offset:UInt64}, {n:UInt64})
)
"""


def load_dataset(ch_url: str, org_id: str, project_id: str, events: int, say: Callable[[str], None]) -> float:
    """Insert ``events`` synthetic events (10 per session) in chunks; returns seconds taken."""
    ch = clickhouse_client(ch_url, max_execution_time=3600)
    have = int(
        ch.query("SELECT count() FROM events WHERE project_id = {p:UUID}", parameters={"p": project_id}).result_rows[0][
            0
        ]
    )
    started = time.perf_counter()
    chunk = 1_000_000
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 31 * 86400))
    for offset in range(have, events, chunk):
        n = min(chunk, events - offset)
        ch.command(_DATASET_SQL, parameters={"org": org_id, "project": project_id, "users": max(events // 50, 10),
                                             "start": start, "offset": offset, "n": n})  # fmt: skip
        say(f"  loaded {offset + n:,}/{events:,} events")
    if have < events:  # merge what was loaded (a rerun on a loaded dataset skips the rewrite)
        ch.command("OPTIMIZE TABLE events FINAL")
    ch.close()
    return time.perf_counter() - started


class _Mismatch(click.ClickException):
    """GraphQL and the direct SQL disagree: never recorded and skipped, the run stops."""


@dataclass
class QueryKind:
    name: str
    graphql: str
    sql: str
    params: dict[str, Any]
    variables: dict[str, Any] | None = None
    settings: dict[str, Any] | None = None  # funnels: the evaluator's query settings
    steps: int | None = None  # funnels: the step count (the scaling series)
    direct: Callable[[], Any] | None = None  # instead of ``sql``: the same read done directly (Redis kinds)
    counts: Callable[[Any], list[int]] | None = None  # funnels: per-step counts from the SQL rows


_JOURNEY_ROWS_SQL = """
INSERT INTO journey_sessions (org_id, project_id, journey_id, session_id, segment, version, is_deleted, status,
    steps_reached, step_count, last_step_position, last_step_id, entered_at, step_times, converted_at,
    duration_ms, attempts, closes_at)
SELECT {org:UUID}, {project:UUID}, {journey:String}, concat('bs-', toString(s)), 1, 1, 0,
       if(reached = 4, 'converted', if(reached = 1, 'bounced', 'dropped')), reached, 4, reached,
       {step_ids:Array(String)}[reached], start_ts, arrayMap(k -> start_ts + toIntervalSecond(k * 40), range(reached)),
       if(reached = 4, start_ts + toIntervalSecond(120), NULL), if(reached = 4, 120000, 0), 1,
       start_ts + toIntervalMinute(30)
FROM (
    SELECT number AS s, 1 + toUInt16(pow((cityHash64(number, 7) % 1000) / 1000.0, 2) * 4) AS reached,
           toDateTime64({start:DateTime64(3, 'UTC')}, 3)
               + toIntervalSecond(cityHash64(number) % (30 * 86400)) AS start_ts
    FROM numbers({sessions:UInt64})
    WHERE cityHash64(number, 8) % 3 = 0  -- a third of the sessions enter the journey
)
"""
_JOURNEY_STEPS = (("Cart", "/cart"), ("Shipping", "/checkout/shipping"), ("Payment", "/checkout/payment"),
                  ("Done", "/checkout/done"))  # fmt: skip


def load_journey(pg_dsn: str, ch_url: str, org_id: str, project_id: str, sessions: int) -> str:
    """The bench journey (Postgres) and its rollup rows (``journey_sessions``, as the processors write them
    for a third of the sessions), created once; returns the journey id."""
    import psycopg

    from productgraph.admin import create_journey
    from productgraph.db import tenant_transaction_sync

    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        with tenant_transaction_sync(conn, org_id):
            row = conn.execute(
                "SELECT id::text FROM journeys WHERE project_id = %s AND name = 'Bench checkout'", (project_id,)
            ).fetchone()
        steps = [(name, {"event_type": "page.view", "page_path": path}) for name, path in _JOURNEY_STEPS]
        journey_id = row[0] if row else create_journey(conn, org_id, project_id, "Bench checkout", steps)
        with tenant_transaction_sync(conn, org_id):
            step_ids = [str(r[0]) for r in conn.execute(
                "SELECT id FROM journey_steps WHERE journey_id = %s ORDER BY position", (journey_id,)
            ).fetchall()]  # fmt: skip
    ch = clickhouse_client(ch_url, max_execution_time=3600)
    have = int(ch.query("SELECT count() FROM journey_sessions WHERE project_id = {p:UUID} AND journey_id = {j:String}",
                        parameters={"p": project_id, "j": journey_id}).result_rows[0][0])  # fmt: skip
    if have == 0:
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(time.time() - 30 * 86400))
        params = {"org": org_id, "project": project_id, "journey": journey_id, "step_ids": step_ids,
                  "start": start, "sessions": sessions}  # fmt: skip
        ch.command(_JOURNEY_ROWS_SQL, parameters=params)
    ch.close()
    return journey_id


_SESSION_ROWS_SQL = """
INSERT INTO sessions (org_id, project_id, session_id, segment, version, is_deleted, started_at, ended_at,
    duration_ms, entry_page, exit_page, page_views, unique_pages, event_count, error_count, user_id, device, browser,
    os, journey_id, last_journey_step_id, conversion_status)
SELECT org_id, project_id, session_id, 1, 1, 0, min(timestamp), max(timestamp),
       toUInt64(dateDiff('millisecond', min(timestamp), max(timestamp))), argMin(page_path, timestamp),
       argMax(page_path, timestamp), toUInt32(countIf(event_type = 'page.view')), toUInt32(uniqExact(page_path)),
       toUInt32(count()), toUInt32(countIf(event_type = 'error')), any(user_id), '', '', '', '', '', ''
FROM events WHERE org_id = {org:UUID} AND project_id = {project:UUID}
GROUP BY org_id, project_id, session_id
"""


def load_sessions(ch_url: str, org_id: str, project_id: str) -> None:
    """The dataset's session rows (one segment each: its 10 events span minutes), as the sessionizer writes them,
    created once: replay and session search read them first."""
    ch = clickhouse_client(ch_url, max_execution_time=3600)
    have = ch.query("SELECT count() FROM sessions WHERE project_id = {p:UUID}", parameters={"p": project_id})
    if int(have.result_rows[0][0]) == 0:
        ch.command(_SESSION_ROWS_SQL, parameters={"org": org_id, "project": project_id})
    ch.close()


def load_live_counters(redis_url: str, project_id: str, journey_id: str) -> None:
    """Live counters as the sessions processor keeps them: the last hour of events per minute, 2,000 active
    sessions and 1,500 active users, step entries per minute of the bench journey."""
    import redis

    from schemas.sessions import active_sessions_key, active_users_key, epm_key, journey_step_key, minute_of

    now = int(time.time() * 1000)
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline(transaction=False)
    for m in range(minute_of(now) - 59, minute_of(now) + 1):
        pipe.set(epm_key(project_id, m), 5000 + m % 97, ex=7200)
        for position in range(1, len(_JOURNEY_STEPS) + 1):
            pipe.set(journey_step_key(project_id, journey_id, position, m), 400 // position, ex=7200)
    pipe.zadd(active_sessions_key(project_id), {f"bs-{i}": now - i * 100 for i in range(2000)})
    pipe.zadd(active_users_key(project_id), {f"u-{i}": now - i * 150 for i in range(1500)})
    pipe.execute()
    r.close()


def _live_direct(redis_url: str, org_id: str, project_id: str, journey_id: str) -> Callable[[], Any]:
    """The live snapshot read straight from Redis (the query API's own reader, no HTTP, no GraphQL)."""
    import asyncio

    import redis.asyncio as aioredis

    from query_api.live.metrics import JourneySteps, read_live_metrics
    from query_api.tenant_scope import Tenant

    tenant = Tenant(org_id, project_id)
    journeys = [JourneySteps(journey_id, "Bench checkout", tuple((i, n) for i, (n, _) in enumerate(_JOURNEY_STEPS, 1)))]
    loop = asyncio.new_event_loop()
    client = aioredis.from_url(redis_url)

    def read() -> Any:
        return loop.run_until_complete(read_live_metrics(client, tenant, journeys, int(time.time() * 1000)))

    return read


def funnel_spec(n_steps: int, date_from: str, date_to: str) -> dict[str, Any]:
    """Page views along the shop's paths (cycling for long funnels), users, ordered, 24 h window."""
    steps = [{"event_type": "page.view", "page_path": _SHOP_PATHS[i % len(_SHOP_PATHS)]} for i in range(n_steps)]
    return {"steps": steps, "date_from": date_from, "date_to": date_to}


_FUNNEL_GRAPHQL = "query($p: ID!, $spec: JSON!) { funnel(projectId: $p, spec: $spec) { steps { count } } }"
_FUNNEL_FULL_GRAPHQL = """query($p: ID!, $spec: JSON!) { funnel(projectId: $p, spec: $spec) { steps { count
  conversionFromFirst dropOff medianMsFromPrevious meanMsFromFirst converted { entityId sessionId }
  dropped { entityId sessionId } } } }"""
_NATIVE_FUNNEL_SQL = """
SELECT level, count() FROM (
    SELECT user_id, windowFunnel({{W:UInt64}})(toUInt64(toUnixTimestamp64Milli(timestamp)), {conds}) AS level
    FROM events
    PREWHERE ({any_step}) AND org_id = {{org:UUID}} AND project_id = {{project:UUID}}
        AND timestamp >= fromUnixTimestamp64Milli({{scan_from:Int64}}, 'UTC')
        AND timestamp < fromUnixTimestamp64Milli({{scan_to:Int64}}, 'UTC')
    GROUP BY user_id
) GROUP BY level ORDER BY level"""


def _native_funnel(spec: dict[str, Any], org_id: str, project_id: str) -> tuple[str, dict[str, Any]]:
    """ClickHouse's ``windowFunnel`` over the events of ``spec`` (page-view steps by path, users, step 1 in
    the date range): the native function, for reference only (it orders equal timestamps by step, not by
    the rules' order, and lets one event match several steps)."""
    parsed = parse_funnel_spec(spec)
    params: dict[str, Any] = {"org": org_id, "project": project_id, "W": parsed.window_ms,
                              "scan_from": parsed.scan_from_ms, "scan_to": parsed.scan_to_ms,
                              "start_before": parsed.start_before_ms}  # fmt: skip
    conds = []
    for k, step in enumerate(spec["steps"], start=1):
        params[f"t{k}"], params[f"p{k}"] = step["event_type"], step["page_path"]
        conds.append(f"(event_type = {{t{k}:String}} AND page_path = {{p{k}:String}})")
    start = f"({conds[0]} AND toUnixTimestamp64Milli(timestamp) < {{start_before:Int64}})"
    sql = _NATIVE_FUNNEL_SQL.format(conds=", ".join([start, *conds[1:]]), any_step=" OR ".join(conds))
    return sql, params


def _funnel_kinds(project_id: str, org_id: str, series: tuple[int, ...]) -> list[QueryKind]:
    """The 5-step funnel over the last 30 days (a chart's counts, then the full answer), the scaling series
    (counts), and the native reference; the same spec (explicit range) goes to GraphQL and to the SQL the
    evaluator runs for that request, so both paths answer the same question."""
    now = time.time()
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    date_from, date_to = time.strftime(fmt, time.gmtime(now - 30 * 86400)), time.strftime(fmt, time.gmtime(now))
    kinds = []
    five = funnel_spec(5, date_from, date_to)
    for name, n in [("funnel 5 steps (30 days)", 5), *((f"funnel series {n} steps", n) for n in series)]:
        spec = funnel_spec(n, date_from, date_to)
        q = counts_query(parse_funnel_spec(spec), org_id, project_id)
        variables = {"p": project_id, "spec": spec}
        kinds.append(QueryKind(name, _FUNNEL_GRAPHQL, q.sql, q.params, variables, steps=n, settings=q.settings,
                               counts=functools.partial(counts_from_levels, n_steps=n)))  # fmt: skip
        if n == 5 and not name.startswith("funnel series"):
            full = aggregate_query(parse_funnel_spec(five), org_id, project_id)
            kinds.append(QueryKind("funnel 5 steps, times + entities", _FUNNEL_FULL_GRAPHQL, full.sql, full.params,
                                   variables, steps=5, settings=full.settings, counts=_funnel_counts))  # fmt: skip
    native_sql, native_params = _native_funnel(five, org_id, project_id)
    kinds.append(QueryKind("windowFunnel reference (SQL only)", "", native_sql, native_params, steps=5,
                           counts=functools.partial(counts_from_levels, n_steps=5)))  # fmt: skip
    return kinds


_REPLAY = """query($p: ID!, $s: String!) { sessionReplay(projectId: $p, sessionId: $s, first: 100) {
  segments { segment durationMs } events { nodes { eventId type timestamp page stateDiff { key } } }
  pageTransitions { to at } apiCalls { statusCode } errors { message } } }"""
_JOURNEY_FUNNEL = """query($j: ID!) { journeyFunnel(journeyId: $j, droppedPerStep: 0) {
  totalSessions convertedSessions conversionRate avgDurationMs byStatus { status sessions }
  steps { position reached dropOff conversionFromFirst } } }"""
_LIVE = """query($p: ID!) { liveMetrics(projectId: $p) { activeSessions activeUsers eventsLastHour
  eventsPerMinute { count } journeys { steps { entriesLast5Minutes entriesLastHour } } } }"""


def _new_kinds(project_id: str, org_id: str, journey_id: str, live: Callable[[], Any]) -> list[QueryKind]:
    """Replay, journey funnel from the rollups and live metrics (issue 6's 50 / 50 / 20 ms targets)."""
    from query_api.journeys.metrics import _SQL as journey_sql

    tenant = {"org": org_id, "project": project_id}
    now = time.time()
    journey_params: dict[str, Any] = {**tenant, "journey": journey_id, "now": _dt(now),
                                      "since": _dt(now - 30 * 86400), "until": _dt(now + 86400)}  # fmt: skip
    return [
        QueryKind(
            "session replay (100 events + timeline)", _REPLAY,
            "SELECT event_id, event_type, timestamp, page_path, ui_state_before, ui_state_after FROM events "
            "WHERE org_id = {org:UUID} AND project_id = {project:UUID} AND session_id = {session:String} "
            "ORDER BY timestamp, ifNull(event_sequence, 0), received_at, event_id LIMIT 101",
            {**tenant, "session": "bs-4242"}, {"p": project_id, "s": "bs-4242"},
        ),
        QueryKind("journey funnel (rollups, 30 days)", _JOURNEY_FUNNEL, journey_sql,
                  journey_params,
                  {"j": journey_id}),
        QueryKind("live metrics (Redis)", _LIVE, "", {}, {"p": project_id}, direct=live),
    ]  # fmt: skip


def _dt(epoch_s: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, tz=UTC)


def _kinds(project_id: str, org_id: str) -> list[QueryKind]:
    tenant = {"org": org_id, "project": project_id}
    end = time.time() + 86400
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    start_iso, end_iso = time.strftime(fmt, time.gmtime(end - 90 * 86400)), time.strftime(fmt, time.gmtime(end))
    rng = {"start": start_iso.replace("T", " ")[:-1], "end": end_iso.replace("T", " ")[:-1]}
    return [
        QueryKind(
            "event counts by type (90 days)",
            f'{{ events(projectId: "{project_id}", from: "{start_iso}", to: "{end_iso}") '
            "{ total byType { eventType count } } }",
            "SELECT event_type, count() FROM events FINAL WHERE org_id = {org:UUID} AND project_id = {project:UUID} "
            "AND timestamp >= {start:DateTime64(3, 'UTC')} AND timestamp < {end:DateTime64(3, 'UTC')} "
            "GROUP BY event_type",
            {**tenant, **rng},
        ),
        QueryKind(
            "one session",
            f'{{ session(projectId: "{project_id}", sessionId: "bs-4242") {{ eventCount startedAt endedAt }} }}',
            "SELECT count(), min(timestamp), max(timestamp) FROM events FINAL WHERE org_id = {org:UUID} "
            "AND project_id = {project:UUID} AND session_id = {session:String}",
            {**tenant, "session": "bs-4242"},
        ),
    ]


def _percentiles(samples: list[float]) -> dict[str, float]:
    qs = statistics.quantiles(samples, n=100, method="inclusive") if len(samples) > 1 else samples * 99
    return {"p50_ms": round(qs[49] * 1000, 2), "p95_ms": round(qs[94] * 1000, 2), "p99_ms": round(qs[98] * 1000, 2)}


def _server_cpu_s(pid: int | None) -> float | None:
    """CPU seconds used so far by the local ClickHouse server process (``productgraph up``), else None.

    On a shared machine wall times swing with other load; the server's CPU time per query does not."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _overhead(api: dict[str, float], sql: dict[str, float]) -> dict[str, float]:
    """GraphQL time over direct SQL time, in percent, at p50 and p95."""
    return {f"{q}_pct": round((api[f"{q}_ms"] / sql[f"{q}_ms"] - 1) * 100, 1) for q in ("p50", "p95")}


def _funnel_counts(rows: Any) -> list[int]:
    """Overall per-step counts from :func:`aggregate_query` rows (``overall, value, k, units, ...``)."""
    by_step = {int(r[2]): int(r[3]) for r in rows if r[0]}
    return [by_step.get(k, 0) for k in range(1, max(by_step, default=0) + 1)]


def _scaling(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The series relative to its 5-step funnel: linear growth means time(n) / time(5) <= n / 5."""
    series = [r for r in results if r["query"].startswith("funnel series") and "error" not in r]
    if not series:
        return {}
    base = series[0]
    rows = []
    for r in series:
        steps_ratio = r["steps"] / base["steps"]
        g, d = (
            r["graphql"]["p50_ms"] / base["graphql"]["p50_ms"],
            r["direct_sql"]["p50_ms"] / base["direct_sql"]["p50_ms"],
        )
        rows.append(
            {
                "steps": r["steps"],
                "graphql_p50_ms": r["graphql"]["p50_ms"],
                "sql_p50_ms": r["direct_sql"]["p50_ms"],
                "graphql_ms_per_step": round(r["graphql"]["p50_ms"] / r["steps"], 2),
                "time_ratio_graphql": round(g, 2),
                "time_ratio_sql": round(d, 2),
                "steps_ratio": steps_ratio,
            }
        )
    linear = all(x["time_ratio_graphql"] <= x["steps_ratio"] and x["time_ratio_sql"] <= x["steps_ratio"] for x in rows)
    out: dict[str, Any] = {"base_steps": base["steps"], "series": rows, "at_most_linear": linear}
    if all("server_cpu_s" in r for r in series):
        for x, r in zip(rows, series, strict=True):
            x["server_cpu_s"] = r["server_cpu_s"]
            x["cpu_ratio"] = round(r["server_cpu_s"] / base["server_cpu_s"], 2)
        out["cpu_at_most_linear"] = all(x["cpu_ratio"] <= x["steps_ratio"] for x in rows)
    return out


@click.command()
@click.option(
    "--stack",
    "stack_file",
    default=".productgraph/stack.json",
    show_default=True,
    type=click.Path(exists=True, dir_okay=False),
    help="stack.json of a running `productgraph up`",
)
@click.option("--events", default=10_000_000, show_default=True, help="dataset size (10 events per session)")
@click.option("--repeat", default=50, show_default=True, help="timed runs per query kind and path")
@click.option("--funnel-series-repeat", default=10, show_default=True, help="timed runs per step count of the series")
@click.option(
    "--only",
    type=click.Choice(["all", "funnels", "others"]),
    default="all",
    show_default=True,
    help="query kinds: all, only the funnels (5 steps and the step series), or all but the funnels",
)
@click.option("--report", default="reports/bench-query.json", show_default=True, type=click.Path(dir_okay=False))
def query(stack_file: str, events: int, repeat: int, funnel_series_repeat: int, only: str, report: str) -> None:
    """Load the synthetic dataset (once) and time each query kind via GraphQL and via direct SQL."""
    import psycopg

    from productgraph.admin import create_project
    from productgraph.db import tenant_transaction_sync

    info = json.loads(Path(stack_file).read_text())
    env = info["env"]
    with psycopg.connect(env["PG_POSTGRES_DSN"], autocommit=True) as conn:
        with tenant_transaction_sync(conn, info["org_id"]):
            row = conn.execute("SELECT id::text FROM projects WHERE slug = 'bench'").fetchone()
        project_id = row[0] if row else create_project(conn, info["org_id"], "Benchmark", "bench")
    click.echo(f"dataset: {events:,} events in project bench ({project_id})")
    load_s = load_dataset(env["PG_CLICKHOUSE_URL"], info["org_id"], project_id, events, click.echo)
    click.echo(f"dataset ready in {load_s:.1f}s")

    ch = clickhouse_client(env["PG_CLICKHOUSE_URL"], max_execution_time=600)
    results: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {info['admin_token']}"}
    ch_pid = info.get("servers", {}).get("clickhouse")  # a local chDB server: its CPU time per query
    kinds = [] if only == "funnels" else _kinds(project_id, info["org_id"])
    if only != "funnels":
        journey_id = load_journey(env["PG_POSTGRES_DSN"], env["PG_CLICKHOUSE_URL"], info["org_id"], project_id,
                                  events // 10)  # fmt: skip
        load_live_counters(env["PG_REDIS_URL"], project_id, journey_id)
        load_sessions(env["PG_CLICKHOUSE_URL"], info["org_id"], project_id)
        live = _live_direct(env["PG_REDIS_URL"], info["org_id"], project_id, journey_id)
        kinds += _new_kinds(project_id, info["org_id"], journey_id, live)
    if only != "others":
        kinds += _funnel_kinds(project_id, info["org_id"], FUNNEL_STEP_SERIES)
    last_request = 0.0
    with httpx.Client(timeout=600) as http:
        for kind in kinds:
            api: list[float] = []
            sql: list[float] = []
            cpu: list[float] = []
            runs = funnel_series_repeat if kind.name.startswith("funnel series") else repeat
            try:
                for i in range(runs + 2):  # two warm-up runs each
                    resp = None
                    t0 = t1 = time.perf_counter()
                    if kind.graphql:  # else a reference timed on ClickHouse only
                        body: dict[str, Any] = {"query": kind.graphql}
                        if kind.variables is not None:
                            body["variables"] = kind.variables
                        # stay under the per-token rate limit (PG_QUERY_RATE_LIMIT_PER_S, 20/s): pacing
                        # between requests does not change the latency of each
                        time.sleep(max(0.0, last_request + _PACE_S - time.perf_counter()))
                        t0 = last_request = time.perf_counter()
                        resp = http.post(info["graphql_url"], json=body, headers=headers)
                        t1 = time.perf_counter()
                        if resp.status_code != 200 or "errors" in resp.json():
                            raise click.ClickException(f"{kind.name}: {resp.text[:300]}")
                    c1 = _server_cpu_s(ch_pid)
                    if kind.direct is not None:
                        rows = kind.direct()
                    else:
                        rows = ch.query(
                            kind.sql, parameters=kind.params, settings=read_settings(ch, kind.settings)
                        ).result_rows
                    t2 = time.perf_counter()
                    c2 = _server_cpu_s(ch_pid)
                    if i == 0 and kind.counts is not None:  # both paths answer the same question
                        sql_counts = kind.counts(rows)
                        if resp is None:
                            click.echo(f"{kind.name}: counts {sql_counts}")
                        else:
                            counts = [s["count"] for s in resp.json()["data"]["funnel"]["steps"]]
                            if counts != sql_counts + [0] * (len(counts) - len(sql_counts)):
                                raise _Mismatch(f"{kind.name}: GraphQL {counts} != SQL {sql_counts}")
                    if i >= 2:
                        api.append(t1 - t0)
                        sql.append(t2 - t1)
                        if c1 is not None and c2 is not None:
                            cpu.append(c2 - c1)
            except click.ClickException as exc:
                if kind.steps is None or isinstance(exc, _Mismatch):
                    raise
                # a funnel past the API's time budget (PG_CLICKHOUSE_TIMEOUT_S): recorded, the run goes on
                results.append({"query": kind.name, "steps": kind.steps, "error": exc.message})
                click.echo(f"{kind.name:<38} failed: {exc.message[:200]}")
                continue
            d = _percentiles(sql)
            entry: dict[str, Any] = {"query": kind.name, "direct_sql": d, "runs": runs}
            if kind.graphql:
                entry["graphql"] = g = _percentiles(api)
            if kind.steps is not None:
                entry["steps"] = kind.steps
                if kind.graphql:
                    entry["overhead"] = _overhead(g, d)
                if cpu:
                    entry["server_cpu_s"] = round(statistics.median(cpu), 3)
            results.append(entry)
            api_line = (
                f"GraphQL p50 {g['p50_ms']:>7} p95 {g['p95_ms']:>7} p99 {g['p99_ms']:>7} ms | " if kind.graphql else ""
            )
            click.echo(
                f"{kind.name:<38} {api_line}SQL p50 {d['p50_ms']:>7} p95 {d['p95_ms']:>7} p99 {d['p99_ms']:>7} ms"
                + (f" | overhead p50 {entry['overhead']['p50_pct']}%" if "overhead" in entry else "")
                + (f" | server CPU {entry['server_cpu_s']} s" if "server_cpu_s" in entry else "")
            )
    ch.close()
    scaling = _scaling(results)
    if scaling:
        ratios = ", ".join(f"{x['steps']}: {x['time_ratio_graphql']}x" for x in scaling["series"])
        line = f"funnel time vs steps (GraphQL p50 / {scaling['base_steps']} steps): {ratios}"
        line += f" -> at most linear: {scaling['at_most_linear']}"
        if "cpu_at_most_linear" in scaling:
            cpu_ratios = ", ".join(f"{x['steps']}: {x['cpu_ratio']}x" for x in scaling["series"])
            line += f"; server CPU: {cpu_ratios} -> at most linear: {scaling['cpu_at_most_linear']}"
        click.echo(line)
    out = {"events": events, "sessions": events // 10, "load_seconds": round(load_s, 1), "queries": results,
           "funnel_scaling": scaling, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report).write_text(json.dumps(out, indent=2) + "\n")
    click.echo(f"report written to {report}")
