"""Scaling and failover: two ``productgraph processor sessions`` processes of one consumer group share the
events topic's partitions; one is SIGKILLed while events stream in, the survivor takes over its partitions
(measured from the kill to the survivor owning every partition, asserted under 30 s) and the sessions end
exactly as the pure reference computes them (nothing lost, nothing counted twice).

Ownership is read twice, independently: from each process's ``/metrics`` (a consumer-lag gauge per
assigned partition, removed on revocation) and from its JSON logs ("assigned partitions [...]")."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from schemas.topics import EVENTS
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    ProcessorProcess,
    expected_rows,
    processor_env,
    produce,
    session_rows,
    settings_for,
    synthetic_stream,
    wait_for,
)

pytestmark = pytest.mark.integration

TAKEOVER_LIMIT_S = 30.0


async def test_two_processes_share_partitions_and_the_survivor_takes_over_exactly(
    servers: Servers, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    everything = list(range(EVENTS.partitions))
    prefix = f"t{secrets.token_hex(4)}"
    env = processor_env(
        kafka=servers.kafka_bootstrap,
        clickhouse_url=servers.clickhouse_url,
        redis_url=servers.redis_url,
        postgres_dsn=servers.postgres_dsn,
        prefix=prefix,
    )
    stream = synthetic_stream(org, project, sessions=60, events=6000, seed=31)
    first = ProcessorProcess("sessions", env, tmp_path / "first.log")
    second = ProcessorProcess("sessions", env, tmp_path / "second.log")
    try:
        first.start()
        second.start()
        await produce(servers.kafka_bootstrap, EVENTS.name, stream[:2000])

        async def shared() -> bool:
            a, b = await first.owned_partitions(), await second.owned_partitions()
            return bool(a) and bool(b) and sorted(a + b) == everything

        await wait_for(shared, limit_s=90, what=f"both processes to own partitions (logs: {tmp_path})")
        logged = (first.assignments()[-1], second.assignments()[-1])
        assert logged[0] and logged[1] and sorted(logged[0] + logged[1]) == everything, logged

        await produce(servers.kafka_bootstrap, EVENTS.name, stream[2000:4000])
        victim, survivor = (first, second) if secrets.randbelow(2) else (second, first)
        await asyncio.sleep(0.5)  # inside a batch of the victim, most likely
        killed_at = time.monotonic()
        assert victim.kill() < 0
        await produce(servers.kafka_bootstrap, EVENTS.name, stream[4000:])

        async def took_over() -> bool:
            return await survivor.owned_partitions() == everything

        await wait_for(took_over, limit_s=TAKEOVER_LIMIT_S + 15, what="the survivor to own every partition")
        takeover_s = time.monotonic() - killed_at
        record_property("takeover_s", round(takeover_s, 1))
        print(f"takeover after SIGKILL: {takeover_s:.1f} s")
        assert takeover_s < TAKEOVER_LIMIT_S
        assert survivor.assignments()[-1] == everything

        expected = expected_rows(stream, settings_for(servers))

        async def exact() -> bool:
            return session_rows(servers.clickhouse_url, project) == expected

        await wait_for(exact, limit_s=120, what=f"exact sessions (logs: {tmp_path})")
        assert sum(row[0] for row in session_rows(servers.clickhouse_url, project).values()) == len(stream)
        assert survivor.alive()
    finally:
        first.ensure_stopped()
        second.ensure_stopped()
