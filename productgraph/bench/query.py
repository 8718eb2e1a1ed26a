"""``productgraph bench query``: a realistic synthetic dataset, then every query kind timed through the real
GraphQL API next to the same SQL run directly on ClickHouse, in the same run.

The dataset is generated inside ClickHouse (``INSERT ... SELECT FROM numbers(n)``), so 10 million events
load in seconds: sessions of 1-19 events, users skewed (a cube law: few heavy users, a long tail), pages
skewed over a shop's paths, timestamps spread over the last 30 days, strictly increasing within a
session.  It lands in a dedicated project of the demo org (``bench``), created once and reused.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import httpx

from productgraph.connections import clickhouse_client

__all__ = ["load_dataset", "query"]

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
    ch.command("OPTIMIZE TABLE events FINAL")
    ch.close()
    return time.perf_counter() - started


@dataclass
class QueryKind:
    name: str
    graphql: str
    sql: str
    params: dict[str, Any]


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
    qs = statistics.quantiles(samples, n=100, method="inclusive")
    return {"p50_ms": round(qs[49] * 1000, 2), "p95_ms": round(qs[94] * 1000, 2), "p99_ms": round(qs[98] * 1000, 2)}


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
@click.option("--report", default="reports/bench-query.json", show_default=True, type=click.Path(dir_okay=False))
def query(stack_file: str, events: int, repeat: int, report: str) -> None:  # fmt: skip
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

    ch = clickhouse_client(env["PG_CLICKHOUSE_URL"])
    results: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {info['admin_token']}"}
    with httpx.Client(timeout=60) as http:
        for kind in _kinds(project_id, info["org_id"]):
            api: list[float] = []
            sql: list[float] = []
            for i in range(repeat + 2):  # two warm-up runs each
                t0 = time.perf_counter()
                resp = http.post(info["graphql_url"], json={"query": kind.graphql}, headers=headers)
                t1 = time.perf_counter()
                if resp.status_code != 200 or "errors" in resp.json():
                    raise click.ClickException(f"{kind.name}: {resp.text[:300]}")
                ch.query(kind.sql, parameters=kind.params)
                t2 = time.perf_counter()
                if i >= 2:
                    api.append(t1 - t0)
                    sql.append(t2 - t1)
            g, d = _percentiles(api), _percentiles(sql)
            results.append({"query": kind.name, "graphql": g, "direct_sql": d, "runs": repeat})
            click.echo(
                f"{kind.name:<38} GraphQL p50 {g['p50_ms']:>7} p95 {g['p95_ms']:>7} p99 {g['p99_ms']:>7} ms"
                f" | SQL p50 {d['p50_ms']:>7} p95 {d['p95_ms']:>7} p99 {d['p99_ms']:>7} ms"
            )
    ch.close()
    out = {"events": events, "sessions": events // 10, "load_seconds": round(load_s, 1), "queries": results,
           "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    Path(report).parent.mkdir(parents=True, exist_ok=True)
    Path(report).write_text(json.dumps(out, indent=2) + "\n")
    click.echo(f"report written to {report}")
