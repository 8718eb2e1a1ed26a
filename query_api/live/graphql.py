"""GraphQL over the live counters: ``liveMetrics`` (one snapshot) and the ``liveMetrics`` subscription.

The subscription checks the project against the caller's org once (not-found otherwise, like every other
field), then polls Redis every ``intervalMs`` (default 250 ms, one pipelined round trip) and pushes a
snapshot whenever the numbers changed, and at least every ``heartbeatS`` seconds; so an accepted event is
on the socket within the processors' flush age + one interval.  Journey definitions come from Postgres
(RLS) and are cached for :data:`JOURNEY_CACHE_S` per process.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from datetime import UTC, datetime

import strawberry
from strawberry.types import Info

from productgraph.admin import load_journeys
from query_api.context import QueryContext
from query_api.errors import InvalidInput
from query_api.live.metrics import JourneySteps, LiveSnapshot, read_live_metrics
from query_api.tenant_scope import Tenant

__all__ = ["LiveMetrics", "LiveQuery", "LiveSubscription"]

JOURNEY_CACHE_S = 5.0
_journey_cache: dict[tuple[str, str], tuple[float, tuple[JourneySteps, ...]]] = {}


@strawberry.type
class MinuteEvents:
    minute: datetime
    count: int


@strawberry.type
class LiveStep:
    position: int
    name: str
    entries_last_5_minutes: int
    entries_last_hour: int


@strawberry.type
class LiveJourney:
    journey_id: strawberry.ID
    name: str
    steps: list[LiveStep]


@strawberry.type
class LiveMetrics:
    project_id: strawberry.ID
    at: datetime
    active_sessions: int = strawberry.field(description="sessions with an event in the last 5 minutes")
    active_users: int = strawberry.field(description="users with an event in the last 5 minutes")
    events_last_hour: int
    events_per_minute: list[MinuteEvents] = strawberry.field(
        description="the last 60 minutes of event time, oldest first, zero-filled"
    )
    journeys: list[LiveJourney] = strawberry.field(description="step entries of each active journey")


def _ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def to_graphql(tenant: Tenant, s: LiveSnapshot) -> LiveMetrics:
    return LiveMetrics(
        project_id=strawberry.ID(tenant.project_id),
        at=_ms_to_dt(s.now_ms),
        active_sessions=s.active_sessions,
        active_users=s.active_users,
        events_last_hour=s.events_last_hour,
        events_per_minute=[MinuteEvents(minute=_ms_to_dt(m.minute_ms), count=m.count) for m in s.events_per_minute],
        journeys=[
            LiveJourney(
                journey_id=strawberry.ID(j.journey_id),
                name=j.name,
                steps=[LiveStep(position=p.position, name=p.name, entries_last_5_minutes=p.last_5_minutes,
                                entries_last_hour=p.last_hour) for p in j.steps],
            )
            for j in s.journeys
        ],
    )  # fmt: skip


async def _journeys(ctx: QueryContext, tenant: Tenant) -> tuple[JourneySteps, ...]:
    key = (tenant.org_id, tenant.project_id)
    now = time.monotonic()
    hit = _journey_cache.get(key)
    if hit is not None and hit[0] > now:
        return hit[1]
    defs = await load_journeys(ctx.pool, tenant.org_id, tenant.project_id)
    value = tuple(JourneySteps(d.id, d.name, tuple((s.position, s.name) for s in d.steps)) for d in defs)
    if len(_journey_cache) > 10_000:
        _journey_cache.clear()
    _journey_cache[key] = (now + JOURNEY_CACHE_S, value)
    return value


async def live_snapshot(ctx: QueryContext, tenant: Tenant) -> LiveSnapshot:
    """The project's live numbers now (also what the MCP tool ``pg.get_live_metrics`` answers)."""
    journeys = await _journeys(ctx, tenant)
    return await read_live_metrics(ctx.redis, tenant, journeys, int(time.time() * 1000))


@strawberry.type
class LiveQuery:
    @strawberry.field(description="Real-time numbers of a project from the live counters (Redis).")
    async def live_metrics(self, info: Info[QueryContext, None], project_id: strawberry.ID) -> LiveMetrics:
        tenant = await info.context.tenant(str(project_id))
        return to_graphql(tenant, await live_snapshot(info.context, tenant))


@strawberry.type
class LiveSubscription:
    @strawberry.subscription(
        description="Pushes the project's live metrics whenever they change (polled every intervalMs), "
        "and at least every heartbeatS seconds."
    )
    async def live_metrics(
        self,
        info: Info[QueryContext, None],
        project_id: strawberry.ID,
        interval_ms: int = 250,
        heartbeat_s: int = 15,
    ) -> AsyncGenerator[LiveMetrics, None]:
        if not 100 <= interval_ms <= 10_000:
            raise InvalidInput("intervalMs: must be between 100 and 10000")
        if not 1 <= heartbeat_s <= 300:
            raise InvalidInput("heartbeatS: must be between 1 and 300")
        tenant = await info.context.tenant(str(project_id))
        last: tuple[object, ...] | None = None
        last_sent = 0.0
        while True:
            snap = await live_snapshot(info.context, tenant)
            now = time.monotonic()
            if snap.key() != last or now - last_sent >= heartbeat_s:
                last, last_sent = snap.key(), now
                yield to_graphql(tenant, snap)
            await asyncio.sleep(interval_ms / 1000)
