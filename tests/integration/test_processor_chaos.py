"""Chaos: 100,000 events stream into the events topic while processor processes of every kind
(``productgraph processor <kind>``, as users run them) are SIGKILLed at random moments and restarted, and
while ClickHouse and then Redis are stopped for a few seconds and started again on the same port and data.
At the end every number equals a clean run's exactly.

Servers.  The faulty run gets DEDICATED servers started here, so the test may stop them: a Tansu broker
(only this test's records in its topic, so "caught up" is the groups' committed offsets summing to
100,000), a chDB ClickHouse server and a Redis with data directories (a restart keeps the data; Redis is
stopped with SIGTERM, which fsyncs its append-only file).  The clean run is a second set of processes, one
per kind, in another consumer group, reading the same topic (same records, same offsets) and writing into
the session's shared ClickHouse and Redis, which nobody disturbs.

Compared at the end, once both runs committed every record (so by the processors' invariant everything
is durable): ``events`` count FINAL; every row FINAL of each table in :data:`TABLES` (all columns but
write time and version); every Redis key under ``rt:{project_id}:`` (exact values) and every session key
under ``session:{project_id}:`` (all fields but ``version``); and the sessions against the pure reference.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from productgraph.localstack.clickhouse import start_clickhouse
from productgraph.localstack.kafka import start_kafka
from productgraph.localstack.process import ServerProcess, free_port
from productgraph.localstack.redis import start_redis
from productgraph.migrate import ensure_all_topics, migrate_clickhouse
from schemas.records import EventRecord
from schemas.topics import EVENTS
from stream_processors import KIND_NAMES
from tests.conftest import Servers
from tests.integration.test_processor_journeys import add_journey
from tests.integration.test_processor_support import (
    VOLATILE_COLUMNS,
    ProcessorProcess,
    committed,
    expected_rows,
    processor_env,
    produce,
    redis_values,
    session_rows,
    settings_for,
    synthetic_stream,
    table_rows,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

# Tables compared row by row (FINAL, per project).  Add a table here when a processor starts writing one.
TABLES = ["events", "sessions", "journey_sessions"]
# Redis key patterns compared value by value ({p}: the project id); hash fields in VOLATILE_COLUMNS skipped.
REDIS_PATTERNS = ["rt:{p}:*", "session:{p}:*"]

EVENTS_TOTAL = 100_000
RECENT = 5_000  # of which recent enough for the live counters
CHUNK = 2_000
MIN_KILLS = 6
# Processor kinds that write to each server the test stops: each must fail a flush (counted in
# productgraph_processor_sink_errors_total) before the server comes back.  A new kind is added here.
SERVER_USERS = {"clickhouse": set(KIND_NAMES), "redis": {"sessions"}}
OUTAGE_MIN_S = 3.0


async def test_kills_and_server_outages_end_exactly_as_a_clean_run(
    servers: Servers, tenant: dict[str, str], tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    org, project = tenant["org_id"], tenant["project_id"]
    # PG_TEST_CHAOS_SEED replays a run's schedule (its seed is printed and recorded)
    seed = int(os.environ.get("PG_TEST_CHAOS_SEED") or secrets.randbits(32))
    record_property("seed", seed)
    rng = random.Random(seed)
    # Two journeys over the stream's pages, so journey rows, statuses and step counters are compared too.
    add_journey(servers.postgres_dsn, org, project, "p1-p2-p3", ["/p1", "/p2", "/p3"])
    add_journey(servers.postgres_dsn, org, project, "p4-p5", ["/p4", "/p5"], timeout_minutes=10)
    old = synthetic_stream(org, project, sessions=2000, events=EVENTS_TOTAL - RECENT, seed=rng.randrange(1 << 30))
    stream = _with_recent(old, _recent_events(org, project, rng), rng)
    logs = tmp_path / "logs"
    kafka = start_kafka(free_port(), logs_dir=logs)
    ch_port, redis_port = free_port(), free_port()
    dedicated = {
        "kafka": kafka,
        "clickhouse": start_clickhouse(tmp_path / "clickhouse", ch_port),
        "redis": start_redis(tmp_path / "redis", redis_port, logs_dir=logs),
    }
    faulty: list[ProcessorProcess] = []
    clean: list[ProcessorProcess] = []
    try:
        await ensure_all_topics(kafka.url)
        ch_url = f"{dedicated['clickhouse'].url.rstrip('/')}/chaos"
        await asyncio.to_thread(migrate_clickhouse, ch_url)
        common = {"kafka": kafka.url, "postgres_dsn": servers.postgres_dsn}
        faulty_env = processor_env(clickhouse_url=ch_url, redis_url=dedicated["redis"].url, prefix="faulty", **common)
        clean_env = processor_env(
            clickhouse_url=servers.clickhouse_url, redis_url=servers.redis_url, prefix="clean", **common
        )
        faulty = [ProcessorProcess(k, faulty_env, tmp_path / f"faulty-{k}.log") for k in KIND_NAMES]
        clean = [ProcessorProcess(k, clean_env, tmp_path / f"clean-{k}.log") for k in KIND_NAMES]
        for p in (*faulty, *clean):
            p.start()

        chunks = range(0, EVENTS_TOTAL, CHUNK)
        kill_at = set(rng.sample(range(2, len(chunks) - 4), MIN_KILLS + 1))
        outage_at = {rng.randrange(6, 12): "clickhouse", rng.randrange(24, 30): "redis"}  # chunk indexes
        starters: dict[str, Callable[[], ServerProcess]] = {
            "clickhouse": lambda: start_clickhouse(tmp_path / "clickhouse", ch_port),
            "redis": lambda: start_redis(tmp_path / "redis", redis_port, logs_dir=logs),
        }
        outages: dict[str, float] = {}

        async def outage(name: str) -> None:
            """Stop the server; start it again (same port, same data) once every processor writing to it
            failed a flush meanwhile, so the outage is really lived through, not slept through."""
            watched = [p for p in faulty if p.kind in SERVER_USERS[name]]

            async def serving() -> bool:  # sinks built (a worker still connecting would wait, not fail)
                return all([bool(await p.metrics()) for p in watched])

            await wait_for(serving, what="the processors to serve /metrics")
            before = {p.kind: await _sink_errors(p) for p in watched}
            t0 = time.monotonic()
            await asyncio.to_thread(dedicated[name].stop)
            await asyncio.sleep(OUTAGE_MIN_S)

            async def noticed() -> bool:
                errors = [await _sink_errors(p) for p in watched]
                return all(e > before[p.kind] for e, p in zip(errors, watched, strict=True))

            await wait_for(noticed, limit_s=90, what=f"{name} down to fail flushes of {sorted(before)}")
            dedicated[name] = await asyncio.to_thread(starters[name])
            outages[name] = time.monotonic() - t0

        running: asyncio.Task[None] | None = None
        pending_kills = 0
        started = time.monotonic()
        for n, i in enumerate(chunks):
            await produce(kafka.url, EVENTS.name, stream[i : i + CHUNK])
            await asyncio.sleep(rng.uniform(0.1, 0.6))
            pending_kills += n in kill_at
            if n in outage_at:
                if running is not None:
                    await running
                running = asyncio.create_task(outage(outage_at[n]))
            if pending_kills and (running is None or running.done()):  # no kill during an outage: see outage()
                await _kill_and_restart(rng.choice(faulty), rng)
                pending_kills -= 1
        if running is not None:
            await running
        for _ in range(pending_kills):
            await _kill_and_restart(rng.choice(faulty), rng)
        kills = sum(p.kills for p in faulty)
        streamed_s = time.monotonic() - started
        assert kills >= MIN_KILLS and set(outages) == {"clickhouse", "redis"}

        async def all_committed() -> bool:
            for prefix in ("faulty", "clean"):
                for kind in KIND_NAMES:
                    offsets = await committed(kafka.url, f"{prefix}-{kind}", EVENTS.name, EVENTS.partitions)
                    if sum(o or 0 for o in offsets.values()) != EVENTS_TOTAL:
                        return False
            return True

        await wait_for(all_committed, limit_s=240, what=f"both runs to commit every record (logs: {tmp_path})")
        caught_up_s = time.monotonic() - started
        summary = {"kills": kills, "outages_s": {k: round(v, 1) for k, v in outages.items()}}
        summary |= {"streamed_s": round(streamed_s, 1), "caught_up_s": round(caught_up_s, 1)}
        record_property("chaos", summary)
        print(f"chaos (seed {seed}): {summary}")
        assert all(p.alive() for p in (*faulty, *clean)), "a processor died by itself"

        assert _count(ch_url, project) == _count(servers.clickhouse_url, project) == EVENTS_TOTAL
        # against the pure reference first, so that a difference names the run that deviates
        expected = expected_rows(stream, settings_for(servers))
        got_sessions, clean_sessions = session_rows(ch_url, project), session_rows(servers.clickhouse_url, project)
        assert got_sessions == expected, _first_difference("sessions vs reference", got_sessions, expected)
        assert clean_sessions == expected, _first_difference("clean sessions vs reference", clean_sessions, expected)
        for table in TABLES:
            got, want = table_rows(ch_url, table, project), table_rows(servers.clickhouse_url, table, project)
            assert len(got) == len(want) and got == want, _first_difference(table, got, want)
        for pattern in REDIS_PATTERNS:
            got_keys = _stable(await redis_values(dedicated["redis"].url, pattern.format(p=project)))
            want_keys = _stable(await redis_values(servers.redis_url, pattern.format(p=project)))
            assert got_keys == want_keys, _first_difference(
                pattern, sorted(got_keys.items()), sorted(want_keys.items())
            )
            if pattern.startswith("rt:"):  # the recent slice made live counters: the comparison is not vacuous
                assert any(":epm:" in k for k in want_keys) and any(":journey:" in k for k in want_keys)
    finally:
        for p in (*faulty, *clean):
            p.ensure_stopped()
        for server in dedicated.values():
            server.stop()


def _recent_events(org: str, project: str, rng: random.Random) -> list[EventRecord]:
    """Events 15-55 minutes old (the synthetic stream is a day old): inside the live counters' 2-hour
    window and outside the 10-minute active window for the whole run, so both runs count the same."""
    now = int(time.time() * 1000)
    out = []
    for n in range(RECENT):
        ts = now - rng.randint(15 * 60_000, 55 * 60_000)
        page = f"/p{rng.randint(1, 6)}"
        user = f"ru{rng.randint(1, 40)}" if rng.random() < 0.5 else ""
        fields: dict[str, Any] = {"page.path": page} | ({"user.id": user} if user else {})
        out.append(
            EventRecord(org, project, f"r{n}", f"r{rng.randint(1, 300):03d}", "page.view", ts, now, fields=fields)
        )
    return out


def _with_recent(old: list[EventRecord], recent: list[EventRecord], rng: random.Random) -> list[EventRecord]:
    """``recent`` spread through ``old`` at random positions (order among each list kept)."""
    positions = sorted(rng.sample(range(len(old) + len(recent)), len(recent)))
    out, it_old, it_new = [], iter(old), iter(recent)
    marks = set(positions)
    for i in range(len(old) + len(recent)):
        out.append(next(it_new) if i in marks else next(it_old))
    return out


async def _kill_and_restart(victim: ProcessorProcess, rng: random.Random) -> None:
    await asyncio.sleep(rng.uniform(0, 0.4))  # a random moment: inside or between flushes
    assert victim.kill() == -signal.SIGKILL
    await asyncio.sleep(rng.uniform(0, 0.5))
    victim.start()


async def _sink_errors(p: ProcessorProcess) -> float:
    """Failed flush/commit attempts of the process's current run (0 while it does not answer)."""
    metrics = await p.metrics()
    return sum(v for (name, _), v in metrics.items() if name == "productgraph_processor_sink_errors_total")


def _count(clickhouse_url: str, project: str) -> int:
    from productgraph.connections import clickhouse_client

    ch = clickhouse_client(clickhouse_url)
    try:
        result = ch.query("SELECT count() FROM events FINAL WHERE project_id = {p:UUID}", parameters={"p": project})
        return int(result.result_rows[0][0])
    finally:
        ch.close()


def _stable(values: dict[str, Any]) -> dict[str, Any]:
    """Hash fields that differ between correct runs (versions) left out."""
    return {
        k: {f: v for f, v in value.items() if f not in VOLATILE_COLUMNS} if isinstance(value, dict) else value
        for k, value in values.items()
    }


def _first_difference(what: str, got: list[Any], want: list[Any]) -> str:
    got_r, want_r = {repr(r) for r in got}, {repr(r) for r in want}
    only_got, only_want = sorted(got_r - want_r)[:3], sorted(want_r - got_r)[:3]
    return f"{what}: {len(got)} after chaos, {len(want)} clean; only after chaos {only_got}; only clean {only_want}"
