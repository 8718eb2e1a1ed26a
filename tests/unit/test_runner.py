"""The consumer loop's commit discipline with a fake consumer and fake sinks (no servers): offsets are
committed only after every sink flushed, a failing sink pauses the partitions and nothing is committed
until it recovers, only owned partitions are committed, and a batch written in the background commits
only its own records, before the next batch is written.  Plus the lag formula."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas.records import EventRecord
from stream_processors.runner import BatchRunner, consumer_lag
from stream_processors.settings import ProcessorSettings
from stream_processors.sinks import NO_ORIGIN, Origin

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


@dataclass
class FakeConsumer:
    owned: set[TopicPartition] = field(default_factory=lambda: {TP0, TP1})
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    paused: set[TopicPartition] = field(default_factory=set)
    log: list[str] | None = None

    def assignment(self) -> set[TopicPartition]:
        return set(self.owned)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.log is not None:
            self.log.append("commit")
        self.commits.append(dict(offsets))

    def highwater(self, tp: TopicPartition) -> int | None:
        return None


@dataclass
class FakeSink:
    name: str
    log: list[str]
    fail: int = 0  # the next flushes that raise
    added: list[str] = field(default_factory=list)
    sealed: list[str] | None = None
    stored: list[str] = field(default_factory=list)
    gate: asyncio.Event | None = None  # when set: a flush waits for it (a slow ClickHouse)

    def add(self, record: EventRecord, origin: Origin = NO_ORIGIN) -> None:
        self.added.append(record.event_id)

    def pending(self) -> int:
        return len(self.added) + len(self.sealed or [])

    def seal(self) -> None:
        assert self.sealed is None, "sealed twice without a flush"
        self.sealed, self.added = self.added, []
        self.log.append(f"seal {self.name}")

    async def flush(self) -> None:
        if self.sealed is None:
            self.seal()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise ConnectionError(f"{self.name} down")
        self.log.append(f"flush {self.name}")
        self.stored += self.sealed or []
        self.sealed = None

    async def ping(self) -> bool:
        return not self.fail


def _msg(tp: TopicPartition, offset: int) -> ConsumerRecord:
    rec = EventRecord("o", "p", f"e{tp.partition}-{offset}", "s", "ui.click", 1, 1)
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, rec.key, rec.encode(), None, 0, 0, [])


def _runner(*sinks: FakeSink) -> tuple[BatchRunner, FakeConsumer]:
    runner = BatchRunner("test", list(sinks), ProcessorSettings(retry_max_backoff_s=0.01))
    consumer = FakeConsumer(log=sinks[0].log)
    runner._consumer = consumer
    return runner, consumer


async def test_commit_comes_after_every_sink_flushed() -> None:
    log: list[str] = []
    a, b = FakeSink("a", log), FakeSink("b", log)
    runner, consumer = _runner(a, b)
    for tp, off in [(TP0, 5), (TP0, 6), (TP1, 0)]:
        await runner._add(tp, _msg(tp, off))
    await runner.flush_and_commit("batch")
    assert log == ["seal a", "seal b", "flush a", "flush b", "commit"]
    assert consumer.commits == [{TP0: 7, TP1: 1}]
    await runner.flush_and_commit("batch")
    assert len(consumer.commits) == 1, "nothing new, no commit"


async def test_a_failing_sink_pauses_and_commits_nothing_until_it_recovers() -> None:
    log: list[str] = []
    a = FakeSink("a", log, fail=3)
    runner, consumer = _runner(a)
    await runner._add(TP0, _msg(TP0, 0))
    flushing = asyncio.create_task(runner.flush_and_commit("batch"))
    await asyncio.sleep(0.005)
    assert consumer.paused == {TP0, TP1} and not runner.healthy and consumer.commits == []
    await flushing
    assert consumer.paused == set() and runner.healthy
    assert consumer.commits == [{TP0: 1}] and a.stored == ["e0-0"]


async def test_only_owned_partitions_are_committed() -> None:
    log: list[str] = []
    runner, consumer = _runner(FakeSink("a", log))
    await runner._add(TP0, _msg(TP0, 3))
    await runner._add(TP1, _msg(TP1, 8))
    consumer.owned = {TP1}  # TP0 went to another member meanwhile: it replays from the last commit
    await runner.flush_and_commit("batch")
    assert consumer.commits == [{TP1: 9}]


def test_consumer_lag() -> None:
    assert consumer_lag(None, None, None) is None
    assert consumer_lag(100, 40, 30) == 70  # the fetch high watermark
    assert consumer_lag(None, 40, 30) == 10  # before any high watermark: what was fetched
    assert consumer_lag(21, 40, 30) == 10  # a high watermark behind what was fetched is not believed
    assert consumer_lag(50, None, None) == 50  # nothing committed: from offset 0
    assert consumer_lag(50, 50, 50) == 0


async def test_a_batch_in_flight_commits_only_its_records_and_the_next_waits_for_it() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    a = FakeSink("a", log, gate=gate)
    runner, consumer = _runner(a)
    await runner._add(TP0, _msg(TP0, 0))
    await runner._add(TP1, _msg(TP1, 0))
    await runner.start_flush("batch")  # returns at once: the write runs in the background
    for off in (1, 2):
        await runner._add(TP0, _msg(TP0, off))  # added while the first batch is being written
    await asyncio.sleep(0.01)
    assert consumer.commits == [] and a.sealed == ["e0-0", "e1-0"] and a.added == ["e0-1", "e0-2"]
    second = asyncio.create_task(runner.start_flush("batch"))  # must wait for the first batch
    await asyncio.sleep(0.01)
    assert not second.done() and a.added == ["e0-1", "e0-2"], "not sealed while the first batch is in flight"
    gate.set()
    await second
    await runner.flush_and_commit("shutdown")  # waits for the second batch, nothing open is left
    assert consumer.commits == [{TP0: 1, TP1: 1}, {TP0: 3}]
    assert a.stored == ["e0-0", "e1-0", "e0-1", "e0-2"]
    assert log == ["seal a", "flush a", "commit", "seal a", "flush a", "commit"]


async def test_revocation_waits_for_the_batch_in_flight_and_commits_both() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    a = FakeSink("a", log, gate=gate)
    runner, consumer = _runner(a)
    await runner._add(TP0, _msg(TP0, 4))
    await runner.start_flush("batch")
    await runner._add(TP1, _msg(TP1, 9))
    revoking = asyncio.create_task(runner.flush_and_commit("revoke", owned={TP0, TP1}))
    await asyncio.sleep(0.01)
    assert not revoking.done() and consumer.commits == []
    gate.set()
    await revoking
    assert consumer.commits == [{TP0: 5}, {TP1: 10}] and a.stored == ["e0-4", "e1-9"]


async def test_a_due_batch_keeps_growing_while_the_previous_one_is_written_up_to_the_bound() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    a = FakeSink("a", log, gate=gate)
    runner = BatchRunner("test", [a], ProcessorSettings(batch_max_records=2, batch_grow_records=5))
    consumer = FakeConsumer(log=log)
    runner._consumer = consumer
    await runner._take({TP0: [_msg(TP0, 0), _msg(TP0, 1)]})  # due: sealed, written in the background
    assert a.sealed == ["e0-0", "e0-1"]
    await runner._take({TP0: [_msg(TP0, 2), _msg(TP0, 3)]})  # due, but the write goes on: keeps adding
    await runner._take({TP1: [_msg(TP1, 0)]})
    assert a.added == ["e0-2", "e0-3", "e1-0"] and a.sealed == ["e0-0", "e0-1"]
    taking = asyncio.create_task(runner._take({TP1: [_msg(TP1, 1), _msg(TP1, 2)]}))  # 5 records: the bound
    await asyncio.sleep(0.01)
    assert not taking.done() and consumer.commits == [], "past the bound it waits for the write"
    gate.set()
    await taking  # the first write is done and the grown batch sealed as one
    await runner.flush_and_commit("shutdown")
    assert a.stored == ["e0-0", "e0-1", "e0-2", "e0-3", "e1-0", "e1-1", "e1-2"]
    assert log == ["seal a", "flush a", "commit", "seal a", "flush a", "commit"]
    assert consumer.commits == [{TP0: 2}, {TP0: 4, TP1: 3}]


async def test_a_due_batch_without_new_records_waits_for_the_write_and_is_sealed() -> None:
    log: list[str] = []
    gate = asyncio.Event()
    a = FakeSink("a", log, gate=gate)
    runner = BatchRunner("test", [a], ProcessorSettings(batch_max_records=1, batch_grow_records=100))
    runner._consumer = FakeConsumer(log=log)
    await runner._take({TP0: [_msg(TP0, 0)]})
    await runner._take({TP0: [_msg(TP0, 1)]})
    assert a.added == ["e0-1"]
    waiting = asyncio.create_task(runner._take({}))  # caught up: nothing to add while waiting
    await asyncio.sleep(0.01)
    assert not waiting.done()
    gate.set()
    await waiting
    assert log[:3] == ["seal a", "flush a", "commit"] and log[3] == "seal a", "sealed once the write was done"
    await runner.flush_and_commit("shutdown")
    assert a.stored == ["e0-0", "e0-1"]


async def test_records_that_fail_are_dead_lettered_and_the_others_added() -> None:
    log: list[str] = []
    a = FakeSink("a", log)
    runner, consumer = _runner(a)
    letters: list[tuple[int, str]] = []

    async def dead_letter(msg: ConsumerRecord, exc: Exception) -> None:
        letters.append((msg.offset, type(exc).__name__))

    runner._dead_letter = dead_letter  # type: ignore[method-assign]
    bad = ConsumerRecord(TP0.topic, 0, 1, 0, 0, b"k", b"not json", None, 0, 0, [])
    await runner._take({TP0: [_msg(TP0, 0), bad, _msg(TP0, 2)]})
    assert a.added == ["e0-0", "e0-2"] and letters == [(1, "RecordDecodeError")]
    await runner.flush_and_commit("batch")
    assert consumer.commits == [{TP0: 3}]
