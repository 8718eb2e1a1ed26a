"""API key → project/org, cached for a short TTL so the hot path does not hit Postgres per request.

A revoked key stops working within ``ttl_s`` (the entry expires and the next lookup finds nothing);
unknown keys are cached too (negative entries), so a flood of bad keys costs Postgres one query per key
and TTL.  Concurrent misses of one key share a single lookup.  A failed lookup (Postgres down) raises to
the caller (503) and is not cached.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["KeyCache"]

T = TypeVar("T")


class KeyCache(Generic[T]):
    def __init__(self, lookup: Callable[[str], Awaitable[T | None]], ttl_s: float, max_entries: int = 100_000):
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, T | None]] = {}
        self._inflight: dict[str, asyncio.Future[T | None]] = {}

    async def get(self, key: str, now: float | None = None) -> T | None:
        now = time.monotonic() if now is None else now
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        shared = self._inflight.get(key)
        if shared is not None:
            return await asyncio.shield(shared)
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await self._lookup(key)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else has to
            raise
        finally:
            del self._inflight[key]
        future.set_result(value)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (now + self._ttl_s, value)
        return value
