"""``productgraph processor <kind>``: build the sinks of a kind and run its consumer loop until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import redis.asyncio as aioredis
from prometheus_client import start_http_server

from productgraph.connections import clickhouse_client
from stream_processors import KIND_NAMES
from stream_processors.runner import BatchRunner, install_signal_handlers
from stream_processors.settings import ProcessorSettings
from stream_processors.sinks import ClickHouseEventSink, RedisSessionSink, Sink

__all__ = ["KINDS", "run_worker"]

log = logging.getLogger("productgraph.processor")


def _warehouse(s: ProcessorSettings) -> list[Sink]:
    return [ClickHouseEventSink(clickhouse_client(s.clickhouse_url, compress=s.clickhouse_compress))]


def _sessions(s: ProcessorSettings) -> list[Sink]:
    return [
        RedisSessionSink(aioredis.from_url(s.redis_url, socket_timeout=5, socket_connect_timeout=5), s.session_ttl_s)
    ]


# Each kind is its own consumer group: it sees every event and scales independently.
KINDS: dict[str, Callable[[ProcessorSettings], list[Sink]]] = {
    "warehouse": _warehouse,  # events → ClickHouse `events`
    "sessions": _sessions,  # live sessions → Redis
}
assert tuple(KINDS) == KIND_NAMES


async def _build_sinks(kind: str, settings: ProcessorSettings) -> list[Sink]:
    """Connect the sinks, waiting for servers that are not up yet (a worker may start before them)."""
    delay = 0.5
    while True:
        try:
            return await asyncio.to_thread(KINDS[kind], settings)
        except Exception as exc:
            log.warning("%s: sinks not reachable (%s); retrying in %.1fs", kind, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, settings.retry_max_backoff_s)


async def _run(kind: str, settings: ProcessorSettings) -> None:
    runner = BatchRunner(kind, await _build_sinks(kind, settings), settings)
    install_signal_handlers(runner)
    await runner.run()


def run_worker(kind: str, settings: ProcessorSettings | None = None) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown processor kind {kind!r}; choose one of {', '.join(KINDS)}")
    s = settings or ProcessorSettings()
    if s.metrics_port:
        start_http_server(s.metrics_port, addr=s.metrics_host)
    asyncio.run(_run(kind, s))
