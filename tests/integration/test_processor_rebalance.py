"""Partition revocation: a second sessions runner joins the group while events stream in.  The first one
flushes and commits what it holds before letting its partitions go ("revoke" commits), both end up with
partitions, and the final sessions are exact (nothing lost, nothing counted twice)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from stream_processors.runner import BatchRunner
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    committed,
    expected_rows,
    own_topic,
    produce,
    session_rows,
    settings_for,
    start_runner,
    stop_runner,
    synthetic_stream,
    wait_for,
)

pytestmark = pytest.mark.integration


async def test_a_joining_runner_triggers_revocation_and_totals_stay_exact(servers: Servers) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    topic = await own_topic(servers.kafka_bootstrap, partitions=4)
    settings = settings_for(servers, batch_max_age_s=2.0)  # long batches: the revocation finds one open
    stream = synthetic_stream(org, project, sessions=50, events=3000, seed=21)
    first, first_task = await start_runner("sessions", settings, topic)
    second = second_task = None
    try:
        await wait_for(lambda: _joined(first), what="the first runner to join")
        assert first.assigned() == [0, 1, 2, 3]
        for i in range(0, 1500, 300):
            await produce(servers.kafka_bootstrap, topic, stream[i : i + 300])
            await asyncio.sleep(0.3)
        second, second_task = await start_runner("sessions", settings, topic)
        for i in range(1500, len(stream), 300):
            await produce(servers.kafka_bootstrap, topic, stream[i : i + 300])
            await asyncio.sleep(0.3)

        async def split() -> bool:
            assert second is not None
            return bool(first.assigned()) and bool(second.assigned())

        await wait_for(split, what="both runners to own partitions")
        assert "revoke" in first.commits, first.commits
        assert sorted(first.assigned() + second.assigned()) == [0, 1, 2, 3]

        async def exact() -> bool:
            return session_rows(servers.clickhouse_url, project) == expected_rows(stream, settings)

        await wait_for(exact, limit_s=120, what="exact sessions")
    finally:
        if second is not None and second_task is not None:
            await stop_runner(second, second_task)
        await stop_runner(first, first_task)
    offsets = await committed(servers.kafka_bootstrap, first.group_id, topic, 4)
    assert sum(o or 0 for o in offsets.values()) == len(stream)


async def _joined(runner: BatchRunner) -> bool:
    return runner.joined
