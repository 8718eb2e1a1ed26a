"""Reading back what reached the events topic, for tests: a throwaway consumer group from the start."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer

from schemas.records import EventRecord, RecordDecodeError
from schemas.topics import EVENTS


async def project_messages(
    bootstrap: str, project_id: str, want: int, *, limit_s: float = 20.0, settle_s: float = 0.0
) -> list[Any]:
    """The events topic's messages of one project: until ``want`` arrived (or ``limit_s`` passed), then any
    more that arrive within ``settle_s`` (to catch a copy that should not be there)."""
    consumer = AIOKafkaConsumer(
        EVENTS.name,
        bootstrap_servers=bootstrap,
        group_id=f"t-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []

    def ours(value: bytes | None) -> bool:
        try:
            return EventRecord.decode(value).project_id == project_id
        except RecordDecodeError:  # another test's poison record
            return False

    async def poll() -> None:
        for msgs in (await consumer.getmany(timeout_ms=500)).values():
            found.extend(m for m in msgs if ours(m.value))

    try:
        deadline = time.monotonic() + limit_s
        while len(found) < want and time.monotonic() < deadline:
            await poll()
        if settle_s:
            await asyncio.sleep(settle_s)
            await poll()
    finally:
        await consumer.stop()
    return found
