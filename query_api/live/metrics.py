"""Real-time metrics of one project, read from the Redis counters the sessions processor keeps.

The processors write (``schemas.sessions``, in the same transaction as the session state, so a replayed
batch changes nothing):

* ``rt:{project}:epm:{minute}``: events per minute of event time (minute = Unix ms // 60,000);
* ``rt:{project}:active_sessions`` / ``active_users``: sorted sets, score = the member's last event (ms);
* ``rt:{project}:journey:{journey}:step:{position}:{minute}``: step entries per minute.

:func:`read_live_metrics` reads a snapshot with one pipelined round trip; everything else here is pure:
"active" means a last event within :data:`ACTIVE_WINDOW_MS` of ``now``; the per-minute series covers the
last :data:`MINUTES` whole minutes up to and including the current one, zero-filled, oldest first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from query_api.tenant_scope import Tenant, redis_key

__all__ = [
    "ACTIVE_WINDOW_MS",
    "MINUTES",
    "JourneySteps",
    "LiveJourneyCounts",
    "LiveSnapshot",
    "MinuteCount",
    "minute_range",
    "read_live_metrics",
]

MINUTE_MS = 60_000
ACTIVE_WINDOW_MS = 5 * MINUTE_MS
MINUTES = 60


@dataclass(frozen=True, slots=True)
class JourneySteps:
    """What the snapshot needs of a journey definition: its id, name and step (position, name) pairs."""

    journey_id: str
    name: str
    steps: tuple[tuple[int, str], ...]


@dataclass(frozen=True, slots=True)
class MinuteCount:
    minute_ms: int  # start of the minute, Unix ms
    count: int


@dataclass(frozen=True, slots=True)
class LiveStepCount:
    position: int
    name: str
    last_5_minutes: int
    last_hour: int


@dataclass(frozen=True, slots=True)
class LiveJourneyCounts:
    journey_id: str
    name: str
    steps: tuple[LiveStepCount, ...]


@dataclass(frozen=True, slots=True)
class LiveSnapshot:
    now_ms: int
    active_sessions: int
    active_users: int
    events_per_minute: tuple[MinuteCount, ...]
    journeys: tuple[LiveJourneyCounts, ...]

    @property
    def events_last_hour(self) -> int:
        return sum(m.count for m in self.events_per_minute)

    def key(self) -> tuple[object, ...]:
        """Everything but the clock: two snapshots with the same key show the same numbers."""
        return (self.active_sessions, self.active_users, self.events_per_minute, self.journeys)


def minute_range(now_ms: int, minutes: int = MINUTES) -> list[int]:
    """The minute numbers (Unix ms // 60,000) of the last ``minutes`` minutes, oldest first, the current one last."""
    current = now_ms // MINUTE_MS
    return list(range(current - minutes + 1, current + 1))


def _int(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bytes):
        value = value.decode()
    return int(str(value))


async def read_live_metrics(
    redis: aioredis.Redis, tenant: Tenant, journeys: Sequence[JourneySteps], now_ms: int
) -> LiveSnapshot:
    minutes = minute_range(now_ms)
    since = now_ms - ACTIVE_WINDOW_MS
    pipe = redis.pipeline(transaction=False)
    pipe.zcount(redis_key(tenant, "rt", "active_sessions"), since, "+inf")
    pipe.zcount(redis_key(tenant, "rt", "active_users"), since, "+inf")
    pipe.mget([redis_key(tenant, "rt", "epm", str(m)) for m in minutes])
    for j in journeys:
        for position, _ in j.steps:
            step = ("journey", j.journey_id, "step", str(position))
            pipe.mget([redis_key(tenant, "rt", *step, str(m)) for m in minutes])
    results = await pipe.execute()
    epm = tuple(MinuteCount(m * MINUTE_MS, _int(v)) for m, v in zip(minutes, results[2], strict=True))
    recent = {m for m in minutes if m * MINUTE_MS + MINUTE_MS > since}
    out: list[LiveJourneyCounts] = []
    i = 3
    for j in journeys:
        steps = []
        for position, name in j.steps:
            counts = [_int(v) for v in results[i]]
            i += 1
            last5 = sum(c for m, c in zip(minutes, counts, strict=True) if m in recent)
            steps.append(LiveStepCount(position, name, last5, sum(counts)))
        out.append(LiveJourneyCounts(j.journey_id, j.name, tuple(steps)))
    return LiveSnapshot(now_ms, _int(results[0]), _int(results[1]), epm, tuple(out))
