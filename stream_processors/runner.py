"""The consumer loop every processor kind runs: fetch → decode → add to sinks → flush → commit.

Lifecycle (one asyncio task per process):
- ``getmany`` fetches records; each is decoded with ``schemas``; an undecodable or unprocessable record
  goes to the dead-letter topic (acknowledged by Kafka) with the error and origin in headers.
- When the batch holds ``batch_max_records`` or its first record is ``batch_max_age_s`` old, every sink
  flushes; only then are the offsets (last + 1 per partition) committed.  Nothing is committed that is
  not durable, so a SIGKILL at any moment means redelivery, never loss; sinks are idempotent.
- A failing flush pauses all partitions and retries with backoff (polling with no data, so the group
  membership stays alive) until the sink answers; nothing is dropped and no memory grows meanwhile.
- On partition revocation and on SIGTERM/SIGINT the batch is flushed and committed before letting go.

faust-streaming acknowledges an event when the agent has iterated past it, not when a batched sink has
stored it, so "commit only after the ClickHouse flush" cannot be expressed there; this loop is written on
aiokafka directly, in the shape of faust's workers (one process per kind, consumer groups, scale by
starting processes up to the partition count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from schemas.records import EventRecord, RecordDecodeError
from schemas.topics import DEAD_LETTERS, EVENTS
from stream_processors import metrics
from stream_processors.settings import ProcessorSettings
from stream_processors.sinks import Sink

__all__ = ["BatchRunner"]

log = logging.getLogger("productgraph.processor")


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Sequence[TopicPartition]) -> None:
        await self._runner.flush_and_commit(reason="revoke")

    async def on_partitions_assigned(self, assigned: Sequence[TopicPartition]) -> None:
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


class BatchRunner:
    def __init__(self, kind: str, sinks: Sequence[Sink], settings: ProcessorSettings) -> None:
        self.kind = kind
        self.group_id = f"productgraph-{kind}"
        self._sinks = list(sinks)
        self._s = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._offsets: dict[TopicPartition, int] = {}
        self._batch_started: float | None = None
        self._batch_records = 0
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self.healthy = True

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self._s
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=self.group_id,
            client_id=f"productgraph-{self.kind}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max_records,
            max_poll_interval_ms=600_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        self._dlq = AIOKafkaProducer(bootstrap_servers=s.kafka_bootstrap, acks="all", client_id="productgraph-dlq")
        self._consumer.subscribe([EVENTS.name], listener=_Rebalance(self))
        await self._consumer.start()
        await self._dlq.start()
        log.info("%s processor started (group %s)", self.kind, self.group_id)
        try:
            while not self._stopping.is_set():
                batch = await self._consumer.getmany(timeout_ms=100, max_records=s.batch_max_records)
                for tp, messages in batch.items():
                    for msg in messages:
                        await self._add(tp, msg)
                if self._due():
                    await self.flush_and_commit(reason="batch")
            await self.flush_and_commit(reason="shutdown")
        finally:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            with contextlib.suppress(Exception):
                await self._dlq.stop()
            log.info("%s processor stopped", self.kind)

    async def _add(self, tp: TopicPartition, msg: ConsumerRecord) -> None:
        try:
            record = EventRecord.decode(msg.value)
            for sink in self._sinks:
                sink.add(record)
        except (RecordDecodeError, ValueError, TypeError) as exc:
            await self._dead_letter(msg, exc)
        if self._batch_started is None:
            self._batch_started = time.monotonic()
        self._batch_records += 1
        self._offsets[tp] = msg.offset + 1
        metrics.RECORDS.labels(kind=self.kind).inc()

    def _due(self) -> bool:
        if self._batch_started is None:
            return False
        return (
            self._batch_records >= self._s.batch_max_records
            or time.monotonic() - self._batch_started >= self._s.batch_max_age_s
        )

    async def _dead_letter(self, msg: ConsumerRecord, exc: Exception) -> None:
        assert self._dlq is not None
        headers = [
            ("error", str(exc)[:1000].encode()),
            ("origin.topic", msg.topic.encode()),
            ("origin.partition", str(msg.partition).encode()),
            ("origin.offset", str(msg.offset).encode()),
            ("processor", self.kind.encode()),
        ]
        await self._retry(lambda: self._send_dlq(msg, headers), "dead-letter topic")
        metrics.DEAD_LETTERS.labels(kind=self.kind).inc()
        log.warning("record %s/%d@%d dead-lettered: %s", msg.topic, msg.partition, msg.offset, exc)

    async def _send_dlq(self, msg: ConsumerRecord, headers: list[tuple[str, bytes]]) -> None:
        assert self._dlq is not None
        await self._dlq.send_and_wait(DEAD_LETTERS.name, value=msg.value, key=msg.key, headers=headers)

    async def flush_and_commit(self, reason: str) -> None:
        """Make every sink durable, then commit.  Serialised: the revoke callback may race the loop."""
        async with self._lock:
            if not self._offsets:
                return
            started = time.perf_counter()
            for sink in self._sinks:
                await self._retry(sink.flush, sink.name)
            offsets, self._offsets = self._offsets, {}
            consumer = self._consumer
            assert consumer is not None
            await self._retry(lambda: self._commit(consumer, offsets), "kafka commit")
            metrics.BATCH_SECONDS.labels(kind=self.kind).observe(time.perf_counter() - started)
            metrics.BATCH_RECORDS.labels(kind=self.kind).observe(self._batch_records)
            for tp, offset in offsets.items():
                metrics.COMMITTED.labels(kind=self.kind, partition=str(tp.partition)).set(offset)
            log.debug("%s: committed %d records (%s)", self.kind, self._batch_records, reason)
            self._batch_records = 0
            self._batch_started = None

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another member: it will redeliver from the last commit, and every
            # sink is idempotent, so giving these offsets up is safe (and retrying could never succeed).
            log.warning("%s: commit refused after rebalance (%s); the new owner replays", self.kind, exc)

    async def _retry(self, action: object, what: str) -> None:
        """Run ``action`` until it succeeds, pausing consumption meanwhile (backpressure, not a busy loop)."""
        delay = 0.2
        paused = False
        while True:
            try:
                await action()  # type: ignore[operator]
                break
            except Exception as exc:
                self.healthy = False
                metrics.SINK_ERRORS.labels(kind=self.kind, sink=what).inc()
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                if self._consumer is not None and not paused and self._consumer.assignment():
                    self._consumer.pause(*self._consumer.assignment())
                    paused = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._s.retry_max_backoff_s)
        self.healthy = True
        if paused and self._consumer is not None:
            self._consumer.resume(*self._consumer.assignment())


def install_signal_handlers(runner: BatchRunner) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
