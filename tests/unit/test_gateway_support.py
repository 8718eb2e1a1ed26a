"""Support for the gateway tests (no tests here): the app on in-memory adapters: API keys in a dict,
admission in memory, Kafka as a list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from ingest_gateway.admission import MemoryAdmission
from ingest_gateway.app import create_app
from ingest_gateway.publisher import PublishFailed
from ingest_gateway.settings import GatewaySettings
from productgraph.db import KeyInfo
from schemas.records import EventRecord

KEY = "pgk_test_key"
PROJECT_ID = "0192f0c2-0000-7000-8000-000000000001"
ORG_ID = "0192f0c2-0000-7000-8000-0000000000aa"
SLUG = "shop"


class FakeKafka:
    """Kafka as a list: keeps each published record decoded, as the processors would read it."""

    def __init__(self) -> None:
        self.records: list[EventRecord] = []
        self.fail = False
        self.started = False
        self.delay = 0.0  # seconds until "acknowledged"

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def ping(self) -> bool:
        return self.started and not self.fail

    async def publish(self, records: Sequence[tuple[bytes, bytes]]) -> None:
        if self.fail:
            raise PublishFailed("kafka is down (fake)")
        await asyncio.sleep(self.delay)
        decoded = [EventRecord.decode(value) for _, value in records]
        assert [key for key, _ in records] == [r.key for r in decoded], "key is project_id:session.id"
        self.records.extend(decoded)


@dataclass
class FakeKeys:
    keys: dict[str, KeyInfo] = field(default_factory=dict)
    down: bool = False
    lookups: int = 0

    async def __call__(self, key: str) -> KeyInfo | None:
        self.lookups += 1
        if self.down:
            raise ConnectionError("postgres is down (fake)")
        return self.keys.get(key)


@dataclass
class Gateway:
    client: httpx.AsyncClient
    kafka: FakeKafka
    keys: FakeKeys
    admission: MemoryAdmission

    async def post(self, body: Any = None, *, key: str | None = KEY, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if key is not None:
            headers.setdefault("X-PG-API-Key", key)
        if body is not None:
            kw["json"] = body
        return await self.client.post("/v1/events", headers=headers, **kw)


@asynccontextmanager
async def gateway(settings: dict[str, Any] | None = None, **project: Any) -> AsyncIterator[Gateway]:
    keys = FakeKeys({KEY: KeyInfo(PROJECT_ID, ORG_ID, SLUG, dict(project))})
    kafka = FakeKafka()
    admission = MemoryAdmission()
    app = create_app(GatewaySettings(**(settings or {})), key_lookup=keys, admission=admission, publisher=kafka)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client,
    ):
        for _ in range(50):
            if kafka.started:
                break
            await asyncio.sleep(0.01)
        yield Gateway(client, kafka, keys, admission)


def now_iso(delta_s: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event(i: int = 0, **overrides: Any) -> dict[str, Any]:
    """A valid event; a value of ``...`` removes the key."""
    base: dict[str, Any] = {
        "event_id": f"e-{i}",
        "project_id": SLUG,
        "session.id": "s-1",
        "event.type": "page.view",
        "event.timestamp": now_iso(-1),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not ...}
