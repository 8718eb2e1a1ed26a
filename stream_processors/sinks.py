"""Sinks: where a processor's batch becomes durable.  ``flush`` returns only when the data is stored, or
raises; the runner commits offsets only after every sink of the batch flushed.

Both sinks tolerate redelivery: ClickHouse ``events`` is a ReplacingMergeTree keyed by the event, and the
Redis session update is idempotent per event id (a set of seen ids per live session), so a batch replayed
after a crash changes nothing.  This holds without broker offsets, so it also survives a broker restart.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import redis.asyncio as aioredis
from clickhouse_connect.driver.client import Client

from schemas.records import EventRecord
from schemas.rows import EVENT_COLUMNS, event_row

__all__ = ["ClickHouseEventSink", "RedisSessionSink", "Sink"]


class Sink(Protocol):
    name: str

    def add(self, record: EventRecord) -> None: ...

    def pending(self) -> int: ...

    async def flush(self) -> None: ...

    async def ping(self) -> bool: ...


class ClickHouseEventSink:
    """Batches ``events`` rows; one INSERT with explicit columns per flush."""

    name = "clickhouse"

    def __init__(self, client: Client, table: str = "events") -> None:
        self._client = client
        self._table = table
        self._rows: list[list[Any]] = []

    def add(self, record: EventRecord) -> None:
        self._rows.append(event_row(record))

    def pending(self) -> int:
        return len(self._rows)

    async def flush(self) -> None:
        if not self._rows:
            return
        rows = self._rows
        await asyncio.to_thread(self._client.insert, self._table, rows, column_names=EVENT_COLUMNS)
        self._rows = []

    async def ping(self) -> bool:
        try:
            return bool(await asyncio.to_thread(self._client.ping))
        except Exception:
            return False


# KEYS: session hash, seen-event-id set.  ARGV: event_id, ts_ms, ttl_s, event_type, user_id, page_path.
# Counts an event once; start/last are min/max, so arrival order does not matter.
_SESSION_UPDATE = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'event_count', 1)
  local ts = tonumber(ARGV[2])
  local started = tonumber(redis.call('HGET', KEYS[1], 'started_ms'))
  if started == nil or ts < started then redis.call('HSET', KEYS[1], 'started_ms', ARGV[2]) end
  local last = tonumber(redis.call('HGET', KEYS[1], 'last_ms'))
  if last == nil or ts >= last then
    redis.call('HSET', KEYS[1], 'last_ms', ARGV[2], 'last_event_type', ARGV[4])
    if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'current_page', ARGV[6]) end
  end
  if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'user_id', ARGV[5]) end
  if ARGV[4] == 'page.view' then redis.call('HINCRBY', KEYS[1], 'page_views', 1) end
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
"""


def session_key(project_id: str, session_id: str) -> str:
    return f"session:{project_id}:{session_id}"


class RedisSessionSink:
    """Live session state in Redis: ``session:{project_id}:{session_id}`` (hash), TTL refreshed per event."""

    name = "redis"

    def __init__(self, redis: aioredis.Redis, ttl_s: int) -> None:
        self._redis = redis
        self._ttl_s = ttl_s
        self._script = redis.register_script(_SESSION_UPDATE)
        self._records: list[EventRecord] = []

    def add(self, record: EventRecord) -> None:
        self._records.append(record)

    def pending(self) -> int:
        return len(self._records)

    async def flush(self) -> None:
        if not self._records:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for r in self._records:
                key = session_key(r.project_id, r.session_id)
                user = r.fields.get("user.id")
                page = r.fields.get("page.path") if r.event_type == "page.view" else ""
                await self._script(
                    keys=[key, key + ":seen"],
                    args=[r.event_id, r.ts_ms, self._ttl_s, r.event_type, user or "", page or ""],
                    client=pipe,
                )
            await pipe.execute()
        self._records = []

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False
