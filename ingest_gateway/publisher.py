"""Kafka publishing with acks=all: a batch counts as accepted only when every record is acknowledged.

Hot path: aiokafka's ``send()`` costs ~15 µs of Python per record, which alone caps one process near
60k records/s.  Instead, records go into one open record batch per partition (a *lane*), shared by every
request in flight: ``publish`` groups the already encoded ``(key, value)`` records by partition (key
``project:session``, partition chosen exactly as aiokafka's default partitioner does, cached per key),
appends each group to its lane's open batch in one call, and waits for the
futures of the batches it touched.  Each lane's task hands its open batch to ``send_batch`` as soon as the
previous batch of that partition has drained, so batches grow with load and a lone request is sent at
once (no linger).  The batches are :class:`~ingest_gateway.kafka_batch.KafkaRecordBatch` (written in one
piece; aiokafka's builder re-copies its buffer as it grows).  ~1 µs per record, hardware CRC included.

Failure: any error or a timeout of ``timeout_s`` raises :class:`PublishFailed` (503, nothing accepted;
records already handed to Kafka may still arrive: the SDK's retry makes a duplicate the sinks absorb).
The publisher then marks itself down: further publishes fail at once (no queue builds up while Kafka is
away) and a probe fetches cluster metadata every ``probe_interval_s`` until the broker answers and the
topic exists again; then publishing resumes, with no restart.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from ingest_gateway.batch import KafkaRecord
from ingest_gateway.kafka_batch import KafkaRecordBatch
from schemas.topics import EVENTS

__all__ = ["EventPublisher", "PublishFailed"]

log = logging.getLogger("productgraph.gateway.publisher")
_partitioner = DefaultPartitioner()


class PublishFailed(Exception):
    """Kafka did not acknowledge in time (503: nothing is reported accepted)."""


def _settle(done: asyncio.Future[None], delivery: asyncio.Future[Any]) -> None:
    if done.done():
        return
    if delivery.cancelled():
        done.set_exception(PublishFailed("delivery cancelled"))
    elif (exc := delivery.exception()) is not None:
        done.set_exception(PublishFailed(str(exc) or type(exc).__name__))
    else:
        done.set_result(None)


def _retrieved(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # nobody may be left waiting: do not warn "exception never retrieved"


class _Lane:
    """The open batch of one partition and the task that hands batches to the producer in order."""

    def __init__(
        self, producer: AIOKafkaProducer, topic: str, partition: int, max_queued: int, max_batch_bytes: int
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._partition = partition
        self._max_queued = max_queued
        self._max_batch_bytes = max_batch_bytes
        self._open: KafkaRecordBatch | None = None
        self._open_done: asyncio.Future[None] | None = None
        self._full: collections.deque[tuple[KafkaRecordBatch, asyncio.Future[None]]] = collections.deque()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"kafka-lane-{partition}")

    def add(self, records: Sequence[KafkaRecord]) -> list[asyncio.Future[None]]:
        """Append records of this partition, in order; the futures of the batches they went into."""
        futures: list[asyncio.Future[None]] = []
        i, n = 0, len(records)
        while True:
            if self._open is not None:
                assert self._open_done is not None
                j = self._open.extend(records, i)
                if j > i:
                    futures.append(self._open_done)
                    i = j
                if i == n:
                    return futures
                if len(self._full) >= self._max_queued:
                    raise PublishFailed(f"partition {self._partition}: too many batches waiting")
                self._full.append((self._open, self._open_done))
            self._open = KafkaRecordBatch(self._max_batch_bytes)  # the first record always fits
            self._open_done = done = asyncio.get_running_loop().create_future()
            done.add_done_callback(_retrieved)
            self._wake.set()

    async def _run(self) -> None:
        while True:
            done: asyncio.Future[None] | None
            batch: KafkaRecordBatch | None
            if self._full:
                batch, done = self._full.popleft()
            elif self._open is not None:
                batch, done = self._open, self._open_done
                self._open = self._open_done = None
            else:
                self._wake.clear()
                await self._wake.wait()
                continue
            assert batch is not None and done is not None
            try:  # waits while the previous batch of this partition is still queued in the producer
                delivery = await self._producer.send_batch(batch, self._topic, partition=self._partition)
            except Exception as exc:
                if not done.done():
                    done.set_exception(PublishFailed(str(exc) or type(exc).__name__))
                continue
            delivery.add_done_callback(lambda d, done=done: _settle(done, d))

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for _, done in [*self._full, (None, self._open_done)]:
            if done is not None and not done.done():
                done.set_exception(PublishFailed("publisher stopped"))


class EventPublisher:
    def __init__(
        self,
        bootstrap: str,
        *,
        idempotence: bool,
        max_batch_bytes: int,
        timeout_s: float,
        topic: str = EVENTS.name,
        probe_interval_s: float = 0.5,
        max_queued_batches: int = 64,
    ):
        self._topic = topic
        self._timeout_s = timeout_s
        self._probe_interval_s = probe_interval_s
        self._max_queued = max_queued_batches
        self._max_batch_bytes = max_batch_bytes
        self._config: dict[str, object] = dict(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=idempotence,
            linger_ms=0,
            max_batch_size=max_batch_bytes,
            max_request_size=max(2 * max_batch_bytes, 2 * 1024 * 1024),
            request_timeout_ms=int(timeout_s * 1000),
            client_id="productgraph-gateway",
        )
        self._producer: AIOKafkaProducer | None = None
        self._partitions: list[int] = []
        self._lanes: dict[int, _Lane] = {}
        self._key_partition: dict[bytes, int] = {}
        self._down = False
        self._probe: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    @property
    def available(self) -> bool:
        """Connected and not known to be down (publishes are attempted)."""
        return self._producer is not None and not self._down

    async def start(self) -> None:
        """Connect (inside the running loop); a failed attempt leaves nothing behind, so it can be retried."""
        producer = AIOKafkaProducer(**self._config)
        try:
            await producer.start()
            partitions = await self._topic_partitions(producer)
            if not partitions:
                raise PublishFailed(f"topic {self._topic} does not exist")
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        self._use_partitions(partitions)

    async def _topic_partitions(self, producer: AIOKafkaProducer) -> list[int]:
        # All-topic metadata: asking for the topic by name could make a broker auto-create it.
        cluster = await producer.client.fetch_all_metadata()
        return sorted(cluster.partitions_for_topic(self._topic) or ())

    def _use_partitions(self, partitions: list[int]) -> None:
        if partitions == self._partitions:
            return
        assert self._producer is not None
        for lane in self._lanes.values():
            asyncio.get_running_loop().create_task(lane.close())
        self._partitions = partitions
        self._key_partition.clear()
        self._lanes = {
            p: _Lane(self._producer, self._topic, p, self._max_queued, self._max_batch_bytes) for p in partitions
        }

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
        for lane in self._lanes.values():
            await lane.close()
        self._lanes = {}
        self._partitions = []
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, records: Sequence[KafkaRecord]) -> None:
        """Send every ``(key, value)`` and wait for all acknowledgements, or raise :class:`PublishFailed`."""
        if not records:
            return
        if self._producer is None:
            raise PublishFailed("producer not connected")
        if self._down:
            raise PublishFailed("kafka unavailable")
        cache, partitions = self._key_partition, self._partitions
        groups: dict[int, list[KafkaRecord]] = {}  # per partition, in order
        for record in records:
            p = cache.get(record[0])
            if p is None:
                if len(cache) > 200_000:
                    cache.clear()
                p = cache[record[0]] = _partitioner(record[0], partitions, partitions)
            group = groups.get(p)
            if group is None:
                groups[p] = [record]
            else:
                group.append(record)
        waits: set[asyncio.Future[None]] = set()
        try:
            for p, group in groups.items():
                waits.update(self._lanes[p].add(group))
        except PublishFailed as exc:
            self._mark_down(exc)
            raise
        done, pending = await asyncio.wait(waits, timeout=self._timeout_s)
        if pending:
            timeout = PublishFailed(f"no acknowledgement within {self._timeout_s:g}s")
            self._mark_down(timeout)
            raise timeout
        for f in done:
            if (error := f.exception()) is not None:
                self._mark_down(error)
                raise error if isinstance(error, PublishFailed) else PublishFailed(str(error)) from error

    def _mark_down(self, exc: BaseException) -> None:
        if self._down:
            return
        log.warning("kafka publish failed (%s); answering 503 until the broker is back", exc)
        self._down = True
        self._probe = asyncio.get_running_loop().create_task(self._recover(), name="kafka-probe")

    async def _recover(self) -> None:
        while self._producer is not None:
            await asyncio.sleep(self._probe_interval_s)
            try:
                async with asyncio.timeout(max(self._probe_interval_s * 4, 2.0)):
                    partitions = await self._topic_partitions(self._producer)
            except Exception as exc:
                log.debug("kafka probe: %s", exc)
                continue
            if partitions:
                self._use_partitions(partitions)
                self._down = False
                log.warning("kafka is back; publishing again")
                return

    async def ping(self) -> bool:
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(2):
                return bool(await self._topic_partitions(self._producer))
        except Exception:
            return False
