"""Dead letters end to end: poison records (garbage bytes, valid JSON with an impossible event, a record
ClickHouse would refuse) go to the dead-letter topic with their origin while the partition keeps flowing;
``productgraph dlq list`` shows them and ``productgraph dlq replay`` publishes each back to its origin
topic exactly once."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from click.testing import CliRunner

from productgraph.cli import main
from productgraph.connections import clickhouse_client
from schemas.topics import DEAD_LETTERS
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    own_topic,
    produce,
    record,
    settings_for,
    start_runner,
    stop_runner,
    wait_for,
)

pytestmark = pytest.mark.integration


Read = tuple[bytes | None, bytes | None, dict[str, bytes]]


async def _read_all(bootstrap: str, topic: str, partitions: int) -> list[Read]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out = []
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        idle = 0
        while idle < 3:
            batch = await consumer.getmany(timeout_ms=300)
            idle = 0 if batch else idle + 1
            out += [(m.key, m.value, dict(m.headers)) for msgs in batch.values() for m in msgs]
    finally:
        await consumer.stop()
    return out


async def _commit_at_end(bootstrap: str, group: str) -> None:
    """Position ``group`` after every dead letter already there: this test replays only its own."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(DEAD_LETTERS.name, 0)
        consumer.assign([tp])
        await consumer.seek_to_beginning()
        while consumer.highwater(tp) is None or await consumer.position(tp) < (consumer.highwater(tp) or 0):
            if not await consumer.getmany(timeout_ms=1000) and consumer.highwater(tp) in (None, 0):
                return  # an empty topic: nothing to skip
        await consumer.commit({tp: await consumer.position(tp)})
    finally:
        await consumer.stop()


def _cli(env: dict[str, str], *args: str) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


async def test_poison_records_are_dead_lettered_listed_and_replayed_once(servers: Servers) -> None:
    org, project = str(uuid.uuid4()), str(uuid.uuid4())
    topic = await own_topic(servers.kafka_bootstrap)
    settings = settings_for(servers)
    env = {"PG_KAFKA_BOOTSTRAP": servers.kafka_bootstrap, "PG_CONSUMER_GROUP_PREFIX": settings.consumer_group_prefix}
    await _commit_at_end(servers.kafka_bootstrap, f"{settings.consumer_group_prefix}-dlq-replay")

    good = [record(org, project, f"g{i}", "s1", i) for i in range(5)]
    impossible = orjson.loads(good[0].encode()) | {"event_id": "bad-ts", "ts_ms": "yesterday"}
    garbage = (b"k-garbage", b"\x00\xff not a record")
    poison = (good[0].key, orjson.dumps(impossible))
    mistyped = replace(good[1], event_id="bad-seq", fields={"event.sequence": "seven"})  # ClickHouse would refuse
    await produce(servers.kafka_bootstrap, topic, [good[0], garbage, good[1], poison, mistyped, *good[2:]])
    runner, task = await start_runner("warehouse", settings, topic)
    ch = clickhouse_client(servers.clickhouse_url)
    try:

        async def stored() -> bool:
            q = "SELECT count() FROM events FINAL WHERE project_id = {p:UUID}"
            return int(ch.query(q, parameters={"p": project}).result_rows[0][0]) == 5

        await wait_for(stored, what="the good records despite the poison between them")
    finally:
        await stop_runner(runner, task)
        ch.close()

    listed = await asyncio.to_thread(_cli, env, "dlq", "list", "--limit", "0")
    mine = [line for line in listed.splitlines() if f"origin={topic}/" in line]
    assert len(mine) == 3, listed
    assert all("processor=warehouse" in line for line in mine)
    (garbage_line,) = [line for line in mine if "key=k-garbage" in line]
    assert "not JSON" in garbage_line
    assert any("ts_ms must be an integer" in line for line in mine)
    assert any("event.sequence must be int" in line for line in mine)

    dry = await asyncio.to_thread(_cli, env, "dlq", "replay", "--dry-run")
    assert "3 dead letter(s) to replay" in dry and dry.count("would replay") == 3
    assert len(await _read_all(servers.kafka_bootstrap, topic, 3)) == 8, "a dry run publishes nothing"

    replayed = await asyncio.to_thread(_cli, env, "dlq", "replay")
    assert "3 dead letter(s) replayed" in replayed
    again = await asyncio.to_thread(_cli, env, "dlq", "replay")
    assert "0 dead letter(s) replayed" in again, "each dead letter is replayed once"

    records = await _read_all(servers.kafka_bootstrap, topic, 3)
    assert len(records) == 11
    back = [(k, v) for k, v, h in records if "replayed-from" in h]
    assert sorted(back) == sorted([garbage, poison, (mistyped.key, mistyped.encode())])
