"""API key → project/org, cached for a short TTL so the hot path does not hit Postgres per request."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from productgraph.db import KeyInfo

__all__ = ["KeyCache"]


class KeyCache:
    """A revoked key stops working within ``ttl_s``; unknown keys are cached too (negative entries)."""

    def __init__(self, lookup: Callable[[str], Awaitable[KeyInfo | None]], ttl_s: float, max_entries: int = 100_000):
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._max = max_entries
        self._entries: dict[str, tuple[float, KeyInfo | None]] = {}

    async def get(self, key: str, now: float | None = None) -> KeyInfo | None:
        now = time.monotonic() if now is None else now
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        info = await self._lookup(key)
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (now + self._ttl_s, info)
        return info
