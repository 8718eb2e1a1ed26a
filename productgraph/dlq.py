"""``productgraph dlq list|replay``: the dead-letter topic (``productgraph.dead-letters``) for operators.

A dead letter is the original record (key and value, unchanged) with headers ``error``, ``origin.topic``,
``origin.partition``, ``origin.offset`` and ``processor`` (stream_processors/runner.py).

* ``list`` reads the topic from the beginning to its end and prints the last ``--limit`` letters.  "The
  end" is the high watermark carried by fetch responses, not the broker's "latest offset" answer (wrong on
  the local Tansu broker).
* ``replay`` reads with its own consumer group (``<PG_CONSUMER_GROUP_PREFIX>-dlq-replay``) from that
  group's committed offset, publishes each letter's original key and value to its origin topic (acks=all,
  header ``replayed-from``), then commits: a letter is replayed once.  A crash between publishing and
  committing replays the last letters again, which the processors absorb (idempotent per event id).
  ``--dry-run`` prints what would be replayed and neither publishes nor commits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import ConsumerRecord

from schemas.topics import DEAD_LETTERS, EVENTS
from stream_processors.settings import ProcessorSettings

__all__ = ["DeadLetter", "dlq", "read_dead_letters", "replay_dead_letters"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    partition: int  # in the dead-letter topic
    offset: int
    key: bytes | None
    value: bytes | None
    error: str
    origin_topic: str
    origin_partition: int | None
    origin_offset: int | None
    processor: str

    @classmethod
    def of(cls, msg: ConsumerRecord) -> DeadLetter:
        h = {k: v.decode(errors="replace") for k, v in (msg.headers or ())}

        def num(name: str) -> int | None:
            return int(h[name]) if h.get(name, "").lstrip("-").isdigit() else None

        return cls(
            partition=msg.partition,
            offset=msg.offset,
            key=msg.key,
            value=msg.value,
            error=h.get("error", ""),
            origin_topic=h.get("origin.topic") or EVENTS.name,
            origin_partition=num("origin.partition"),
            origin_offset=num("origin.offset"),
            processor=h.get("processor", ""),
        )

    def line(self) -> str:
        key = self.key.decode(errors="replace") if self.key is not None else "-"
        origin = f"{self.origin_topic}/{self.origin_partition}@{self.origin_offset}"
        where = f"{self.partition}@{self.offset}"
        return f"{where}  origin={origin}  processor={self.processor}  key={key}  error={self.error}"


async def _read_to_end(
    consumer: AIOKafkaConsumer, on_letter: Callable[[DeadLetter], bool], idle_s: float = 2.0
) -> dict[TopicPartition, int]:
    """Feed letters from the consumer's positions to the end (fetch high watermark) to ``on_letter`` until
    it returns False; returns the next offset per partition of what was handed over."""
    done: dict[TopicPartition, int] = {}
    assigned = consumer.assignment()
    last_data = time.monotonic()
    while True:
        batch = await consumer.getmany(timeout_ms=300, max_records=1000)
        for tp, messages in batch.items():
            for msg in messages:
                if not on_letter(DeadLetter.of(msg)):
                    return done
                done[tp] = msg.offset + 1
            last_data = time.monotonic()
        if await _at_end(consumer, assigned) or time.monotonic() - last_data > idle_s:
            return done


async def _at_end(consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


async def _consumer(bootstrap: str, group_id: str | None) -> AIOKafkaConsumer:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group_id, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    await consumer.topics()  # loads the metadata partitions_for_topic answers from
    partitions = consumer.partitions_for_topic(DEAD_LETTERS.name) or {0}
    consumer.assign([TopicPartition(DEAD_LETTERS.name, p) for p in sorted(partitions)])
    return consumer


async def read_dead_letters(bootstrap: str) -> list[DeadLetter]:
    """Every dead letter, oldest first."""
    consumer = await _consumer(bootstrap, None)
    letters: list[DeadLetter] = []

    def keep(d: DeadLetter) -> bool:
        letters.append(d)
        return True

    try:
        await consumer.seek_to_beginning()
        await _read_to_end(consumer, keep)
    finally:
        await consumer.stop()
    return letters


async def replay_dead_letters(
    bootstrap: str, group_id: str, *, dry_run: bool = False, limit: int | None = None
) -> list[DeadLetter]:
    """Replay the letters after ``group_id``'s committed offset (at most ``limit``); returns them."""
    consumer = await _consumer(bootstrap, group_id)
    letters: list[DeadLetter] = []

    def take(d: DeadLetter) -> bool:
        if limit is not None and len(letters) >= limit:
            return False
        letters.append(d)
        return True

    try:
        next_offsets = await _read_to_end(consumer, take)
        if dry_run or not letters:
            return letters
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for d in letters:
                origin = f"{DEAD_LETTERS.name}/{d.partition}@{d.offset}".encode()
                await producer.send_and_wait(d.origin_topic, d.value, key=d.key, headers=[("replayed-from", origin)])
        finally:
            await producer.stop()
        await consumer.commit(next_offsets)
    finally:
        await consumer.stop()
    return letters


@click.group()
def dlq() -> None:
    """Dead letters: records a processor could not decode or process (topic productgraph.dead-letters)."""


@dlq.command("list")
@click.option("--limit", type=int, default=50, show_default=True, help="show the last N dead letters (0: all)")
def list_(limit: int) -> None:
    """Print dead letters: position, origin topic/partition@offset, processor, key and error."""
    letters = asyncio.run(read_dead_letters(ProcessorSettings().kafka_bootstrap))
    shown = letters[-limit:] if limit > 0 else letters
    for d in shown:
        click.echo(d.line())
    click.echo(f"{len(letters)} dead letter(s), {len(shown)} shown")


@dlq.command()
@click.option("--dry-run", is_flag=True, help="print what would be replayed; publish and commit nothing")
@click.option("--limit", type=int, default=None, help="replay at most N letters (the rest stay for next time)")
def replay(dry_run: bool, limit: int | None) -> None:
    """Publish dead letters not replayed yet back to their origin topic, then remember how far (once each)."""
    s = ProcessorSettings()
    group = f"{s.consumer_group_prefix}-dlq-replay"
    letters = asyncio.run(replay_dead_letters(s.kafka_bootstrap, group, dry_run=dry_run, limit=limit))
    for d in letters:
        click.echo(("would replay " if dry_run else "replayed ") + d.line())
    click.echo(f"{len(letters)} dead letter(s) {'to replay' if dry_run else 'replayed'} (group {group})")
