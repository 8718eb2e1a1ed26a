"""``productgraph bench ingest``: drive a running gateway over real HTTP and compare with direct aiokafka.

Lifecycle: read the stack (``.productgraph/stack.json`` of ``productgraph up``, or explicit options) →
create a bench tenant with no rate limit and a short dedup window (when a Postgres DSN is known) → a
paced phase at ``--paced-rate`` events/s in batches of 100 (latency and RSS at a given load; first, so
that its RSS is not what larger batches left behind) → for each batch size, ``--processes`` load
processes (multiprocessing; keep-alive HTTP/1.1 over asyncio, responses parsed by httptools;
``--concurrency`` requests in flight each) POST realistic events (18 event types, 40+ distinct fields,
unique ids) for ``--duration`` seconds, while the parent prints
progress and samples the gateway process's CPU time and RSS from ``/proc`` → the same events produced
straight to Kafka with aiokafka ``send()`` (acks=all) from the same number of processes, the ceiling →
figures printed and written as JSON (``--report``), with issue 3's acceptance verdicts (:func:`acceptance`:
batch 100 at 50,000 events/s and half the ceiling, p99 under 50 ms when paced, RSS under 200 MB).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import secrets
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import click
import orjson

from schemas.fields import FIELDS, Kind

__all__ = ["acceptance", "bench_events", "ingest"]

_TYPES = (
    "page.view",
    "page.leave",
    "ui.click",
    "ui.input",
    "ui.scroll",
    "ui.focus",
    "ui.blur",
    "ui.submit",
    "ui.hover",
    "state.change",
    "api.request",
    "api.response",
    "journey.step",
    "journey.conversion",
    "error",
    "performance",
    "snapshot.captured",
    "custom",
)
_PREFIXES_BY_TYPE = {
    "page": ("page.",),
    "ui": ("ui.component", "ui.action", "ui.element", "ui.scroll"),
    "state": ("ui.state.",),
    "api": ("api.",),
    "journey": ("gen_ai.journey.",),
    "error": ("error.",),
    "performance": ("performance.",),
    "snapshot": ("snapshot.",),
    "custom": ("duration_ms",),
}
_COMMON = (
    *("user.id", "user.anonymous_id", "org.id", "org.name", "event.name", "event.sequence", "page.path"),
    *("page.title", "page.url", "ui.viewport", "session.previous_id"),
)


def _value(name: str, kind: Kind, choices: frozenset[str] | None, rng: random.Random) -> Any:
    if choices:
        return rng.choice(sorted(choices))
    if name == "api.method":
        return rng.choice(("GET", "POST", "PUT", "DELETE"))
    if kind is Kind.INT:
        return rng.choice((200, 201, 404, 502)) if "status" in name else rng.randint(1, 500)
    if kind is Kind.UNIT_FLOAT:
        return round(rng.random(), 3)
    if kind in (Kind.DURATION, Kind.FLOAT):
        return round(rng.uniform(0.01, 2500), 2)
    if name == "ui.state.before" or name == "ui.state.after":
        return orjson.dumps([{"id": f"prod_{rng.randint(1, 999)}", "qty": rng.randint(1, 3)}]).decode()
    if name == "error.stack":
        return "\n".join(f"    at fn{i} (app.js:{rng.randint(1, 9000)}:{rng.randint(1, 80)})" for i in range(8))
    if name.endswith("url") or name.endswith("referrer"):
        return f"https://shop.example.com/p/{rng.randint(1, 9999)}?utm_source=news"
    if name.endswith("viewport"):
        return rng.choice(("1440x900", "390x844", "1920x1080"))
    return f"{name.rsplit('.', 1)[-1]}-{rng.randint(1, 99999)}"


def bench_events(project: str, count: int, seed: int = 1, now: datetime | None = None) -> list[dict[str, Any]]:
    """``count`` realistic events over all 18 types; together they use every known field (40+)."""
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    out: list[dict[str, Any]] = []
    for i in range(count):
        etype = _TYPES[i % len(_TYPES)]
        prefixes = _PREFIXES_BY_TYPE.get(etype.split(".")[0], ())
        names = set(_COMMON) | {f.name for f in FIELDS if f.name.startswith(prefixes)}
        event: dict[str, Any] = {
            "event_id": "",
            "project_id": project,
            "session.id": f"bench-{rng.randint(1, 5000)}",
            "event.type": etype,
            "event.timestamp": (now - timedelta(seconds=rng.uniform(0, 600))).isoformat().replace("+00:00", "Z"),
        }
        for f in FIELDS:
            if f.name in names:
                event[f.name] = _value(f.name, f.kind, f.choices, rng)
        event["metadata"] = {"plan": rng.choice(("free", "pro")), "experiment": "checkout-b", "build": 4821}
        event["sdk.version"] = "2.3.1"  # an unknown key, as newer SDKs send
        out.append(event)
    return out


def _templates(events: list[dict[str, Any]]) -> list[tuple[bytes, bytes]]:
    """Each event serialised once, split around its event id, so a body costs a join per request."""
    out = []
    for e in events:
        raw = orjson.dumps(e)
        head, tail = raw.split(b'"event_id":""', 1)
        out.append((head + b'"event_id":"', b'"' + tail))
    return out


@dataclass
class LoadResult:
    requests: int = 0
    events_sent: int = 0
    accepted: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    sent_at: list[float] = field(default_factory=list)  # wall clock of each latency's request (when slow requests came)
    started: float = 0.0  # wall clock, once the client is ready (process start-up is not measured)
    ended: float = 0.0


def _load_process(
    url: str, key: str, templates: list[tuple[bytes, bytes]], batch: int, duration: float, concurrency: int,
    rate: float, tag: str, counter: Any, out: Any,
) -> None:  # fmt: skip
    import uvloop

    uvloop.run(_load(url, key, templates, batch, duration, concurrency, rate, tag, counter, out))


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of a load worker: a request is written as prebuilt bytes, the
    response parsed by ``httptools`` (the parser uvicorn uses).  Why not aiohttp: its client cost ~0.8 ms
    of CPU per 100-event request, and the load processes share the other core with Redis and the Kafka
    broker (the gateway has its own): that starved the gateway it was meant to measure."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []

    @classmethod
    async def open(cls, host: str, port: int) -> _HttpConnection:
        _, conn = await asyncio.get_running_loop().create_connection(cls, host, port)
        return conn

    @property
    def usable(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception as exc:  # httptools.HttpParserError: a broken response ends the connection
            self._fail(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("connection closed by the gateway"))

    def _fail(self, exc: Exception) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)

    def on_body(self, body: bytes) -> None:  # httptools callback
        self._body.append(body)

    def on_message_complete(self) -> None:  # httptools callback
        body, self._body = b"".join(self._body), []
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result((self._parser.get_status_code(), body))
        if not self._parser.should_keep_alive() and self._transport is not None:
            self._transport.close()

    async def request(self, head: bytes, body: bytes) -> tuple[int, bytes]:
        """Status and body of the response; ``head`` ends with ``Content-Length: ``."""
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.writelines((head, b"%d\r\n\r\n" % len(body), body))
        return await self._waiter


async def _load(
    url: str, key: str, templates: list[tuple[bytes, bytes]], batch: int, duration: float, concurrency: int,
    rate: float, tag: str, counter: Any, out: Any,
) -> None:  # fmt: skip
    from urllib.parse import urlsplit

    result = LoadResult()
    seq = 0
    target = urlsplit(url)
    host, port = target.hostname or "127.0.0.1", target.port or 80
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\nX-PG-API-Key: {key}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    interval = concurrency * batch / rate if rate > 0 else 0.0  # per worker, paced mode
    prefix = tag.encode() + b"-"

    def body() -> bytes:
        nonlocal seq
        parts: list[bytes] = []
        for _ in range(batch):
            event_head, event_tail = templates[seq % len(templates)]
            parts += (event_head, prefix, b"%d" % seq, event_tail, b",")
            seq += 1
        parts[-1] = b"]}"
        return b'{"events":[' + b"".join(parts)

    async def worker(offset: float) -> None:
        deadline = time.monotonic() + duration
        next_at = time.monotonic() + offset
        conn: _HttpConnection | None = None
        while time.monotonic() < deadline:
            if interval:
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            data = body()
            t0 = time.perf_counter()
            try:
                if conn is None or not conn.usable:
                    conn = await _HttpConnection.open(host, port)
                async with asyncio.timeout(60.0):
                    status, payload = await conn.request(head, data)
            except Exception as exc:  # counted by kind in ``statuses``; the next request opens a new connection
                conn = None
                result.statuses[type(exc).__name__] = result.statuses.get(type(exc).__name__, 0) + 1
                continue
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.sent_at.append(time.time())
            result.requests += 1
            result.events_sent += batch
            result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
            if status == 202:
                accepted = int(orjson.loads(payload)["accepted"])
                result.accepted += accepted
                with counter.get_lock():
                    counter.value += accepted

    result.started = time.time()
    await asyncio.gather(*(worker(i * interval / concurrency) for i in range(concurrency)))
    result.ended = time.time()
    out.put(asdict(result))


def _ceiling_process(bootstrap: str, topic: str, records: list[bytes], batch: int, duration: float,
                     concurrency: int, counter: Any, out: Any) -> None:  # fmt: skip
    import uvloop

    uvloop.run(_ceiling(bootstrap, topic, records, batch, duration, concurrency, counter, out))


async def _ceiling(
    bootstrap: str, topic: str, records: list[bytes], batch: int, duration: float, concurrency: int,
    counter: Any, out: Any,
) -> None:  # fmt: skip
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=1 << 20)
    await producer.start()
    result = LoadResult()
    deadline = time.monotonic() + duration
    seq = 0

    async def worker() -> None:
        nonlocal seq
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            futures = []
            for _ in range(batch):
                value = records[seq % len(records)]
                futures.append(await producer.send(topic, value=value, key=f"bench:{seq % 5000}".encode()))
                seq += 1
            await asyncio.gather(*futures)
            result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            result.sent_at.append(time.time())
            result.requests += 1
            result.accepted += batch
            with counter.get_lock():
                counter.value += batch

    try:
        result.started = time.time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.ended = time.time()
    finally:
        await producer.stop()
    out.put(asdict(result))


def _threads_of_trees(roots: list[int]) -> list[int]:
    """Every thread of the given processes and of their descendants (from /proc)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
    tree = set(roots)
    for _ in range(5):  # a few generations (postgres: postmaster -> backends)
        tree |= {pid for pid, ppid in parent.items() if ppid in tree}
    return [int(t.name) for pid in tree for t in Path(f"/proc/{pid}/task").glob("[0-9]*")]


def _proc_cpu_s(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _slowest(results: list[dict[str, Any]], n: int = 5) -> list[dict[str, float]]:
    """The ``n`` slowest requests of a phase and when they were sent (seconds into the phase): a tail that sits
    in the first second is warm-up, one spread over the run is steady state."""
    start = min((r["started"] for r in results), default=0.0)
    timed = sorted(((ms, at) for r in results for ms, at in zip(r["latencies_ms"], r["sent_at"], strict=True)),
                   reverse=True)[:n]  # fmt: skip
    return [{"ms": round(ms, 1), "at_s": round(at - start - ms / 1000, 2)} for ms, at in timed]


def _run_phase(
    name: str, target: Callable[..., None], args_for: Callable[[int], tuple[Any, ...]], processes: int,
    duration: float, gateway_pid: int | None, say: Callable[[str], None],
) -> dict[str, Any]:  # fmt: skip
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    out = ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(i), counter, out), daemon=True) for i in range(processes)]
    cpu0, t0 = (_proc_cpu_s(gateway_pid) if gateway_pid else None), time.monotonic()
    for p in procs:
        p.start()
    rss_peak = 0.0
    last, last_t = 0, time.monotonic()
    results: list[dict[str, Any]] = []
    while len(results) < processes:
        try:
            results.append(out.get(timeout=1.0))
            continue
        except Exception:
            pass
        now, value = time.monotonic(), counter.value
        rss = _proc_rss_mb(gateway_pid) if gateway_pid else None
        rss_peak = max(rss_peak, rss or 0.0)
        say(f"  {name}: {now - t0:5.1f}s  {value:>10,} events  {(value - last) / max(now - last_t, 1e-9):>10,.0f}/s")
        last, last_t = value, now
        if not any(p.is_alive() for p in procs) and out.empty():
            break
    for p in procs:
        p.join(10)
    cpu1 = _proc_cpu_s(gateway_pid) if gateway_pid else None
    # measured from the first load process ready to the last one done (start-up of processes excluded)
    elapsed = max(r["ended"] for r in results) - min(r["started"] for r in results) if results else 1.0
    lat = [x for r in results for x in r["latencies_ms"]]
    statuses: dict[str, int] = {}
    for r in results:
        for k, v in r["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    accepted = sum(r["accepted"] for r in results)
    requests = sum(r["requests"] for r in results)
    phase: dict[str, Any] = {
        "name": name,
        "wall_s": round(elapsed, 2),
        "requests": requests,
        "events_accepted": accepted,
        # summed per load process, each over its own run (they start a little apart)
        "events_per_s": round(sum(r["accepted"] / max(r["ended"] - r["started"], 1e-9) for r in results)),
        "requests_per_s": round(sum(r["requests"] / max(r["ended"] - r["started"], 1e-9) for r in results), 1),
        "p50_ms": round(_pct(lat, 0.50), 2),
        "p99_ms": round(_pct(lat, 0.99), 2),
        "statuses": statuses,
        "slowest": _slowest(results),
    }
    if cpu0 is not None and cpu1 is not None:
        cpu = cpu1 - cpu0
        phase |= {
            "gateway_cpu_s": round(cpu, 2),
            "gateway_cpu_share": round(cpu / elapsed, 2),
            "events_per_gateway_cpu_s": round(accepted / cpu) if cpu > 0 else None,
            "gateway_rss_peak_mb": round(rss_peak, 1),
        }
    return phase


def _bench_tenant(dsn: str) -> tuple[str, str]:
    """(project slug, API key) of a fresh tenant with the highest rate limit and a 5-minute dedup window."""
    import psycopg

    from productgraph.admin import bootstrap_org
    from productgraph.db import tenant_transaction_sync

    slug = f"bench-{secrets.token_hex(4)}"
    b = bootstrap_org(dsn, f"Bench {slug}", slug, "Bench", "bench")
    with psycopg.connect(dsn, autocommit=True) as conn, tenant_transaction_sync(conn, b.org_id):
        conn.execute(
            "UPDATE projects SET settings = settings || %s::jsonb WHERE id = %s",
            (json.dumps({"rate_limit_per_s": 1_000_000, "dedup_window_s": 300}), b.project_id),
        )
    return b.project_slug, b.api_key


@click.command("ingest")
@click.option(
    "--stack",
    "stack_path",
    default=".productgraph/stack.json",
    show_default=True,
    help="stack.json of `productgraph up` (gateway_url, api_key, env, processes)",
)
@click.option("--gateway-url", help="overrides the stack's gateway_url")
@click.option("--api-key", help="use this key as is (no bench tenant)")
@click.option("--project", help="project slug of --api-key")
@click.option("--kafka-bootstrap", help="for the direct-aiokafka ceiling (default: the stack's PG_KAFKA_BOOTSTRAP)")
@click.option("--postgres-dsn", help="app DSN to create the bench tenant (default: the stack's PG_POSTGRES_DSN)")
@click.option("--gateway-pid", type=int, help="gateway process for CPU/RSS (default: the stack's processes.gateway)")
@click.option("--batch-sizes", default="1,20,100,1000", show_default=True)
@click.option("--duration", type=float, default=10.0, show_default=True, help="seconds per phase")
@click.option("--processes", type=int, default=2, show_default=True, help="load processes")
@click.option("--concurrency", type=int, default=16, show_default=True, help="requests in flight per process")
@click.option(
    "--paced-rate",
    type=float,
    default=10_000,
    show_default=True,
    help="events/s of the paced phase (batches of 100); 0 skips it",
)
@click.option("--ceiling/--no-ceiling", default=True, show_default=True, help="measure the direct-aiokafka ceiling")
@click.option("--pin-gateway", type=int, help="pin the gateway process to this CPU (sched_setaffinity)")
@click.option("--report", "report_path", default="reports/bench-ingest.json", show_default=True)
def ingest(
    stack_path: str, gateway_url: str | None, api_key: str | None, project: str | None,
    kafka_bootstrap: str | None, postgres_dsn: str | None, gateway_pid: int | None, batch_sizes: str,
    duration: float, processes: int, concurrency: int, paced_rate: float, ceiling: bool,
    pin_gateway: int | None, report_path: str,
) -> None:  # fmt: skip
    """Gateway throughput and latency per batch size, gateway CPU and RSS, and the direct-Kafka ceiling."""
    stack: dict[str, Any] = {}
    if Path(stack_path).exists():
        stack = json.loads(Path(stack_path).read_text())
    env = stack.get("env", {})
    gateway_url = gateway_url or stack.get("gateway_url")
    kafka_bootstrap = kafka_bootstrap or env.get("PG_KAFKA_BOOTSTRAP")
    gateway_pid = gateway_pid or stack.get("processes", {}).get("gateway")
    if not gateway_url:
        raise click.UsageError(f"no gateway: pass --gateway-url or start `productgraph up` ({stack_path} missing)")
    if api_key is None:
        dsn = postgres_dsn or env.get("PG_POSTGRES_DSN")
        if dsn:
            project, api_key = _bench_tenant(dsn)
            click.echo(f"bench tenant: project {project} (rate limit 1M events/s, dedup window 300 s)")
        else:
            project, api_key = stack.get("project_slug"), stack.get("api_key")
    if not api_key or not project:
        raise click.UsageError("no API key: pass --api-key and --project, or a stack.json")
    if pin_gateway is not None and gateway_pid:
        others = os.sched_getaffinity(0) - {pin_gateway}
        for tid in _threads_of_trees([gateway_pid]):
            os.sched_setaffinity(tid, {pin_gateway})
        moved = [pid for pid in [*stack.get("servers", {}).values(), *stack.get("processes", {}).values()]
                 if pid != gateway_pid]  # fmt: skip
        os.sched_setaffinity(0, others)  # the load processes inherit it
        for tid in _threads_of_trees(moved):  # the stack's servers and services, every thread and child
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, others)
        click.echo(f"gateway pid {gateway_pid} alone on CPU {pin_gateway}; load and servers on CPUs {sorted(others)}")

    events = bench_events(project, 2000)
    templates = _templates(events)
    fields_used = len({k for e in events for k in e})
    sizes = [len(orjson.dumps(e)) for e in events]
    click.echo(f"events: {fields_used} distinct keys, {statistics.mean(sizes):.0f} B mean; gateway {gateway_url}")
    url = gateway_url.rstrip("/") + "/v1/events"
    run = uuid.uuid4().hex[:8]
    paced = None
    if paced_rate > 0:  # first: its RSS is the gateway's at that load, not what larger batches left behind
        click.echo(f"paced {paced_rate:,.0f} events/s, batches of 100:")
        paced = _run_phase(
            "paced", _load_process,
            lambda i: (url, api_key, templates, 100, duration, 4, paced_rate / processes, f"{run}-paced-p{i}"),
            processes, duration, gateway_pid, click.echo,
        )  # fmt: skip
    phases = []
    for n in [int(x) for x in batch_sizes.split(",") if x.strip()]:
        click.echo(f"batch {n}:")

        def load_args(i: int, n: int = n) -> tuple[Any, ...]:
            return (url, api_key, templates, n, duration, concurrency, 0.0, f"{run}-b{n}-p{i}")

        phase = _run_phase(f"batch-{n}", _load_process, load_args, processes, duration, gateway_pid, click.echo)
        phase["batch_size"] = n
        phases.append(phase)
    ceiling_phase = None
    if kafka_bootstrap and ceiling:
        from schemas.ingest import IngestContext, validate_event
        from schemas.records import EventRecord

        ctx = IngestContext("00000000-0000-0000-0000-000000000000", "bench", project, int(time.time() * 1000))
        recs = [validate_event(i, {**e, "event_id": f"c{i}"}, ctx) for i, e in enumerate(events)]
        records = [r.encode() for r in recs if isinstance(r, EventRecord)]
        topic = _ceiling_topic(kafka_bootstrap)
        click.echo(f"direct aiokafka ceiling (topic {topic}, batches of 100):")
        ceiling_phase = _run_phase(
            "aiokafka", _ceiling_process,
            lambda i: (kafka_bootstrap, topic, records, 100, duration, concurrency),
            processes, duration, None, click.echo,
        )  # fmt: skip
    report = {
        "when": datetime.now(UTC).isoformat(),
        "gateway_url": gateway_url,
        "gateway_pid": gateway_pid,
        "cpus": os.cpu_count(),
        "load_processes": processes,
        "concurrency_per_process": concurrency,
        "duration_s": duration,
        "event_keys": fields_used,
        "event_bytes_mean": round(statistics.mean(sizes)),
        "phases": phases,
        "paced": paced,
        "aiokafka_ceiling": ceiling_phase,
    }
    report["acceptance"] = acceptance(report)
    _print_summary(report, click.echo)
    Path(report_path).parent.mkdir(parents=True, exist_ok=True)
    Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
    click.echo(f"report: {report_path}")


def _ceiling_topic(bootstrap: str) -> str:
    from productgraph.localstack.kafka import ensure_topics

    topic = "productgraph.bench-ceiling"
    asyncio.run(ensure_topics(bootstrap, {topic: 6}))
    return topic


# Issue 3's acceptance figures: one gateway process on one core, batches of 100.
TARGET_EVENTS_PER_S = 50_000
TARGET_CEILING_SHARE = 0.5
TARGET_PACED_P99_MS = 50.0
TARGET_RSS_MB = 200.0


def acceptance(report: dict[str, Any]) -> dict[str, Any]:
    """The acceptance figures of a report and whether each is met (None: not measured in this run)."""
    b100 = next((p for p in report["phases"] if p.get("batch_size") == 100), None)
    paced, ceiling = report.get("paced"), report.get("aiokafka_ceiling")
    rss = [p["gateway_rss_peak_mb"] for p in (b100, paced) if p and "gateway_rss_peak_mb" in p]
    events = b100["events_per_s"] if b100 else None
    measured = ceiling["events_per_s"] if ceiling and ceiling["events_per_s"] else None  # 0: Kafka failed
    share = round(events / measured, 2) if events is not None and measured else None
    p99 = paced["p99_ms"] if paced else None
    peak = max(rss) if rss else None

    def check(value: float | None, ok: bool) -> bool | None:
        return None if value is None else ok

    return {
        "batch_100_events_per_s": events,
        "batch_100_events_per_s_ok": check(events, (events or 0) >= TARGET_EVENTS_PER_S),
        "ceiling_events_per_s": measured,
        "share_of_ceiling": share,
        "share_of_ceiling_ok": check(share, (share or 0) >= TARGET_CEILING_SHARE),
        "paced_events_per_s": paced["events_per_s"] if paced else None,
        "paced_p99_ms": p99,
        "paced_p99_ok": check(p99, p99 is not None and p99 < TARGET_PACED_P99_MS),
        "gateway_rss_peak_mb": peak,
        "gateway_rss_ok": check(peak, peak is not None and peak < TARGET_RSS_MB),
    }


def _print_summary(report: dict[str, Any], say: Callable[[str], None]) -> None:
    say("")
    head = ("phase", "events/s", "req/s", "p50 ms", "p99 ms", "gw CPU", "ev/CPU-s", "RSS MB")
    say("{:<12} {:>10} {:>9} {:>8} {:>8} {:>7} {:>9} {:>7}".format(*head))
    rows = [*report["phases"], *(p for p in (report["paced"], report["aiokafka_ceiling"]) if p)]
    for p in rows:
        say(
            f"{p['name']:<12} {p['events_per_s']:>10,} {p['requests_per_s']:>9,.0f} {p['p50_ms']:>8.1f} "
            f"{p['p99_ms']:>8.1f} {p.get('gateway_cpu_share', '-')!s:>7} "
            f"{p.get('events_per_gateway_cpu_s') or '-'!s:>9} "
            f"{p.get('gateway_rss_peak_mb', '-')!s:>7}"
        )
    bad = {p["name"]: p["statuses"] for p in report["phases"] if set(p["statuses"]) - {"202"}}
    if bad:
        say(f"non-202 answers: {bad}")
    a = report.get("acceptance") or {}
    mark = {True: "ok", False: "MISSED", None: "not measured"}
    say("")
    say(
        f"batch 100: {a.get('batch_100_events_per_s')} events/s (>= {TARGET_EVENTS_PER_S:,}: "
        f"{mark[a.get('batch_100_events_per_s_ok')]}); {a.get('share_of_ceiling')} of the aiokafka ceiling "
        f"{a.get('ceiling_events_per_s')} (>= {TARGET_CEILING_SHARE}: {mark[a.get('share_of_ceiling_ok')]})"
    )
    say(
        f"paced {a.get('paced_events_per_s')} events/s: p99 {a.get('paced_p99_ms')} ms "
        f"(< {TARGET_PACED_P99_MS:g}: {mark[a.get('paced_p99_ok')]}); gateway RSS peak "
        f"{a.get('gateway_rss_peak_mb')} MB (< {TARGET_RSS_MB:g}: {mark[a.get('gateway_rss_ok')]})"
    )
    if report.get("paced") and report["paced"].get("slowest"):
        slow = ", ".join(f"{x['ms']:g} ms at {x['at_s']:g} s" for x in report["paced"]["slowest"])
        say(f"paced, slowest requests (seconds into the phase): {slow}")
