"""``productgraph bench pipeline``: processor throughput per process, its direct ceilings, and end-to-end
freshness (202 accepted → visible through GraphQL), against a running stack.

Lifecycle, one run:

1. **Preload**: a bench tenant (no rate limit, 5-minute dedup window) gets ``--events`` realistic events
   (sessions of 5-40 events walking a shop's checkout, interleaved by time as real traffic arrives),
   validated exactly as the gateway does and produced straight to the events topic (acks=all).
2. **Throughput**, for each processor kind: one ``productgraph processor <kind>`` process in its own
   consumer group (``bench-<run>-<kind>``), writing into a scratch ClickHouse database and an empty Redis
   database, so the stack's data is never touched (both are removed at the end unless ``--keep-data``).  It
   reads the whole topic from the start (the preload plus whatever the topic already held).  Its
   ``/metrics`` are sampled until every partition's consumer lag is 0 (committed = fetch high watermark,
   so everything is durable): records/s over that span (process start-up excluded) and records per CPU
   second of the process (the per-core figure), plus the CPU seconds the local Redis and ClickHouse server
   processes spent over the same span (the stack's ``servers``; they share the machine's cores).  Each kind
   starts once those servers are idle again (at most 30 s: ClickHouse merges the previous kind's parts).
3. **Ceilings** measured in the same run on the same records: a bare aiokafka consumer reading the topic
   from the start (no decode, no sink), and clickhouse-connect inserting the same ``events`` rows into a
   scratch copy of the table in ``--batch-rows`` batches, as the warehouse sends them (``JSONEachRow``
   lines, precomputed: ClickHouse's side alone) and as Native from ``event_row`` values.
4. **Freshness**: the stack's own processors (or, when the stack runs none, processes started here with
   the stack's settings) first catch up with the preload (its count through GraphQL), then events go
   through the gateway at ``--rate`` events/s for ``--duration`` s while the GraphQL ``events`` count is
   polled.  A request's freshness is the time from its 202 until the count, as answered by GraphQL
   (response time: an upper bound), includes every event accepted up to that 202.
5. Figures printed as a table and written as JSON (``--report``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import httpx
import orjson

from productgraph.bench.ingest import _pct, _proc_cpu_s
from productgraph.demo import demo_events
from schemas.records import EventRecord
from schemas.topics import EVENTS
from stream_processors import KIND_NAMES

__all__ = ["FreshnessSample", "freshness", "pipeline", "preload_records"]

Say = Callable[[str], None]


# ---- pure parts ----------------------------------------------------------------------------------------
def preload_records(org_id: str, project_id: str, project_slug: str, count: int, seed: int) -> list[EventRecord]:
    """``count`` gateway-validated records of realistic sessions, in the order real traffic would arrive
    (by event time, so sessions interleave)."""
    from schemas.ingest import IngestContext, validate_event

    events = sorted(demo_events(project_slug, count, seed=seed), key=lambda e: str(e["event.timestamp"]))
    ctx = IngestContext(org_id, project_id, project_slug, int(time.time() * 1000), check_event_size=False)
    out = []
    for i, e in enumerate(events):
        rec = validate_event(i, e, ctx)
        if not isinstance(rec, EventRecord):
            raise ValueError(f"bench event refused: {rec}")
        out.append(rec)
    return out


@dataclass(frozen=True, slots=True)
class FreshnessSample:
    accepted_at: float  # monotonic time the 202 arrived
    events: int  # events that request had accepted


def freshness(accepted: Sequence[FreshnessSample], polls: Sequence[tuple[float, int]]) -> list[float]:
    """Seconds from each 202 until a poll ``(answered at, count)`` answered at or after it counts every
    event accepted up to that 202; requests never covered are left out (the caller reports them)."""
    out: list[float] = []
    polls = sorted(polls)
    cumulative = 0
    j = 0
    for sample in sorted(accepted, key=lambda s: s.accepted_at):
        cumulative += sample.events
        while j < len(polls) and (polls[j][0] < sample.accepted_at or polls[j][1] < cumulative):
            j += 1  # counts only grow, so a poll too early or too low never covers a later request either
        if j == len(polls):
            break
        out.append(polls[j][0] - sample.accepted_at)
    return out


def _with_database(url: str, database: str) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, "/" + database, p.query, p.fragment))


def _with_redis_db(url: str, db: int) -> str:
    p = urlsplit(url)
    return urlunsplit((p.scheme, p.netloc, f"/{db}", p.query, p.fragment))


# ---- processes and servers -----------------------------------------------------------------------------
class _Processor:
    """One ``productgraph processor <kind>`` process with its ``/metrics`` port."""

    def __init__(self, kind: str, env: dict[str, str], log_path: Path) -> None:
        from productgraph.localstack.process import free_port

        self.kind = kind
        self.port = free_port()
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "productgraph.cli", "processor", kind],
                env={**env, "PG_METRICS_PORT": str(self.port), "PG_METRICS_HOST": "127.0.0.1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def sample(self, http: httpx.AsyncClient) -> tuple[float, dict[int, float]] | None:
        """(records consumed, consumer lag per partition) from ``/metrics``; None while it does not answer."""
        from prometheus_client.parser import text_string_to_metric_families

        try:
            text = (await http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        except httpx.HTTPError:
            return None
        records, lag = 0.0, {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "productgraph_processor_records_total" and s.labels.get("kind") == self.kind:
                    records = s.value
                elif s.name == "productgraph_processor_consumer_lag" and s.labels.get("kind") == self.kind:
                    lag[int(s.labels["partition"])] = s.value
        return records, lag

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # flush, commit, exit 0
            try:
                return self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


def _processor_env(base: dict[str, str], **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG_")}
    env.update(base)
    env.update({"PG_LOG_LEVEL": "WARNING", "PYTHONUNBUFFERED": "1"})
    env.update(values)
    return env


async def _partitions(bootstrap: str) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        return len(await producer.partitions_for(EVENTS.name))
    finally:
        await producer.stop()


# ---- phases --------------------------------------------------------------------------------------------
async def _preload(bootstrap: str, records: list[EventRecord], say: Say) -> dict[str, Any]:
    from aiokafka import AIOKafkaProducer

    payloads = [(r.key, r.encode()) for r in records]
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    t0 = last = time.monotonic()
    try:
        for start in range(0, len(payloads), 5000):
            futures = [await producer.send(EVENTS.name, v, key=k) for k, v in payloads[start : start + 5000]]
            await asyncio.gather(*futures)
            if time.monotonic() - last >= 1:
                last = time.monotonic()
                say(f"  preload: {start + len(futures):>10,} records  {(start + len(futures)) / (last - t0):>9,.0f}/s")
    finally:
        await producer.stop()
    elapsed = time.monotonic() - t0
    size = sum(len(v) for _, v in payloads)
    return {"records": len(payloads), "seconds": round(elapsed, 2), "records_per_s": round(len(payloads) / elapsed),
            "record_bytes_mean": round(size / max(len(payloads), 1))}  # fmt: skip


def _servers_cpu_s(servers: dict[str, int]) -> dict[str, float | None]:
    return {name: _proc_cpu_s(pid) for name, pid in servers.items()}


def _settle(servers: dict[str, int], limit_s: float = 30.0, idle_share: float = 0.1) -> float:
    """Wait until the servers use less than ``idle_share`` of a core together over half a second (at most
    ``limit_s``): what the previous phase left behind (ClickHouse merging the parts it inserted) would
    otherwise take CPU from the next processor and make its figures depend on the order of the kinds.
    Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        before = sum(v for v in _servers_cpu_s(servers).values() if v is not None)
        time.sleep(0.5)
        after = sum(v for v in _servers_cpu_s(servers).values() if v is not None)
        if after - before < idle_share * 0.5:
            break
    return round(time.monotonic() - started, 1)


async def _throughput(
    kind: str,
    env: dict[str, str],
    partitions: int,
    at_least: int,
    log_dir: Path,
    limit_s: float,
    say: Say,
    servers: dict[str, int] | None = None,
) -> dict[str, Any]:
    """One processor of ``kind`` from start to lag 0.  ``servers``: local server processes by name (the
    stack's ``servers``) whose CPU seconds over the same span are reported too: the processor's records cost
    CPU there as well (Redis scripts, ClickHouse inserts and merges), which shares the machine's cores."""
    proc = _Processor(kind, env, log_dir / f"bench-processor-{kind}.log")
    first: tuple[float, float, float | None] | None = None  # (time, records, cpu s) at the first records seen
    servers_first: dict[str, float | None] = {}
    last_say = 0.0
    deadline = time.monotonic() + limit_s
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                if proc.proc.poll() is not None:
                    raise click.ClickException(f"processor {kind} exited with {proc.proc.returncode}: {proc.log_path}")
                if time.monotonic() > deadline:
                    raise click.ClickException(f"processor {kind} did not catch up within {limit_s:.0f}s")
                sample = await proc.sample(http)
                now = time.monotonic()
                if sample is not None:
                    records, lag = sample
                    if first is None and records > 0:
                        first = (now, records, _proc_cpu_s(proc.proc.pid))
                        servers_first = _servers_cpu_s(servers or {})
                    done = records >= at_least and len(lag) >= partitions and not any(lag.values())
                    if first is not None and (done or now - last_say >= 1):
                        last_say = now
                        rate = (records - first[1]) / max(now - first[0], 1e-9)
                        say(f"  {kind}: {records:>10,.0f} records  lag {sum(lag.values()):>9,.0f}  {rate:>9,.0f}/s")
                    if done and first is not None:
                        cpu = _proc_cpu_s(proc.proc.pid)
                        seconds = now - first[0]
                        cpu_s = cpu - first[2] if cpu is not None and first[2] is not None else None
                        consumed = records - first[1]
                        servers_cpu = {
                            name: round(v - before, 2)
                            for name, v in _servers_cpu_s(servers or {}).items()
                            if v is not None and (before := servers_first.get(name)) is not None
                        }
                        total = cpu_s + sum(servers_cpu.values()) if cpu_s is not None else None
                        return {
                            "kind": kind,
                            "records": int(records),
                            "seconds": round(seconds, 2),
                            "records_per_s": round(consumed / max(seconds, 1e-9)),
                            "cpu_s": round(cpu_s, 2) if cpu_s is not None else None,
                            "records_per_cpu_s": round(consumed / cpu_s) if cpu_s else None,
                            "servers_cpu_s": servers_cpu,
                            "records_per_total_cpu_s": round(consumed / total) if total else None,
                        }
                await asyncio.sleep(0.25)
    finally:
        proc.stop()


async def _consume_ceiling(bootstrap: str, partitions: int, say: Say) -> dict[str, Any]:
    """A bare consumer (partitions assigned, nothing committed, no decode) reading the topic from the start
    up to the fetch high watermark."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(  # a group id that never commits: aiokafka's group-less stop() is cancelled
        bootstrap_servers=bootstrap,
        group_id=f"bench-ceiling-{secrets.token_hex(4)}",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
    )
    await consumer.start()
    try:
        tps = [TopicPartition(EVENTS.name, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        records, started, size = 0, None, 0
        next_offset: dict[TopicPartition, int] = {}
        while True:
            batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if started is None and batch:
                started = time.monotonic()
            for tp, msgs in batch.items():
                records += len(msgs)
                size += sum(len(m.value or b"") for m in msgs)
                next_offset[tp] = msgs[-1].offset + 1
            ends = {tp: consumer.highwater(tp) for tp in tps}  # carried by fetch responses (see runner.py)
            if all(h is not None and next_offset.get(tp, 0) >= h for tp, h in ends.items()):
                break
        elapsed = time.monotonic() - (started or time.monotonic())
    finally:
        await consumer.stop()
    say(f"  aiokafka consume: {records:,} records in {elapsed:.2f}s")
    return {"records": records, "seconds": round(elapsed, 2), "records_per_s": round(records / max(elapsed, 1e-9)),
            "mb_per_s": round(size / max(elapsed, 1e-9) / 1e6, 1)}  # fmt: skip


def _insert_ceiling(clickhouse_url: str, records: list[EventRecord], batch_rows: int, say: Say) -> dict[str, Any]:
    """clickhouse-connect inserts of the same ``events`` rows as the warehouse writes, explicit columns: as
    ``JSONEachRow`` lines (what the warehouse sends; lines precomputed, so this is ClickHouse's side) and as
    Native from ``event_row`` values (clickhouse-connect's own encoding, included in the time)."""
    from productgraph.connections import clickhouse_client
    from schemas.rows import EVENT_COLUMNS, EVENT_JSON_SETTINGS, event_json_row, event_row

    lines = [event_json_row(r) for r in records]
    rows = [event_row(r) for r in records]
    ch = clickhouse_client(clickhouse_url)
    out: dict[str, Any] = {"rows": len(records), "batch_rows": batch_rows}
    try:
        ch.command("CREATE TABLE events_insert_ceiling AS events")
        for form in ("json", "native"):
            ch.command("TRUNCATE TABLE events_insert_ceiling")
            t0 = time.monotonic()
            for start in range(0, len(rows), batch_rows):
                if form == "json":
                    body = b"\n".join(lines[start : start + batch_rows])
                    ch.raw_insert("events_insert_ceiling", list(EVENT_COLUMNS), body, fmt="JSONEachRow",
                                  settings={**EVENT_JSON_SETTINGS, "insert_deduplicate": 0})  # fmt: skip
                else:
                    ch.insert("events_insert_ceiling", rows[start : start + batch_rows],
                              column_names=list(EVENT_COLUMNS), settings={"insert_deduplicate": 0})  # fmt: skip
            elapsed = time.monotonic() - t0
            stored = int(ch.query("SELECT count() FROM events_insert_ceiling").result_rows[0][0])
            say(f"  clickhouse insert ({form}): {stored:,} rows in {elapsed:.2f}s")
            out[form] = {
                "rows": stored,
                "seconds": round(elapsed, 2),
                "rows_per_s": round(len(rows) / max(elapsed, 1e-9)),
            }
    finally:
        with contextlib.suppress(Exception):
            ch.command("DROP TABLE IF EXISTS events_insert_ceiling")
        ch.close()
    return out


@dataclass(frozen=True, slots=True)
class _Freshness:
    gateway_url: str
    graphql_url: str
    api_key: str
    token: str
    project_slug: str
    rate: float
    duration: float
    request_events: int
    poll_interval: float


async def _graphql_count(http: httpx.AsyncClient, f: _Freshness) -> int:
    query = {"query": f'{{ events(projectId: "{f.project_slug}") {{ total }} }}'}
    resp = await http.post(f.graphql_url, json=query, headers={"Authorization": f"Bearer {f.token}"})
    body = resp.json()
    if body.get("errors"):
        raise click.ClickException(f"GraphQL: {body['errors']}")
    return int(body["data"]["events"]["total"])


async def _wait_count(http: httpx.AsyncClient, f: _Freshness, want: int, limit_s: float, say: Say) -> float:
    t0 = last = time.monotonic()
    while (count := await _graphql_count(http, f)) < want:
        if time.monotonic() - t0 > limit_s:
            raise click.ClickException(f"only {count:,} of {want:,} events visible through GraphQL after {limit_s}s")
        if time.monotonic() - last >= 2:
            last = time.monotonic()
            say(f"  catching up: {count:>10,} of {want:,} visible through GraphQL")
        await asyncio.sleep(0.5)
    return time.monotonic() - t0


async def _freshness(f: _Freshness, preloaded: int, limit_s: float, say: Say) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as http:
        catch_up_s = await _wait_count(http, f, preloaded, limit_s, say)
        say(f"  preload visible through GraphQL ({catch_up_s:.1f}s after the throughput phases)")
        baseline = await _graphql_count(http, f)
        total_requests = max(1, int(f.rate * f.duration / f.request_events))
        events = demo_events(f.project_slug, total_requests * f.request_events, seed=secrets.randbits(32))
        bodies = [
            orjson.dumps({"events": events[i : i + f.request_events]}) for i in range(0, len(events), f.request_events)
        ]
        accepted: list[FreshnessSample] = []
        statuses: dict[str, int] = {}
        polls: list[tuple[float, int]] = []
        sending = True
        headers = {"X-PG-API-Key": f.api_key, "Content-Type": "application/json"}

        async def send(body: bytes) -> None:
            resp = await http.post(f.gateway_url.rstrip("/") + "/v1/events", content=body, headers=headers)
            at = time.monotonic()
            statuses[str(resp.status_code)] = statuses.get(str(resp.status_code), 0) + 1
            if resp.status_code == 202:
                accepted.append(FreshnessSample(at, int(resp.json()["accepted"])))

        async def poll() -> None:
            last_say = time.monotonic()
            while sending or (polls and polls[-1][1] < sum(s.events for s in accepted)):
                count = await _graphql_count(http, f) - baseline
                polls.append((time.monotonic(), count))
                if time.monotonic() - last_say >= 1:
                    last_say = time.monotonic()
                    say(f"  freshness: {sum(s.events for s in accepted):>9,} accepted  {count:>9,} visible")
                await asyncio.sleep(f.poll_interval)

        poller = asyncio.create_task(poll())
        t0 = time.monotonic()
        tasks = []
        for n, body in enumerate(bodies):
            await asyncio.sleep(max(0.0, t0 + n * f.request_events / f.rate - time.monotonic()))
            tasks.append(asyncio.create_task(send(body)))
        await asyncio.gather(*tasks)
        sent_s = time.monotonic() - t0
        sending = False
        try:
            await asyncio.wait_for(poller, timeout=60)
        except TimeoutError:
            say("  freshness: not every accepted event became visible within 60 s")
    values = freshness(accepted, polls)
    accepted_events = sum(s.events for s in accepted)
    return {
        "target_events_per_s": f.rate,
        "achieved_events_per_s": round(accepted_events / max(sent_s, 1e-9)),
        "duration_s": round(sent_s, 2),
        "events_accepted": accepted_events,
        "requests": len(bodies),
        "events_per_request": f.request_events,
        "statuses": statuses,
        "requests_measured": len(values),
        "requests_never_visible": len(accepted) - len(values),
        "poll_interval_s": f.poll_interval,
        "polls": len(polls),
        "p50_s": round(_pct(values, 0.50), 3),
        "p95_s": round(_pct(values, 0.95), 3),
        "p99_s": round(_pct(values, 0.99), 3),
        "max_s": round(max(values), 3) if values else None,
    }


# ---- the command ---------------------------------------------------------------------------------------
def _bench_tenant(dsn: str) -> dict[str, str]:
    """A fresh org/project (no rate limit, 5-minute dedup window) with its API key and admin token."""
    import psycopg

    from productgraph.admin import bootstrap_org
    from productgraph.db import tenant_transaction_sync

    slug = f"pipe-{secrets.token_hex(4)}"
    b = bootstrap_org(dsn, f"Bench {slug}", slug, "Pipeline bench", slug)
    with psycopg.connect(dsn, autocommit=True) as conn, tenant_transaction_sync(conn, b.org_id):
        conn.execute(
            "UPDATE projects SET settings = settings || %s::jsonb WHERE id = %s",
            (json.dumps({"rate_limit_per_s": 1_000_000, "dedup_window_s": 300}), b.project_id),
        )
    return {"org_id": b.org_id, "project_id": b.project_id, "project_slug": b.project_slug,
            "api_key": b.api_key, "admin_token": b.admin_token}  # fmt: skip


def _server_env(stack: dict[str, Any]) -> dict[str, str]:
    """The servers: the stack's ``env`` when given, else the PG_* environment (ServerSettings)."""
    if stack.get("env"):
        return {k: str(v) for k, v in stack["env"].items()}
    from productgraph.settings import ServerSettings

    s = ServerSettings()
    return {"PG_KAFKA_BOOTSTRAP": s.kafka_bootstrap, "PG_CLICKHOUSE_URL": s.clickhouse_url,
            "PG_REDIS_URL": s.redis_url, "PG_POSTGRES_DSN": s.postgres_dsn}  # fmt: skip


def _scratch(env: dict[str, str], run: str, redis_db: int) -> tuple[str, str]:
    """(ClickHouse URL of a migrated scratch database, URL of an empty Redis database) for the throughput
    processes, so that they never touch the stack's data."""
    import redis

    from productgraph.migrate import migrate_clickhouse

    redis_url = _with_redis_db(env["PG_REDIS_URL"], redis_db)
    r = redis.Redis.from_url(redis_url)
    try:
        if r.dbsize():
            raise click.UsageError(f"Redis database {redis_db} is not empty; pick an empty one with --redis-db")
    finally:
        r.close()
    ch_url = _with_database(env["PG_CLICKHOUSE_URL"], f"bench_pipeline_{run}")
    migrate_clickhouse(ch_url)
    return ch_url, redis_url


def _drop_scratch(ch_url: str, redis_url: str) -> None:
    import redis

    from productgraph.connections import ClickHouseTarget, clickhouse_client

    ch = clickhouse_client(ch_url, database=None)
    try:
        ch.command(f"DROP DATABASE IF EXISTS `{ClickHouseTarget(ch_url).database}`")
    finally:
        ch.close()
    r = redis.Redis.from_url(redis_url)
    try:
        r.flushdb()  # it was empty when the bench started and only the bench's processes wrote to it
    finally:
        r.close()


@click.command("pipeline")
@click.option(
    "--stack",
    "stack_path",
    default=".productgraph/stack.json",
    show_default=True,
    help="stack.json of `productgraph up` (servers, gateway and GraphQL URLs, processes); without it the "
    "servers come from PG_* variables and --gateway-url/--graphql-url",
)
@click.option("--events", "count", type=click.IntRange(1), default=200_000, show_default=True,
              help="events preloaded into the events topic (realistic sessions of 5-40 events)")  # fmt: skip
@click.option("--kinds", default=",".join(KIND_NAMES), show_default=True, help="processor kinds measured")
@click.option("--batch-rows", type=click.IntRange(1), default=10_000, show_default=True,
              help="rows per INSERT of the ClickHouse insert ceiling (as PG_BATCH_MAX_RECORDS)")  # fmt: skip
@click.option("--rate", type=float, default=5_000, show_default=True,
              help="events/s sent through the gateway in the freshness phase; 0 skips the phase")  # fmt: skip
@click.option("--duration", type=float, default=20.0, show_default=True, help="seconds of the freshness phase")
@click.option("--request-events", type=click.IntRange(1, 1000), default=100, show_default=True,
              help="events per gateway request in the freshness phase")  # fmt: skip
@click.option("--poll-interval", type=float, default=0.1, show_default=True,
              help="seconds between GraphQL count queries in the freshness phase (its resolution)")  # fmt: skip
@click.option("--gateway-url", help="overrides the stack's gateway_url")
@click.option("--graphql-url", help="overrides the stack's graphql_url")
@click.option("--redis-db", type=click.IntRange(0, 15), default=15, show_default=True,
              help="an EMPTY Redis database for the throughput processes (flushed at the end)")  # fmt: skip
@click.option("--keep-data", is_flag=True, help="keep the scratch ClickHouse database and Redis database")
@click.option("--processor-env", "processor_env", multiple=True, metavar="PG_NAME=VALUE",
              help="a setting of the throughput processes (repeatable), e.g. PG_BATCH_MAX_RECORDS=40000")  # fmt: skip
@click.option("--timeout", type=float, default=600.0, show_default=True, help="limit per phase, seconds")
@click.option("--logs", "log_dir", default="reports/logs", show_default=True, help="processor logs of the bench")
@click.option("--report", "report_path", default="reports/bench-pipeline.json", show_default=True, help="JSON report")
def pipeline(
    stack_path: str, count: int, kinds: str, batch_rows: int, rate: float, duration: float, request_events: int,
    poll_interval: float, gateway_url: str | None, graphql_url: str | None, redis_db: int, keep_data: bool,
    processor_env: tuple[str, ...], timeout: float, log_dir: str, report_path: str,
) -> None:  # fmt: skip
    """Processor records/s per process (each kind), the raw aiokafka consume and ClickHouse insert rates
    of the same records, and end-to-end freshness: 202 accepted -> counted by GraphQL `events`.

    Run it against `productgraph up`; for processor figures without competition, start the stack with
    `--processors-per-kind 0` (the freshness phase then runs its own processors with the stack's settings).
    """
    stack: dict[str, Any] = json.loads(Path(stack_path).read_text()) if Path(stack_path).exists() else {}
    env = _server_env(stack)
    gateway_url = gateway_url or stack.get("gateway_url")
    graphql_url = graphql_url or stack.get("graphql_url")
    wanted = [k.strip() for k in kinds.split(",") if k.strip()]
    overrides = dict(item.split("=", 1) for item in processor_env if "=" in item)
    if bad := [item for item in processor_env if "=" not in item or not item.startswith("PG_")]:
        raise click.UsageError(f"--processor-env takes PG_NAME=VALUE, not {bad}")
    if unknown := set(wanted) - set(KIND_NAMES):
        raise click.UsageError(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KIND_NAMES)}")
    say = click.echo
    run = secrets.token_hex(4)
    tenant = _bench_tenant(env["PG_POSTGRES_DSN"])
    say(f"bench tenant: project {tenant['project_slug']} ({tenant['project_id']}), run {run}")
    bootstrap = env["PG_KAFKA_BOOTSTRAP"]
    partitions = asyncio.run(_partitions(bootstrap))

    say(f"generating {count:,} events ...")
    records = preload_records(tenant["org_id"], tenant["project_id"], tenant["project_slug"], count, seed=int(run, 16))
    say(f"preload into {EVENTS.name} ({partitions} partitions):")
    preload = asyncio.run(_preload(bootstrap, records, say))

    ch_url, redis_url = _scratch(env, run, redis_db)
    processors: list[dict[str, Any]] = []
    try:
        for kind in wanted:
            say(f"processor {kind} (one process, group bench-{run}-{kind}, scratch database):")
            penv = _processor_env(env, **overrides, PG_CLICKHOUSE_URL=ch_url, PG_REDIS_URL=redis_url,
                                  PG_CONSUMER_GROUP_PREFIX=f"bench-{run}")  # fmt: skip
            servers = {k: int(v) for k, v in stack.get("servers", {}).items() if k in ("redis", "clickhouse")}
            settled = _settle(servers) if servers else 0.0
            result = asyncio.run(_throughput(kind, penv, partitions, count, Path(log_dir), timeout, say, servers))
            processors.append({**result, "settled_before_s": settled})
        say("ceilings:")
        consume = asyncio.run(_consume_ceiling(bootstrap, partitions, say))
        insert = _insert_ceiling(ch_url, records, batch_rows, say)
    finally:
        if keep_data:
            say(f"kept: ClickHouse {ch_url}, Redis {redis_url}")
        else:
            _drop_scratch(ch_url, redis_url)

    fresh = None
    if rate > 0:
        if not gateway_url or not graphql_url:
            raise click.UsageError("the freshness phase needs --gateway-url and --graphql-url (or a stack.json)")
        f = _Freshness(gateway_url, graphql_url, tenant["api_key"], tenant["admin_token"], tenant["project_slug"],
                       rate, duration, request_events, poll_interval)  # fmt: skip
        own = [] if any(str(p).startswith("processor-") for p in stack.get("processes", {})) else wanted
        started = [_Processor(k, _processor_env(env), Path(log_dir) / f"bench-freshness-{k}.log") for k in own]
        if started:
            say(f"the stack runs no processors: started {', '.join(own)} with the stack's settings")
        say(f"freshness at {rate:,.0f} events/s for {duration:.0f}s, {request_events} events per request:")
        try:
            fresh = asyncio.run(_freshness(f, count, timeout, say))
        finally:
            for p in started:
                p.stop()

    report = {
        "when": datetime.now(UTC).isoformat(),
        "cpus": os.cpu_count(),
        "events": count,
        "partitions": partitions,
        "project": tenant["project_slug"],
        "processor_env": overrides,
        "preload": preload,
        "processors": processors,
        "ceilings": {"aiokafka_consume": consume, "clickhouse_insert": insert},
        "freshness": fresh,
    }
    _print_summary(report, say)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
    say(f"report: {report_path}")


def _print_summary(report: dict[str, Any], say: Say) -> None:
    say("")
    say("{:<28} {:>10} {:>9} {:>11} {:>11}".format("phase", "records", "seconds", "records/s", "per CPU-s"))
    pre, consume, insert = (
        report["preload"],
        report["ceilings"]["aiokafka_consume"],
        report["ceilings"]["clickhouse_insert"],
    )
    rows: list[tuple[str, Any, Any, Any, Any]] = [
        ("preload (aiokafka produce)", pre["records"], pre["seconds"], pre["records_per_s"], "-"),
        *((f"processor {p['kind']}", p["records"], p["seconds"], p["records_per_s"], p["records_per_cpu_s"] or "-")
          for p in report["processors"]),
        ("ceiling: aiokafka consume", consume["records"], consume["seconds"], consume["records_per_s"], "-"),
        *((f"ceiling: clickhouse {f}", insert[f]["rows"], insert[f]["seconds"], insert[f]["rows_per_s"], "-")
          for f in ("json", "native")),
    ]  # fmt: skip
    for name, records, seconds, per_s, per_cpu in rows:
        cpu_text = f"{per_cpu:,}" if isinstance(per_cpu, int) else str(per_cpu)
        say(f"{name:<28} {records:>10,} {seconds:>9} {per_s:>11,} {cpu_text:>11}")
    for p in report["processors"]:
        if p.get("servers_cpu_s"):
            spent = ", ".join(f"{name} {cpu} s" for name, cpu in sorted(p["servers_cpu_s"].items()))
            say(f"  {p['kind']}: processor {p['cpu_s']} s CPU, servers {spent}; "
                f"{p['records_per_total_cpu_s'] or '-'} records per CPU-s of all three")  # fmt: skip
    f = report["freshness"]
    if f:
        say(
            f"freshness at {f['achieved_events_per_s']:,} events/s ({f['events_accepted']:,} accepted, "
            f"{f['requests_measured']} requests): p50 {f['p50_s']} s  p95 {f['p95_s']} s  p99 {f['p99_s']} s  "
            f"max {f['max_s']} s"
        )
        if set(f["statuses"]) - {"202"} or f["requests_never_visible"]:
            say(f"  statuses {f['statuses']}; requests never visible: {f['requests_never_visible']}")
