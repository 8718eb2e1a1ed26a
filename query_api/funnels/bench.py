"""Funnel timing over generated events: does answer time grow at most linearly with the number of steps?

:func:`load_events` writes ``n`` synthetic events for one tenant straight into ClickHouse with one
``INSERT ... SELECT FROM numbers()`` (no Kafka, no Python rows): sessions of ``events_per_session`` events
spread over ``days`` days, users with a skewed number of sessions, event names ``step_<i>`` that mostly
advance through a session (so long funnels still convert), some errors and anonymous visitors.
:func:`time_funnels` runs the same ordered funnel with 5, 10, 20 and 30 steps (and other modes on request)
and reports the median and best of ``repeat`` runs.  ``python -m query_api.funnels.bench --url ...`` (or
``productgraph bench query`` once wired) prints the table; the data stays under a fresh tenant id unless
``--drop``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from clickhouse_connect.driver.client import Client

from query_api.analytics import Tenant
from query_api.funnels.clickhouse import run_funnel
from query_api.funnels.spec import Exclusion, FunnelSpec, FunnelStep
from schemas.matchers import Matcher

__all__ = ["BenchRow", "bench_spec", "load_events", "main", "time_funnels"]

DAY_MS = 24 * 3600 * 1000

_LOAD = """
INSERT INTO events (org_id, project_id, event_id, session_id, event_type, timestamp, received_at,
                    user_id, user_anonymous_id, event_name, event_sequence, page_path, metadata)
SELECT {org:UUID}, {project:UUID}, concat('b', toString(number)), concat('s', toString(sess)),
       if(cityHash64(number, 3) % 50 = 0, 'error', 'custom'),
       fromUnixTimestamp64Milli(ts, 'UTC'), fromUnixTimestamp64Milli(ts + 200, 'UTC'),
       if(cityHash64(sess, 4) % 10 = 0, '', concat('u', toString(usr))),
       concat('a', toString(usr)),
       concat('step_', toString(pos + cityHash64(number, 5) % 3)),
       pos, concat('/p/', toString(pos % 7)),
       map('plan', ['free', 'pro', 'team'][1 + usr % 3])
FROM (
    SELECT number, intDiv(number, {per:UInt32}) AS sess, number % {per:UInt32} AS pos,
           -- skewed: a few users have many sessions
           toUInt64(pow(cityHash64(sess, 1) % 1000000 / 1000000, 3) * {users:UInt32}) AS usr,
           {start:Int64} + toInt64(cityHash64(sess, 2) % {span:UInt64}) + pos * 20000
               + toInt64(cityHash64(number, 6) % 15000) AS ts
    FROM numbers({n:UInt64})
)
"""


@dataclass(frozen=True, slots=True)
class BenchRow:
    label: str
    steps: int
    median_s: float
    best_s: float
    converted_last: int
    entered: int


def load_events(ch: Client, tenant: Tenant, n: int, start: datetime, days: int = 30, events_per_session: int = 10,
                users: int = 50_000) -> None:  # fmt: skip
    params = {
        "org": tenant.org_id,
        "project": tenant.project_id,
        "n": n,
        "per": events_per_session,
        "users": users,
        "start": int(start.timestamp() * 1000),
        "span": days * DAY_MS,
    }
    ch.command(_LOAD, parameters=params, settings={"max_partitions_per_insert_block": 1000})


def bench_spec(n_steps: int, start: datetime, days: int = 30, **kw: Any) -> FunnelSpec:
    """Steps ``step_0 .. step_<n-1>`` over ``days`` from ``start``; ``kw``: other FunnelSpec fields."""
    steps = tuple(FunnelStep(Matcher(event_name=f"step_{i}")) for i in range(n_steps))
    return FunnelSpec(steps=steps, date_from=start, date_to=start + timedelta(days=days), **kw)


async def time_funnels(
    ch: Client, tenant: Tenant, start: datetime, step_counts: Sequence[int] = (5, 10, 20, 30), repeat: int = 3,
    variants: Sequence[str] = ("ordered users",),
) -> list[BenchRow]:  # fmt: skip
    rows = []
    for label in variants:
        mode, count_by = label.split()
        for n in step_counts:
            extra: dict[str, Any] = {"mode": mode, "count_by": count_by}
            if "excl" in label:
                extra["exclusions"] = (Exclusion(Matcher(event_type="error"), 1),)
            spec = bench_spec(n, start, **extra)
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = await run_funnel(ch, tenant, spec)
                times.append(time.perf_counter() - t0)
            rows.append(BenchRow(label, n, statistics.median(times), min(times), result.steps[-1].count,
                                 result.steps[0].count))  # fmt: skip
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    from productgraph.connections import clickhouse_client

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="ClickHouse URL with database, e.g. http://default:@127.0.0.1:8123/db")
    p.add_argument("--events", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--steps", default="5,10,20,30")
    p.add_argument("--variants", default="ordered users", help="comma-separated '<mode> <count_by>' pairs")
    p.add_argument("--drop", action="store_true", help="delete the generated events afterwards")
    args = p.parse_args(argv)
    ch = clickhouse_client(args.url)
    tenant = Tenant(str(uuid.uuid4()), str(uuid.uuid4()))
    # recent data: the events table's TTL drops rows older than a year at insert
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today - timedelta(days=31)
    t0 = time.perf_counter()
    load_events(ch, tenant, args.events, start)
    print(f"loaded {args.events} events in {time.perf_counter() - t0:.1f} s (tenant {tenant.project_id})")
    steps = [int(s) for s in args.steps.split(",")]
    rows = asyncio.run(time_funnels(ch, tenant, start, steps, args.repeat, args.variants.split(",")))
    print(f"{'variant':<22} {'steps':>5} {'median s':>9} {'best s':>8} {'entered':>8} {'converted':>9}")
    for r in rows:
        print(f"{r.label:<22} {r.steps:>5} {r.median_s:>9.3f} {r.best_s:>8.3f} {r.entered:>8} {r.converted_last:>9}")
    if args.drop:
        ch.command("DELETE FROM events WHERE org_id = {org:UUID} AND project_id = {project:UUID}",
                   parameters={"org": tenant.org_id, "project": tenant.project_id})  # fmt: skip


if __name__ == "__main__":
    main()
