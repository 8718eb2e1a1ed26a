"""Kafka publishing with acks=all: a batch counts as accepted only when every record is acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from schemas.records import EventRecord
from schemas.topics import EVENTS

__all__ = ["EventPublisher", "PublishFailed"]


class PublishFailed(Exception):
    """Kafka did not acknowledge in time (503: nothing is reported accepted)."""


class EventPublisher:
    def __init__(self, bootstrap: str, *, idempotence: bool, linger_ms: int, max_batch_bytes: int, timeout_s: float):
        self._timeout_s = timeout_s
        self._config: dict[str, object] = dict(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=idempotence,
            linger_ms=linger_ms,
            max_batch_size=max_batch_bytes,
            max_request_size=2 * 1024 * 1024,
            request_timeout_ms=int(timeout_s * 1000),
            client_id="productgraph-gateway",
        )
        self._producer: AIOKafkaProducer | None = None

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def start(self) -> None:
        """Connect (inside the running loop); a failed attempt leaves nothing behind, so it can be retried."""
        producer = AIOKafkaProducer(**self._config)
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, records: Sequence[EventRecord]) -> None:
        """Send every record and wait for all acknowledgements, or raise :class:`PublishFailed`."""
        if not records:
            return
        producer = self._producer
        if producer is None:
            raise PublishFailed("producer not connected")
        try:
            async with asyncio.timeout(self._timeout_s):
                futures = [await producer.send(EVENTS.name, value=r.encode(), key=r.key) for r in records]
                await asyncio.gather(*futures)
        except Exception as exc:  # any broker/client failure means: not acknowledged
            raise PublishFailed(str(exc) or type(exc).__name__) from exc

    async def ping(self) -> bool:
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(2):
                await self._producer.client.fetch_all_metadata()
            return True
        except Exception:
            return False
