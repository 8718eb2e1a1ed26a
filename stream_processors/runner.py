"""The consumer loop every processor kind runs: fetch → decode → add to sinks → flush → commit.

Lifecycle (one asyncio task per process; :mod:`stream_processors.ops` serves /metrics, /health, /ready):

- ``getmany`` fetches records; each is decoded with ``schemas`` and added to every sink with its origin
  (partition, offset).  A record that cannot be decoded or that a sink refuses goes to the dead-letter
  topic (acknowledged by Kafka) with the error and origin in headers, and counts as processed.
- When the batch holds ``batch_max_records`` or its first record is ``batch_max_age_s`` old, it is sealed
  (every sink's ``seal``) and written in the background: every sink flushes it, in order; only then are its
  offsets (last + 1 per partition) committed.  Meanwhile the loop fetches and adds the next batch, so the
  CPU work of one batch overlaps the ClickHouse/Redis writes of the previous one.  One batch at most is in
  flight: sealing the next one first waits for it (flushed and committed), so batches are written and
  committed in order.  While it is being written, a due open batch keeps taking fetched records, up to
  ``batch_grow_records`` (so memory holds that plus one batch at most).  Nothing is committed that is not
  durable, so a SIGKILL at any moment means redelivery, never loss; sinks are idempotent.
- Adding and sealing hold one lock: the revocation callback (run by aiokafka's coordinator task, between
  two ``getmany`` calls of this loop) waits for the batch in flight, then flushes and commits exactly what
  was added, never half a fetch.  Records of a partition revoked meanwhile are skipped: the new owner reads
  them from the commit.
- A failing flush or commit pauses every assigned partition (no fetching, so memory stays bounded) and
  retries with exponential backoff until it succeeds, then resumes; the caller of ``flush`` is blocked
  meanwhile (backpressure), nothing is dropped.  aiokafka's heartbeat task keeps the group membership
  alive; an outage longer than ``max_poll_interval_ms`` (10 min) makes the member leave the group, and
  the next owner replays what was not committed.
- On partition revocation and on SIGTERM/SIGINT the batch in flight and the open batch are flushed and
  committed before letting go.

Consumer lag (``productgraph_processor_consumer_lag``) is ``max(fetch high watermark, last fetched + 1) -
committed`` per partition.  It never asks for the "latest offset" (ListOffsets), which the local Tansu
broker answers wrongly (start of the last batch + 1); the high watermark that comes back with every fetch
response is right there (tests/integration/test_processor_ops.py checks it).

Why aiokafka and not faust-streaming (the design card's choice).  Measured on faust-streaming 0.15
(tests/unit/test_runner_faust.py): an agent iterating ``stream.take_events(n, within)`` gets its batch
acked only when it asks for the next one, i.e. after the body, so a ClickHouse flush in the body *does*
precede the ack (and ``noack_take`` + ``Stream.ack`` give manual acks).  What faust does not give us:
the ack of a ``take``/``take_events`` batch sits in a ``finally``, so a body that raises (a sink down)
has its unstored batch acked and later committed by faust's commit timer; a faust sink must therefore
never raise, which is this loop's retry anyway.  Offsets are committed on faust's schedule
(``broker_commit_every``/interval), pausing partitions on backpressure, flushing our buffer on
revocation and reporting lag without ListOffsets would all be written against faust internals, and mode
adds an untyped service framework.  This loop keeps faust's worker shape (one process per kind, one
consumer group per kind, scale by processes up to the partition count) in one module of aiokafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError
from aiokafka.structs import ConsumerRecord

from schemas.records import EventRecord
from schemas.topics import DEAD_LETTERS, EVENTS
from stream_processors import metrics
from stream_processors.settings import ProcessorSettings
from stream_processors.sinks import Origin, Sink

__all__ = ["BatchRunner", "consumer_lag", "install_signal_handlers"]

log = logging.getLogger("productgraph.processor")

_Failed = tuple[ConsumerRecord, Exception]  # a record to dead-letter, and why


def consumer_lag(highwater: int | None, fetched_next: int | None, committed: int | None) -> int | None:
    """Records of a partition not yet committed: ``max(highwater, last fetched + 1) - committed``.

    ``highwater`` comes with fetch responses (None before the first one); ``fetched_next`` is the highest
    offset fetched + 1; ``committed`` is the group's offset (None: nothing committed, counted from 0).
    """
    known = [v for v in (highwater, fetched_next) if v is not None]
    if not known:
        return None
    return max(0, max(known) - (committed or 0))


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runner: BatchRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        await self._runner.flush_and_commit(reason="revoke", owned=set(revoked))
        self._runner.forget(revoked)

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        await self._runner.on_assigned(assigned)


class BatchRunner:
    def __init__(
        self, kind: str, sinks: Sequence[Sink], settings: ProcessorSettings, *, topic: str = EVENTS.name
    ) -> None:
        self.kind = kind
        self.topic = topic  # another topic of event records: tests isolate themselves with their own
        self.group_id = f"{settings.consumer_group_prefix}-{kind}"
        self._sinks = list(sinks)
        self._s = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._offsets: dict[TopicPartition, int] = {}
        self._fetched_next: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int | None] = {}
        self._batch_started: float | None = None
        self._batch_records = 0
        self._inflight: asyncio.Task[None] | None = None  # flush + commit of the sealed batch
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._records = metrics.RECORDS.labels(kind=kind)
        self.running = False  # between start and stop of the consumer
        self.finished = False  # run() returned or raised: the worker is no longer alive
        self.joined = False  # received an assignment (possibly empty) from the group
        self.healthy = True  # False while a flush or commit is being retried
        self.commits: list[str] = []  # reasons of the commits made (last 100), for tests and logs

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        s = self._s
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=s.kafka_bootstrap,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=s.batch_max_records,
            max_poll_interval_ms=600_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=2_000,
        )
        self._dlq = AIOKafkaProducer(
            bootstrap_servers=s.kafka_bootstrap,
            acks="all",
            enable_idempotence=s.kafka_idempotence,
            client_id=f"{self.group_id}-dlq",
        )
        self._consumer.subscribe([self.topic], listener=_Rebalance(self))
        try:
            await self._consumer.start()
            await self._dlq.start()
            self.running = True
            log.info("%s processor started (group %s)", self.kind, self.group_id)
            while not self._stopping.is_set():
                await self._take(await self._consumer.getmany(timeout_ms=100, max_records=s.batch_max_records))
            await self.flush_and_commit(reason="shutdown")
        finally:
            if self._inflight is not None and not self._inflight.done():
                self._inflight.cancel()  # only when run() itself is cancelled: nothing of it is committed
            self.running = False
            self.finished = True
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            with contextlib.suppress(Exception):
                await self._dlq.stop()
            log.info("%s processor stopped", self.kind)

    async def _take(self, fetched: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        """Add one fetch (of owned partitions) to the open batch; seal and start writing it once it is due.

        A due batch is sealed only when the previous one is written, so while that write is still going on
        and records keep arriving, the open batch takes them (up to ``batch_grow_records``) instead of
        leaving this loop idle: the CPU work of adding overlaps the flush's waits on ClickHouse and Redis,
        and the next flush covers more records per session.  (Before, the sessions kind's loop spent 57% of
        the pipeline bench waiting here; records/s went from 16-25k to 22-34k on this busy 2-core machine.)
        Without new records (caught up) or past that bound it waits for the write."""
        consumer = self._consumer
        assert consumer is not None
        async with self._lock:
            owned = consumer.assignment()
            for tp, messages in fetched.items():
                if tp not in owned:
                    continue
                for msg, exc in self._add_all(tp, messages):
                    await self._dead_letter(msg, exc)
                self._fetched_next[tp] = messages[-1].offset + 1
                self._records.inc(len(messages))
            self._report_lag()
        if self._due() and (not fetched or not self._writing() or self._batch_records >= self._s.batch_grow_records):
            await self.start_flush(reason="batch")

    async def _add(self, tp: TopicPartition, msg: ConsumerRecord) -> None:
        for failed, exc in self._add_all(tp, [msg]):
            await self._dead_letter(failed, exc)

    def _add_all(self, tp: TopicPartition, messages: Sequence[ConsumerRecord]) -> list[_Failed]:
        """Add a fetch of ``tp`` to every sink; returns the records to dead-letter (before anything is sealed,
        so before their offsets can be committed).  Synchronous: one coroutine per record was a tenth of the
        loop's own cost."""
        failed: list[_Failed] = []
        if not messages:
            return failed
        decode, sinks = EventRecord.decode, self._sinks
        for msg in messages:
            try:
                record = decode(msg.value)
                origin = Origin(msg.partition, msg.offset)
                for sink in sinks:
                    sink.add(record, origin)
            except Exception as exc:  # RecordDecodeError, or a sink refusing this record: never a crash
                # Sinks convert before they append, so the one that raised holds nothing of this record (an
                # earlier sink may: harmless, sinks are idempotent and a replay of the dead letter is too).
                failed.append((msg, exc))
        if self._batch_started is None:
            self._batch_started = time.monotonic()
        self._batch_records += len(messages)
        self._offsets[tp] = messages[-1].offset + 1
        return failed

    def _writing(self) -> bool:
        """A sealed batch is still being written."""
        return self._inflight is not None and not self._inflight.done()

    def _due(self) -> bool:
        if self._batch_started is None:
            return False
        return (
            self._batch_records >= self._s.batch_max_records
            or time.monotonic() - self._batch_started >= self._s.batch_max_age_s
        )

    async def _dead_letter(self, msg: ConsumerRecord, exc: Exception) -> None:
        headers = [
            ("error", f"{type(exc).__name__}: {exc}"[:1000].encode()),
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

    async def start_flush(self, reason: str) -> None:
        """Seal the open batch and write it in the background (after the batch in flight, if any)."""
        async with self._lock:
            await self._wait_inflight()
            if self._offsets:
                offsets, records = self._seal()
                self._inflight = asyncio.create_task(self._write(offsets, records, reason, None))

    async def flush_and_commit(self, reason: str, owned: set[TopicPartition] | None = None) -> None:
        """Make every sink durable, then commit the offsets of the partitions still ``owned`` (default:
        the current assignment): the batch in flight first, then what was added since.  Serialised with
        adding by the lock."""
        async with self._lock:
            await self._wait_inflight()
            if self._offsets:
                offsets, records = self._seal()
                await self._write(offsets, records, reason, owned)

    def _seal(self) -> tuple[dict[TopicPartition, int], int]:
        for sink in self._sinks:
            sink.seal()
        sealed = self._offsets, self._batch_records
        self._offsets, self._batch_records, self._batch_started = {}, 0, None
        return sealed

    async def _wait_inflight(self) -> None:
        if self._inflight is not None:
            await self._inflight  # retries until durable; raises only when cancelled
            self._inflight = None

    async def _write(
        self, offsets: dict[TopicPartition, int], records: int, reason: str, owned: set[TopicPartition] | None
    ) -> None:
        started = time.perf_counter()
        for sink in self._sinks:
            await self._retry(sink.flush, sink.name)
        consumer = self._consumer
        assert consumer is not None
        mine = owned if owned is not None else consumer.assignment()
        offsets = {tp: o for tp, o in offsets.items() if tp in mine}
        if offsets:
            await self._retry(lambda: self._commit(consumer, offsets), "kafka commit")
        metrics.BATCH_SECONDS.labels(kind=self.kind).observe(time.perf_counter() - started)
        metrics.BATCH_RECORDS.labels(kind=self.kind).observe(records)
        self.commits = [*self.commits[-99:], reason]
        log.debug("%s: committed %d records (%s)", self.kind, records, reason)
        self._report_lag()

    async def _commit(self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The partitions moved to another member: it will redeliver from the last commit, and every
            # sink is idempotent, so giving these offsets up is safe (and retrying could never succeed).
            log.warning("%s: commit refused after rebalance (%s); the new owner replays", self.kind, exc)
            return
        for tp, offset in offsets.items():
            self._committed[tp] = offset
            metrics.COMMITTED.labels(kind=self.kind, partition=str(tp.partition)).set(offset)

    async def on_assigned(self, assigned: Collection[TopicPartition]) -> None:
        self.joined = True
        log.info("%s: assigned partitions %s", self.kind, sorted(tp.partition for tp in assigned))
        consumer = self._consumer
        assert consumer is not None
        for tp in assigned:
            with contextlib.suppress(Exception):
                self._committed[tp] = await consumer.committed(tp)

    def forget(self, revoked: Collection[TopicPartition]) -> None:
        for tp in revoked:
            self._fetched_next.pop(tp, None)
            self._committed.pop(tp, None)
            with contextlib.suppress(KeyError):
                metrics.LAG.remove(self.kind, str(tp.partition))

    def assigned(self) -> list[int]:
        """Partitions this runner owns now."""
        consumer = self._consumer
        return sorted(tp.partition for tp in consumer.assignment()) if consumer is not None else []

    def lag(self) -> dict[int, int]:
        """Consumer lag per assigned partition (see :func:`consumer_lag`)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        out: dict[int, int] = {}
        for tp in consumer.assignment():
            value = consumer_lag(consumer.highwater(tp), self._fetched_next.get(tp), self._committed.get(tp))
            if value is not None:
                out[tp.partition] = value
        return out

    def _report_lag(self) -> None:
        for partition, value in self.lag().items():
            metrics.LAG.labels(kind=self.kind, partition=str(partition)).set(value)

    async def readiness(self) -> dict[str, bool]:
        """What ``/ready`` reports: the consumer joined its group, no flush is failing, every sink answers."""
        checks = {"consumer": self.running and self.joined, "flowing": self.healthy}
        for sink in self._sinks:
            try:
                checks[sink.name] = await asyncio.wait_for(sink.ping(), timeout=2.0)
            except Exception:
                checks[sink.name] = False
        return checks

    async def _retry(self, action: Callable[[], Awaitable[None]], what: str) -> None:
        """Run ``action`` until it succeeds, pausing consumption meanwhile (backpressure, not a busy loop)."""
        delay = min(0.2, self._s.retry_max_backoff_s)
        paused: set[TopicPartition] = set()
        while True:
            try:
                await action()
                break
            except Exception as exc:
                self.healthy = False
                metrics.SINK_ERRORS.labels(kind=self.kind, sink=what).inc()
                log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
                if self._consumer is not None and not paused and self._consumer.assignment():
                    paused = set(self._consumer.assignment())
                    self._consumer.pause(*paused)
                    metrics.PAUSED.labels(kind=self.kind).set(1)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._s.retry_max_backoff_s)
        self.healthy = True
        if paused and self._consumer is not None:
            self._consumer.resume(*(paused & self._consumer.assignment()))
            metrics.PAUSED.labels(kind=self.kind).set(0)


def install_signal_handlers(runner: BatchRunner) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runner.request_stop)
