"""Sinks: where a processor's batch becomes durable.  ``add`` buffers (pure, may raise for a record that
cannot be processed: the runner dead-letters it); ``seal`` closes a batch; ``flush`` writes the sealed batch
(sealing first when nothing is sealed), returns only when the data is stored, or raises, and may be called
again after it raised (it resumes where it failed).  ``add`` may run while a ``flush`` is in progress: those
records belong to the next batch.  The runner commits a batch's offsets only after every sink flushed it.

Every sink tolerates redelivery.  ClickHouse ``events`` is a ReplacingMergeTree keyed by the event (read
with FINAL), and each insert carries an ``insert_deduplication_token`` derived from its content, so an
insert retried after an ambiguous failure (or a batch replayed with the same content) adds no second part.
Rows travel as ``JSONEachRow`` lines (:func:`schemas.rows.event_json_row`): ClickHouse
parses them, which costs this process far less than encoding ~60 columns as Native in Python.
The session sink (:mod:`stream_processors.sessions`) is idempotent per event id.  None of this depends on
broker offsets, so it also survives a broker that lost its committed offsets.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson
from clickhouse_connect.driver.client import Client

from schemas.fields import FIELDS, Kind
from schemas.records import EventRecord
from schemas.rows import EVENT_COLUMNS, EVENT_JSON_SETTINGS, event_json_row

__all__ = [
    "NO_ORIGIN",
    "ClickHouseEventSink",
    "ClickHouseWriter",
    "LineWriter",
    "MemoryRowWriter",
    "Origin",
    "RowWriter",
    "Sink",
    "check_record",
    "content_token",
]


class Origin(NamedTuple):
    """Where a record was read: its partition and offset (the receive order within a session).  A named
    tuple: one is built per record, in C."""

    partition: int = -1
    offset: int = 0


NO_ORIGIN = Origin()


class Sink(Protocol):
    name: str

    def add(self, record: EventRecord, origin: Origin = NO_ORIGIN) -> None: ...

    def pending(self) -> int: ...

    def seal(self) -> None:
        """Close the batch: the next ``flush`` writes exactly the records added before; records added
        meanwhile wait for the flush after it (the runner adds while the previous batch is written)."""
        ...

    async def flush(self) -> None: ...

    async def ping(self) -> bool: ...


_MAX_MS = 4_102_444_800_000  # 2100-01-01: inside ClickHouse DateTime64 and Python datetime
_INT64 = 1 << 63
_NUMBERS = frozenset({int, float})
_TYPES: dict[Kind, frozenset[type]] = {Kind.INT: frozenset({int}), Kind.FLOAT: _NUMBERS, Kind.DURATION: _NUMBERS,
                                       Kind.UNIT_FLOAT: _NUMBERS}  # fmt: skip
# Per known field: the exact value types its column takes (bool is not int here; decoded JSON has no subclasses).
_ALLOWED: dict[str, tuple[frozenset[type], str]] = {
    f.name: (_TYPES.get(f.kind, frozenset({str})), f.kind.value) for f in FIELDS
}
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
    if not (0 <= record.ts_ms < _MAX_MS and 0 <= record.received_ms < _MAX_MS):
        name = "ts_ms" if not 0 <= record.ts_ms < _MAX_MS else "received_ms"
        raise ValueError(f"record: {name} out of range")
    if record.client_ts_ms is not None and not 0 <= record.client_ts_ms < _MAX_MS:
        raise ValueError("record: client_ts_ms out of range")
    for name, value in record.fields.items():
        known = _ALLOWED.get(name)
        if known is None or value is None:
            continue
        if type(value) not in known[0]:
            raise ValueError(f"record: {name} must be {known[1]}")
        if type(value) is int and not -_INT64 <= value < _INT64:
            raise ValueError(f"record: {name} out of range")


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


class LineWriter(Protocol):
    """Explicit-column inserts of ``JSONEachRow`` lines (:func:`schemas.rows.event_json_row`)."""

    async def insert_lines(self, table: str, lines: Sequence[bytes], columns: Sequence[str], token: str) -> None: ...

    async def ping(self) -> bool: ...


class ClickHouseWriter:
    def __init__(self, client: Client) -> None:
        self.client = client

    async def insert(self, table: str, rows: list[list[Any]], columns: Sequence[str], token: str) -> None:
        settings = {"insert_deduplication_token": token}
        await asyncio.to_thread(self.client.insert, table, rows, column_names=list(columns), settings=settings)

    async def insert_lines(self, table: str, lines: Sequence[bytes], columns: Sequence[str], token: str) -> None:
        settings: dict[str, Any] = {**EVENT_JSON_SETTINGS, "insert_deduplication_token": token}
        body = b"\n".join(lines)
        await asyncio.to_thread(
            self.client.raw_insert, table, list(columns), body, settings=settings, fmt="JSONEachRow"
        )

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self.client.ping))
        except Exception:
            return False


@dataclass
class MemoryRowWriter:
    """In-memory :class:`RowWriter` and :class:`LineWriter`: ``inserts`` keeps (table, rows, columns, token),
    lines as their decoded JSON objects; ``fail`` raises."""

    inserts: list[tuple[str, list[Any], tuple[str, ...], str]] = field(default_factory=list)
    fail: bool = False

    async def insert(self, table: str, rows: list[list[Any]], columns: Sequence[str], token: str) -> None:
        if self.fail:
            raise ConnectionError("clickhouse down")
        self.inserts.append((table, list(rows), tuple(columns), token))

    async def insert_lines(self, table: str, lines: Sequence[bytes], columns: Sequence[str], token: str) -> None:
        if self.fail:
            raise ConnectionError("clickhouse down")
        self.inserts.append((table, [orjson.loads(line) for line in lines], tuple(columns), token))

    async def ping(self) -> bool:
        return not self.fail


class ClickHouseEventSink:
    """Batches ``events`` rows as ``JSONEachRow`` lines; one INSERT with explicit columns and a dedup token
    per flush."""

    name = "clickhouse"

    def __init__(self, client: Client | LineWriter, table: str = "events") -> None:
        self._writer: LineWriter = ClickHouseWriter(client) if isinstance(client, Client) else client
        self._table = table
        self._lines: list[bytes] = []
        self._keys: list[str] = []
        self._sealed: tuple[list[bytes], list[str]] | None = None

    def add(self, record: EventRecord, origin: Origin = NO_ORIGIN) -> None:
        check_record(record)
        line = event_json_row(record)  # raises (nothing appended) for a value JSON cannot carry
        self._lines.append(line)
        self._keys.append(f"{record.project_id}:{record.event_id}")

    def pending(self) -> int:
        return len(self._lines) + (len(self._sealed[0]) if self._sealed is not None else 0)

    def seal(self) -> None:
        """The next ``flush`` writes the rows added so far (and only those, however often it is retried)."""
        if self._sealed is not None:
            raise RuntimeError("clickhouse: the sealed batch was not flushed yet")
        self._sealed = (self._lines, self._keys)
        self._lines, self._keys = [], []

    async def flush(self) -> None:
        if self._sealed is None:
            self.seal()
        assert self._sealed is not None
        lines, keys = self._sealed
        if lines:
            await self._writer.insert_lines(self._table, lines, EVENT_COLUMNS, content_token(self._table, keys))
        self._sealed = None

    async def ping(self) -> bool:
        return await self._writer.ping()
