"""Operations endpoints and consumer lag.  Lag is ``max(fetch high watermark, last fetched + 1) - committed``:
the high watermark that fetch responses carry is right on the local broker (checked here against what was
produced) while its "latest offset" answer (``end_offsets``) is not, which is why the runner never asks it."""

from __future__ import annotations

import asyncio
import collections
import uuid

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from stream_processors.ops import OpsServer
from tests.conftest import Servers
from tests.integration.test_processor_support import (
    committed,
    own_topic,
    record,
    settings_for,
    start_runner,
    stop_runner,
    wait_for,
)

pytestmark = pytest.mark.integration


async def _produce_counting(bootstrap: str, topic: str, n: int, project: str) -> dict[int, int]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    per_partition: collections.Counter[int] = collections.Counter()
    try:
        for i in range(n):
            r = record(str(uuid.uuid4()), project, f"e{i}", f"s{i % 7}", i / 10)
            meta = await producer.send_and_wait(topic, r.encode(), key=r.key)
            per_partition[meta.partition] += 1
    finally:
        await producer.stop()
    return dict(per_partition)


async def test_fetch_high_watermark_is_exact_where_end_offsets_is_not(servers: Servers) -> None:
    topic = await own_topic(servers.kafka_bootstrap)
    produced = await _produce_counting(servers.kafka_bootstrap, topic, 60, str(uuid.uuid4()))
    consumer = AIOKafkaConsumer(bootstrap_servers=servers.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(tps)
        await consumer.seek_to_beginning()
        await consumer.getmany(timeout_ms=2000, max_records=3)  # hand back 3: the rest stays in the fetch buffer
        for _ in range(20):
            if all(consumer.highwater(tp) is not None for tp in tps if tp.partition in produced):
                break
            await consumer.getmany(timeout_ms=200, max_records=1)
        assert {tp.partition: consumer.highwater(tp) for tp in tps if tp.partition in produced} == produced
    finally:
        await consumer.stop()


async def test_metrics_health_ready_and_lag_of_a_worker(servers: Servers) -> None:
    topic = await own_topic(servers.kafka_bootstrap)
    produced = await _produce_counting(servers.kafka_bootstrap, topic, 90, str(uuid.uuid4()))
    settings = settings_for(servers, batch_max_age_s=600)  # fetch everything, flush nothing until stop
    runner, task = await start_runner("warehouse", settings, topic)
    ops = OpsServer(runner, "127.0.0.1", 0)
    await ops.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}", timeout=10) as http:

            async def all_fetched() -> bool:  # (a partition no record hashed to has lag 0)
                return {p: lag for p, lag in runner.lag().items() if lag} == produced

            await wait_for(all_fetched, what="lag = everything produced, nothing committed")
            metrics = (await http.get("/metrics")).text
            for partition, lag in produced.items():
                line = f'productgraph_processor_consumer_lag{{kind="warehouse",partition="{partition}"}} {float(lag)}'
                assert line in metrics
            assert "productgraph_processor_records_total" in metrics
            assert "productgraph_processor_dead_letters_total" in metrics
            assert "# TYPE productgraph_processor_batch_seconds histogram" in metrics
            health, ready = await http.get("/health"), await http.get("/ready")
            assert health.status_code == 200 and health.json() == {"alive": True}
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"consumer": True, "flowing": True, "clickhouse": True}
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/ready")).status_code == 405
        await stop_runner(runner, task)  # SIGTERM path: flush and commit at shutdown
        assert runner.commits[-1] == "shutdown"
        offsets = await committed(servers.kafka_bootstrap, runner.group_id, topic, 3)
        assert {p: o for p, o in offsets.items() if o} == produced
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ops.port}", timeout=10) as http:
            assert (await http.get("/health")).status_code == 503
    finally:
        if not task.done():
            await stop_runner(runner, task)
        await ops.stop()
        await asyncio.sleep(0)
