"""Sinks: where a processor's batch becomes durable.  ``add`` buffers (pure, may raise for a record that
cannot be processed: the runner dead-letters it); ``flush`` returns only when the data is stored, or
raises, and may be called again after it raised (it resumes where it failed); the runner commits offsets
only after every sink of the batch flushed.

Every sink tolerates redelivery.  ClickHouse ``events`` is a ReplacingMergeTree keyed by the event (read
with FINAL), and each insert carries an ``insert_deduplication_token`` derived from its content, so an
insert retried after an ambiguous failure (or a batch replayed with the same content) adds no second part.
The session sink (:mod:`stream_processors.sessions`) is idempotent per event id.  None of this depends on
broker offsets, so it also survives a broker that lost its committed offsets.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from clickhouse_connect.driver.client import Client

from schemas.fields import FIELDS_BY_NAME, Kind
from schemas.records import EventRecord
from schemas.rows import EVENT_COLUMNS, event_row

__all__ = [
    "NO_ORIGIN",
    "ClickHouseEventSink",
    "ClickHouseWriter",
    "MemoryRowWriter",
    "Origin",
    "RowWriter",
    "Sink",
    "check_record",
    "content_token",
]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a record was read: its partition and offset (the receive order within a session)."""

    partition: int = -1
    offset: int = 0


NO_ORIGIN = Origin()


class Sink(Protocol):
    name: str

    def add(self, record: EventRecord, origin: Origin = NO_ORIGIN) -> None: ...

    def pending(self) -> int: ...

    async def flush(self) -> None: ...

    async def ping(self) -> bool: ...


_MAX_MS = 4_102_444_800_000  # 2100-01-01: inside ClickHouse DateTime64 and Python datetime
_NUMBER_KINDS = {Kind.INT: (int,), Kind.FLOAT: (int, float), Kind.DURATION: (int, float), Kind.UNIT_FLOAT: (int, float)}
_uuids: dict[str, bool] = {}


def _is_uuid(value: str) -> bool:
    known = _uuids.get(value)
    if known is None:
        try:
            uuid.UUID(value)
            known = True
        except ValueError:
            known = False
        if len(_uuids) < 100_000:
            _uuids[value] = known
    return known


def check_record(record: EventRecord) -> None:
    """Raise ValueError for a record that decodes but that ClickHouse would refuse at flush time (where
    it would stall its partition): the gateway never publishes one, a hand-made or replayed record might."""
    if not (_is_uuid(record.org_id) and _is_uuid(record.project_id)):
        raise ValueError("record: org_id and project_id must be UUIDs")
    for name, ms in (
        ("ts_ms", record.ts_ms),
        ("received_ms", record.received_ms),
        ("client_ts_ms", record.client_ts_ms),
    ):
        if ms is not None and not 0 <= ms < _MAX_MS:
            raise ValueError(f"record: {name} out of range")
    for name, value in record.fields.items():
        spec = FIELDS_BY_NAME.get(name)
        if spec is None or value is None:
            continue
        allowed = _NUMBER_KINDS.get(spec.kind, (str,))
        if not isinstance(value, allowed) or isinstance(value, bool):
            raise ValueError(f"record: {name} must be {spec.kind.value}")


def content_token(kind: str, parts: Iterable[str]) -> str:
    """An ``insert_deduplication_token``: equal for equal content, so a repeated insert is dropped."""
    h = hashlib.blake2b(kind.encode(), digest_size=16)
    for p in parts:
        h.update(b"\x00")
        h.update(p.encode())
    return f"{kind}-{h.hexdigest()}"


class RowWriter(Protocol):
    """Explicit-column inserts into ClickHouse (one implementation: :class:`ClickHouseWriter`)."""

    async def insert(self, table: str, rows: list[list[Any]], columns: Sequence[str], token: str) -> None: ...

    async def ping(self) -> bool: ...


class ClickHouseWriter:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def insert(self, table: str, rows: list[list[Any]], columns: Sequence[str], token: str) -> None:
        settings = {"insert_deduplication_token": token}
        await asyncio.to_thread(self.client.insert, table, rows, column_names=list(columns), settings=settings)

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self.client.ping))
        except Exception:
            return False


@dataclass
class MemoryRowWriter:
    """In-memory :class:`RowWriter`: ``inserts`` keeps (table, rows, columns, token); ``fail`` raises."""

    inserts: list[tuple[str, list[list[Any]], tuple[str, ...], str]] = field(default_factory=list)
    fail: bool = False

    async def insert(self, table: str, rows: list[list[Any]], columns: Sequence[str], token: str) -> None:
        if self.fail:
            raise ConnectionError("clickhouse down")
        self.inserts.append((table, list(rows), tuple(columns), token))

    async def ping(self) -> bool:
        return not self.fail


class ClickHouseEventSink:
    """Batches ``events`` rows; one INSERT with explicit columns and a dedup token per flush."""

    name = "clickhouse"

    def __init__(self, client: Client | RowWriter, table: str = "events") -> None:
        self._writer: RowWriter = ClickHouseWriter(client) if isinstance(client, Client) else client
        self._table = table
        self._rows: list[list[Any]] = []
        self._keys: list[str] = []

    def add(self, record: EventRecord, origin: Origin = NO_ORIGIN) -> None:
        check_record(record)
        self._rows.append(event_row(record))
        self._keys.append(f"{record.project_id}:{record.event_id}")

    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> None:
        if not self._rows:
            return
        await self._writer.insert(self._table, self._rows, EVENT_COLUMNS, content_token(self._table, self._keys))
        self._rows, self._keys = [], []

    async def ping(self) -> bool:
        return await self._writer.ping()
